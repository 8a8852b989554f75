"""Sample data for `make demo`, the bench and the stack tests: deterministic, relative to a given `now`."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from tests.fakes.github import FakeGitHub
from tests.fakes.kapa import FakeKapa

DEMO_REPO = "influxdata/docs-v2"
DEMO_BASE = "master"
DEMO_PROJECT = "demo-project"
DEMO_SOURCE = "Documentation"
_AUTHORS = ("jstirnaman", "sanderson", "docs-bot", "pauldix", None)
_TITLES = ("Fix typo in", "Update examples for", "Document", "Clarify", "Add tutorial for", "Restructure")
_TOPICS = ("processing engine", "line protocol", "SQL queries", "retention", "tokens", "Grafana", "Telegraf")


def populate_github(github: FakeGitHub, now: datetime, *, repo: str = DEMO_REPO, seed: int = 7) -> dict[str, int]:
    """~30 PRs merged into master over the past 10 days, a few into other branches, some closed unmerged,
    some open. Returns how many of each kind were added."""
    rng = random.Random(seed)
    counts = {"merged_master": 0, "merged_other": 0, "closed_unmerged": 0, "open": 0}
    for _ in range(30):
        merged = now - timedelta(minutes=rng.randint(10, 10 * 24 * 60))
        github.add_pr(repo, base=DEMO_BASE, merged_at=merged, updated_at=merged + timedelta(minutes=rng.randint(0, 5)),
                      additions=rng.randint(1, 180), deletions=rng.randint(0, 60), author=rng.choice(_AUTHORS),
                      title=f"{rng.choice(_TITLES)} {rng.choice(_TOPICS)}")
        counts["merged_master"] += 1
    for branch in ("release-3.x", "staging", "release-3.x"):
        merged = now - timedelta(hours=rng.randint(1, 200))
        github.add_pr(repo, base=branch, merged_at=merged, additions=rng.randint(1, 50), deletions=1,
                      title=f"Backport: {rng.choice(_TOPICS)}")
        counts["merged_other"] += 1
    for _ in range(5):
        github.add_pr(repo, base=DEMO_BASE, state="closed", updated_at=now - timedelta(hours=rng.randint(1, 200)),
                      title=f"Abandoned: {rng.choice(_TOPICS)}")
        counts["closed_unmerged"] += 1
    for _ in range(3):
        github.add_pr(repo, base=DEMO_BASE, state="open", updated_at=now - timedelta(hours=rng.randint(1, 48)),
                      title=f"WIP: {rng.choice(_TOPICS)}")
        counts["open"] += 1
    return counts


def populate_kapa(kapa: FakeKapa, now: datetime, *, project_id: str = DEMO_PROJECT) -> None:
    """Sources of the demo project: Documentation ingested ~5 days ago, others, and one never ingested."""
    kapa.add_source(project_id, DEMO_SOURCE, source_type="scrape",
                    ingested_at=now - timedelta(days=5, hours=2), next_run_at=now + timedelta(days=2))
    kapa.add_source(project_id, "API reference", source_type="openapi",
                    ingested_at=now - timedelta(hours=20), next_run_at=now + timedelta(hours=4))
    kapa.add_source(project_id, "Community forum", source_type="discourse",
                    ingested_at=now - timedelta(days=12), next_run_at=now + timedelta(days=1))
    kapa.add_source(project_id, "Release notes", source_type="github", ingested_at=None, next_run_at=None)
