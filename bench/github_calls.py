"""GitHub requests per collection run: plugins/github_prs.py (GraphQL and REST) beside the seed's approach.

A fake repository holds 250 PRs merged into master within the window (plus PRs into other branches and
closed-unmerged ones). Each approach runs twice on the embedded engine's plugin runtime against the loopback
FakeGitHub; the table lists the requests each run cost and the rows `gh` holds afterwards.

The seed's approach (modelled here, not copied): one list call `state=closed&sort=updated&direction=desc&
per_page=100` without pagination, then one detail call per merged master PR on that page.

Run: .venv/bin/python bench/github_calls.py
"""

from __future__ import annotations

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
    graphql_calls: int
    found: int
    rows: int

    @property
    def total(self) -> int:
        return self.list_calls + self.detail_calls + self.graphql_calls


def populate(github: FakeGitHub, now: datetime) -> None:
    for i in range(MERGED):
        merged = now - timedelta(minutes=10 + i * 30)  # spread over ~5.2 days, inside a week
        github.add_pr(REPO, merged_at=merged, additions=1 + i % 40, deletions=i % 7)
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
            out.append(Row(approach, run, github.count("list"), github.count("detail"), github.count("graphql"),
                           result.json()["pr_count"], rows))
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
        out.append(Row("seed (1 page + N details)", run, github.count("list"), github.count("detail"), 0, found,
                       found))
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
          "(+10 into another branch, +10 closed unmerged)\n")
    header = f"{'approach':<28} {'run':<7} {'requests':>8} {'list':>5} {'detail':>6} {'graphql':>7} " \
             f"{'PRs found':>9} {'gh rows':>7}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.approach:<28} {r.run:<7} {r.total:>8} {r.list_calls:>5} {r.detail_calls:>6} {r.graphql_calls:>7} "
              f"{r.found:>9} {r.rows:>7}")
    graphql = [r for r in rows if "GraphQL" in r.approach]
    rest = [r for r in rows if "REST" in r.approach]
    ok = (all(r.total <= 4 and r.rows == MERGED for r in graphql)
          and rest[0].list_calls <= 4 and rest[0].detail_calls == MERGED
          and rest[1].list_calls <= 4 and rest[1].detail_calls == 0 and rest[1].rows == MERGED)
    print("\ntargets (token: <= 4 requests per run; no token: <= 4 list + 1 detail per new PR; all rows): "
          + ("met" if ok else "NOT MET"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
