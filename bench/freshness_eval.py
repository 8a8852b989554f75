"""How long docs_freshness takes per source as gh_file grows: one daily evaluation (every source and repository:
queries, glob matching, status, stale_page and alert rows) and one request:freshness answer.

Two sources share one repository with different paths (content/** without images, api-docs/); PRs merged since
the ingestion change 1 to 5 files each, one PR changes 3,000 files (GitHub's cap). Runs in-process on the
embedded engine's plugin runtime; prints milliseconds per call (median of 3) and the rows behind them.

Run: .venv/bin/python bench/freshness_eval.py
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.harness import PluginHarness  # noqa: E402

REPO = "influxdata/docs-v2"
SOURCES = [
    {"kapa_source": "Documentation", "repos": [f"{REPO}@master"], "paths": ["content/**"],
     "exclude": ["**/*.png"], "severity_threshold": 200,
     "pages": {"base_url": "https://docs.example.com/", "strip_prefix": "content/"}},
    {"kapa_source": "API reference", "repos": [f"{REPO}@master"], "paths": ["api-docs/"], "exclude": [],
     "severity_threshold": 50},
]


def ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000


def seed(h: PluginHarness, prs: int, now: datetime) -> int:
    rng = random.Random(3)
    ingested = now - timedelta(days=7)
    h.write_lp("\n".join(
        f"kapa_source,project_id=p,source_id=s{i},source_name={name.replace(' ', chr(92) + ' ')},source_type=scrape,"
        f"event_type=ingested_at timestamp_unix={int(ingested.timestamp())}i,occurred=1i {ns(ingested)}"
        for i, name in enumerate(("Documentation", "API reference"))))
    files = 0
    lines = []
    for number in range(1, prs + 1):
        merged = ns(now - timedelta(minutes=rng.randint(1, 6 * 24 * 60)))
        count = 3000 if number == 1 else rng.randint(1, 5)
        paths = [f"content/p{number}/page{n}.md" if n % 7 else f"api-docs/v{n % 3}/ref{number}.yml"
                 for n in range(count)]
        lines.append(f'gh,repo={REPO},ref=master,pr_number={number} activity_type="pr_merge",lines={3 * count}i,'
                     f'additions={2 * count}i,deletions={count}i,author="a",title="t",url="u" {merged}')
        for path in paths:
            lines.append(f'gh_file,repo={REPO},ref=master,pr_number={number},path={path} additions=2i,deletions=1i,'
                         f'change_type="modified" {merged}')
        files += count
        if len(lines) > 5000:
            h.write_lp("\n".join(lines))
            lines = []
    if lines:
        h.write_lp("\n".join(lines))
    return files


def timed(call) -> float:
    samples = []
    for _ in range(3):
        start = time.perf_counter()
        result = call()
        samples.append((time.perf_counter() - start) * 1000)
        assert result.ok, result.error
    return statistics.median(samples)


def main() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    print(f"{'PRs':>6} {'gh_file rows':>12} {'daily evaluation ms':>20} {'request:freshness ms':>21} {'pages':>6}")
    for prs in (100, 1000, 5000):
        with PluginHarness(ROOT / "plugins" / "docs_freshness.py",
                           args={"sources": json.dumps(SOURCES, separators=(",", ":"))}) as h:
            files = seed(h, prs, now)
            evaluation = timed(lambda h=h: h.scheduled(now))
            answer = timed(lambda h=h: h.request(query={"source": "Documentation"}))
            pages = h.request(query={"source": "Documentation"}).json()["sources"][0]["pages_changed"]
            print(f"{prs:>6} {files:>12} {evaluation:>20.0f} {answer:>21.0f} {pages:>6}")


if __name__ == "__main__":
    main()
