"""GitHub requests per collection run: plugins/github_prs.py (GraphQL and REST) beside the seed's approach.

A fake repository holds 250 PRs merged into master within the window (plus PRs into other branches and
closed-unmerged ones); most change 1 to 3 files, one changes 250 and one 101. Each approach runs twice on the
embedded engine's plugin runtime against the loopback FakeGitHub; the table lists the requests each run cost,
what issue 11's formula says it should cost, and the rows `gh` and `gh_file` hold afterwards:
  with a token:    ceil(PRs/100) + per PR with more than 100 files ceil(files/100) - 1, first and repeat alike;
  without a token: list pages + per PR not yet recorded 1 detail + ceil(files/100); only list pages on a repeat.

The seed's approach (modelled here, not copied): one list call `state=closed&sort=updated&direction=desc&
per_page=100` without pagination, then one detail call per merged master PR on that page.

Run: .venv/bin/python bench/github_calls.py
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.harness import PluginHarness  # noqa: E402
from tests.fakes.github import FakeGitHub  # noqa: E402

REPO = "influxdata/docs-v2"
TOKEN = "ghp_bench_token_0123456789"
MERGED = 250


@dataclass
class Row:
    approach: str
    run: str
    list_calls: int
    detail_calls: int
    files_calls: int
    graphql_calls: int
    found: int
    rows: int
    file_rows: int
    expected: int | None

    @property
    def total(self) -> int:
        return self.list_calls + self.detail_calls + self.files_calls + self.graphql_calls


def file_counts() -> list[int]:
    """Files changed by each merged master PR: 250 and 101 for two of them, 1 to 3 for the others."""
    return [250, 101] + [1 + i % 3 for i in range(MERGED - 2)]


def expected(token: str | None, run: str) -> int:
    counts = file_counts()
    pages = math.ceil(len(counts) / 100)
    if token:
        return pages + sum(max(0, math.ceil(n / 100) - 1) for n in counts)
    if run == "repeat":
        return pages
    return pages + len(counts) + sum(math.ceil(n / 100) for n in counts)


def populate(github: FakeGitHub, now: datetime) -> None:
    for i, count in enumerate(file_counts()):
        merged = now - timedelta(minutes=10 + i * 30)  # spread over ~5.2 days, inside a week
        files = [{"path": f"content/pr{i}/page-{j}.md", "additions": 1 + (i + j) % 40, "deletions": (i + j) % 7}
                 for j in range(count)]
        github.add_pr(REPO, merged_at=merged, files=files)
    for i in range(10):
        github.add_pr(REPO, base="release-3.x", merged_at=now - timedelta(hours=i + 1))
        github.add_pr(REPO, state="closed", updated_at=now - timedelta(hours=i + 2))


def run_plugin(github: FakeGitHub, token: str | None) -> list[Row]:
    args = {"repo": REPO, "github_api_url": github.url, "time_period": "week"}
    if token:
        args["github_token"] = token
    approach = "plugin, GraphQL (token)" if token else "plugin, REST (no token)"
    out = []
    with PluginHarness(ROOT / "plugins" / "github_prs.py", args=args) as harness:
        for run in ("first", "repeat"):
            github.reset_counts()
            result = harness.request(body={"time_period": "week"})
            if result.status != 200:
                raise SystemExit(f"{approach} {run}: HTTP {result.status} {result.text}")
            rows = harness.query("SELECT count(*) AS n FROM gh")[0]["n"]
            file_rows = harness.query("SELECT count(*) AS n FROM gh_file")[0]["n"]
            out.append(Row(approach, run, github.count("list"), github.count("detail"), github.count("files"),
                           github.count("graphql"), result.json()["pr_count"], rows, file_rows,
                           expected(token, run)))
    return out


def run_seed_approach(github: FakeGitHub, now: datetime) -> list[Row]:
    since = now - timedelta(days=7)
    out = []
    for run in ("first", "repeat"):
        github.reset_counts()
        listed = requests.get(f"{github.url}/repos/{REPO}/pulls", timeout=10, params={
            "state": "closed", "sort": "updated", "direction": "desc", "per_page": "100"}).json()
        found = 0
        for pr in listed:
            merged_at = pr.get("merged_at")
            if not merged_at or pr["base"]["ref"] != "master":
                continue
            if datetime.fromisoformat(merged_at.replace("Z", "+00:00")) < since:
                continue
            requests.get(pr["url"], timeout=10).raise_for_status()
            found += 1
        # the seed writes one row per PR keyed by (repo, ref) and merge second only: no pr_number tag
        out.append(Row("seed (1 page + N details)", run, github.count("list"), github.count("detail"), 0, 0, found,
                       found, 0, None))
    return out


def main() -> int:
    now = datetime.now(UTC).replace(microsecond=0)
    rows: list[Row] = []
    with FakeGitHub(token=TOKEN) as github:
        populate(github, now)
        rows += run_seed_approach(github, now)
        rows += run_plugin(github, None)
        rows += run_plugin(github, TOKEN)
    print(f"GitHub requests per run: {MERGED} PRs merged into master within the window "
          f"({sum(file_counts())} changed files; one PR with 250, one with 101) "
          "(+10 into another branch, +10 closed unmerged)\n")
    header = f"{'approach':<28} {'run':<7} {'requests':>8} {'formula':>7} {'list':>5} {'detail':>6} {'files':>5} " \
             f"{'graphql':>7} {'PRs found':>9} {'gh rows':>7} {'gh_file rows':>12}"
    print(header)
    print("-" * len(header))
    for r in rows:
        formula = "-" if r.expected is None else str(r.expected)
        print(f"{r.approach:<28} {r.run:<7} {r.total:>8} {formula:>7} {r.list_calls:>5} {r.detail_calls:>6} "
              f"{r.files_calls:>5} {r.graphql_calls:>7} {r.found:>9} {r.rows:>7} {r.file_rows:>12}")
    plugin = [r for r in rows if r.expected is not None]
    ok = all(r.total == r.expected and r.rows == MERGED and r.file_rows == sum(file_counts()) for r in plugin)
    print("\ntargets (requests equal issue 11's formula; every gh and gh_file row, none twice): "
          + ("met" if ok else "NOT MET"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
