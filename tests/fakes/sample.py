"""Sample data for `make demo`, the bench and the stack tests: deterministic, relative to a given `now`.

Two Kapa sources read one repository through different content paths (provisioning/freshness.demo.toml):
"Documentation" (content/**, ingested ~5 days ago) goes stale as content PRs merge after it, while
"API reference" (api-docs/ of docs-v2 and the whole influxdata/openapi repository, ingested 20 hours ago) is
fresh: every PR touching its paths merged more than a day ago. Among the merged PRs, some touch only CI and
build files (they count for neither source), one renames a page, and one touches more than 100 files.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from tests.fakes.github import ChangedFile, FakeGitHub
from tests.fakes.kapa import FakeKapa

DEMO_REPO = "influxdata/docs-v2"
DEMO_BASE = "master"
DEMO_PROJECT = "demo-project"
DEMO_SOURCE = "Documentation"
DEMO_API_SOURCE = "API reference"
DEMO_API_REPO = "influxdata/openapi"
_AUTHORS = ("jstirnaman", "sanderson", "docs-bot", "pauldix", None)
_TITLES = ("Fix typo in", "Update examples for", "Document", "Clarify", "Add tutorial for", "Restructure")
_TOPICS = ("processing engine", "line protocol", "SQL queries", "retention", "tokens", "Grafana", "Telegraf")
_PAGES = ("get-started/_index.md", "plugins.md", "write-data/line-protocol.md", "query-data/sql/_index.md",
          "admin/databases.md", "admin/tokens.md", "reference/config-options.md", "visualize-data/grafana.md")
_PRODUCTS = ("influxdb3/core", "influxdb3/enterprise")
_CI_FILES = ((".github/workflows/pr-checks.yml", ".github/workflows/link-check.yml"),
             (".circleci/config.yml",), ("package.json", "yarn.lock"), ("Dockerfile", "compose.yaml"))
#: indexes of the 30 merged PRs that get special files (the rest change 1-3 content pages)
_CI_ONLY = {3: 0, 11: 1, 19: 2, 26: 3}
_API_DOCS = (5, 22)
_RENAME = 7
_BULK = 15
BULK_FILES = 121


def _content_files(rng: random.Random) -> list[ChangedFile]:
    files = []
    for page in rng.sample(_PAGES, rng.randint(1, 3)):
        files.append(ChangedFile(f"content/{rng.choice(_PRODUCTS)}/{page}", rng.randint(1, 90), rng.randint(0, 30)))
    if rng.random() < 0.3:  # a screenshot beside the page: excluded by **/*.png
        files.append(ChangedFile(f"content/{rng.choice(_PRODUCTS)}/img/screenshot-{rng.randint(1, 9)}.png", 0, 0,
                                 status="added"))
    return files


def populate_github(github: FakeGitHub, now: datetime, *, repo: str = DEMO_REPO, seed: int = 7) -> dict[str, int]:
    """~30 PRs merged into master over the past 10 days (with files), a few into other branches, some closed
    unmerged, some open, and a second repository (influxdata/openapi) for the API reference. Returns how many
    of each kind were added."""
    rng = random.Random(seed)
    counts = {"merged_master": 0, "merged_other": 0, "closed_unmerged": 0, "open": 0, "ci_only": 0,
              "api_docs": 0, "openapi": 0}
    for index in range(30):
        merged = now - timedelta(minutes=rng.randint(10, 10 * 24 * 60))
        title = f"{rng.choice(_TITLES)} {rng.choice(_TOPICS)}"
        if index in _CI_ONLY:
            files = [ChangedFile(p, rng.randint(1, 40), rng.randint(0, 20)) for p in _CI_FILES[_CI_ONLY[index]]]
            title = "CI: " + title
            counts["ci_only"] += 1
        elif index in _API_DOCS:
            merged = now - timedelta(days=rng.randint(2, 9), minutes=rng.randint(0, 600))  # before its ingestion
            files = [ChangedFile("api-docs/influxdb3/core/v3/ref.yml", rng.randint(20, 200), rng.randint(0, 50))]
            counts["api_docs"] += 1
        elif index == _RENAME:
            merged = now - timedelta(days=2, hours=3)  # after Documentation's ingestion: the demo shows it
            files = [ChangedFile("content/influxdb3/core/admin/tokens/_index.md", 12, 3, status="renamed",
                                 previous_path="content/influxdb3/core/admin/tokens.md")]
            title = "Move the tokens page into its own section"
        elif index == _BULK:
            merged = now - timedelta(days=1, hours=5)
            files = [ChangedFile(f"content/influxdb3/core/reference/cli/influxdb3/command-{n:03d}.md", 2, 1)
                     for n in range(BULK_FILES - 1)]
            files.append(ChangedFile("content/influxdb3/core/reference/cli/influxdb3/_index.md", 30, 4))
            title = "Regenerate the influxdb3 CLI reference"
        else:
            files = _content_files(rng)
        github.add_pr(repo, base=DEMO_BASE, merged_at=merged, updated_at=merged + timedelta(minutes=rng.randint(0, 5)),
                      author=rng.choice(_AUTHORS), title=title, files=files)
        counts["merged_master"] += 1
    for branch in ("release-3.x", "staging", "release-3.x"):
        merged = now - timedelta(hours=rng.randint(1, 200))
        github.add_pr(repo, base=branch, merged_at=merged, files=[
            ChangedFile(f"content/{rng.choice(_PRODUCTS)}/{rng.choice(_PAGES)}", rng.randint(1, 50), 1)],
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
    for _ in range(4):  # the API reference's second repository: nothing since its ingestion 20 hours ago
        merged = now - timedelta(days=rng.randint(1, 8), hours=rng.randint(1, 12))
        github.add_pr(DEMO_API_REPO, base=DEMO_BASE, merged_at=merged, title=f"Spec: {rng.choice(_TOPICS)}",
                      files=[ChangedFile("contracts/ref/cloud.yml", rng.randint(5, 120), rng.randint(0, 30))])
        counts["openapi"] += 1
    return counts


def populate_kapa(kapa: FakeKapa, now: datetime, *, project_id: str = DEMO_PROJECT) -> None:
    """Sources of the demo project: Documentation ingested ~5 days ago, API reference 20 hours ago, others,
    and one never ingested."""
    kapa.add_source(project_id, DEMO_SOURCE, source_type="scrape",
                    ingested_at=now - timedelta(days=5, hours=2), next_run_at=now + timedelta(days=2))
    kapa.add_source(project_id, DEMO_API_SOURCE, source_type="openapi",
                    ingested_at=now - timedelta(hours=20), next_run_at=now + timedelta(hours=4))
    kapa.add_source(project_id, "Community forum", source_type="discourse",
                    ingested_at=now - timedelta(days=12), next_run_at=now + timedelta(days=1))
    kapa.add_source(project_id, "Release notes", source_type="github", ingested_at=None, next_run_at=None)
