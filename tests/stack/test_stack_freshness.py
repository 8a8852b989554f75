"""Freshness per source end to end on the embedded engine, as `make demo` runs it: provisioning with
provisioning/freshness.demo.toml, the fake GitHub serving files per PR (CI-only PRs, a rename, a PR with more
than 100 files, a second repository), collection of every configured repository, then one stale and one fresh
source in integration_status, documentation_alert, stale_page and GET /api/v3/engine/freshness."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.sample import (
    BULK_FILES,
    DEMO_API_REPO,
    DEMO_API_SOURCE,
    DEMO_BASE,
    DEMO_REPO,
    DEMO_SOURCE,
)
from tests.stack.running import ROOT, Stack, poll, running_stack

DEMO_FILE = ROOT / "provisioning" / "freshness.demo.toml"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("fresh"), PROVISION_FRESHNESS_FILE=str(DEMO_FILE)) as stack:
        rc, out, err = stack.provision()
        assert (rc, err) == (0, ""), out
        assert f"freshness: 2 source(s), 2 repositories from {DEMO_FILE}" in out.splitlines()
        yield stack


def test_stack_freshness_demo_one_source_stale_one_fresh(demo: Stack):
    srv, github = demo.server, demo.github
    engine = f"{srv.url}/api/v3/engine"
    r = demo.call("kapa_sources", {})
    assert r.status_code == 200, r.text
    poll(lambda: demo.sql("SELECT COUNT(*) AS n FROM kapa_source")[0]["n"], "kapa_source rows")
    # without repo, the endpoint collects every repository of freshness.toml
    r = srv.session.post(f"{engine}/github_prs", json={"time_period": "14d"}, timeout=120)
    assert r.status_code == 200, r.text
    merged = {repo: sum(1 for pr in github.prs(repo) if pr.merged and pr.base == DEMO_BASE)
              for repo in (DEMO_REPO, DEMO_API_REPO)}
    counts = {row["repo"]: row["n"] for row in demo.sql("SELECT repo, COUNT(*) AS n FROM gh GROUP BY repo")}
    assert counts == merged
    assert demo.sql("SELECT COUNT(*) AS n FROM gh_file WHERE pr_number = '16'")[0]["n"] == BULK_FILES

    def latest_status():
        rows = demo.sql("SELECT source_name, repo, needs_update, lines_since_ingestion, files_changed, "
                         "pages_changed, prs_since_ingestion, status FROM integration_status ORDER BY time DESC")
        seen: dict = {}
        for row in rows:
            seen.setdefault((row["source_name"], row["repo"]), row)
        return seen if len(seen) == 3 else None

    status = poll(latest_status, "a status row per source and repository")
    docs = status[(DEMO_SOURCE, DEMO_REPO)]
    assert docs["needs_update"] == 1 and docs["status"] == "ok"
    assert docs["pages_changed"] >= 1 and docs["files_changed"] >= docs["pages_changed"] - 1
    for repo in (DEMO_REPO, DEMO_API_REPO):  # fresh: nothing in api-docs/ or contracts/ since 20 hours ago
        api = status[(DEMO_API_SOURCE, repo)]
        assert (api["needs_update"], api["lines_since_ingestion"], api["files_changed"]) == (0, 0, 0), api

    alerts = poll(lambda: demo.sql("SELECT source_name, repo, message FROM documentation_alert"), "an alert")
    assert [(a["source_name"], a["repo"]) for a in alerts] == [(DEMO_SOURCE, DEMO_REPO)]
    assert "most changed: https://docs.influxdata.com/influxdb3/" in alerts[0]["message"]

    body = srv.session.get(f"{engine}/freshness", timeout=30).json()
    by_source = {s["source"]: s for s in body["sources"]}
    fresh = by_source[DEMO_API_SOURCE]
    assert (fresh["repos"], fresh["pr_count"], fresh["lines"], fresh["pages"]) == (
        [f"{DEMO_REPO}@{DEMO_BASE}", f"{DEMO_API_REPO}@{DEMO_BASE}"], 0, 0, [])
    stale = by_source[DEMO_SOURCE]
    assert stale["lines"] == docs["lines_since_ingestion"] and stale["pages_changed"] == docs["pages_changed"]
    assert [p["lines"] for p in stale["pages"]] == sorted((p["lines"] for p in stale["pages"]), reverse=True)
    assert all(p["page"].startswith("https://docs.influxdata.com/") and p["page"].endswith("/")
               for p in stale["pages"])  # no CI file, no excluded image, no api-docs path
    pages = {p["page"]: p for p in stale["pages"]}
    # the rename: old and new path are one page URL (tokens.md and tokens/_index.md)
    assert 8 in pages["https://docs.influxdata.com/influxdb3/core/admin/tokens/"]["prs"]
    bulk = [p for p in pages if p.startswith("https://docs.influxdata.com/influxdb3/core/reference/cli/influxdb3/")]
    assert len(bulk) == BULK_FILES and all(pages[p]["prs"] == [16] for p in bulk)
    assert f"and {stale['pages_changed'] - 5} more" in alerts[0]["message"]
    # the CI-only PRs count for no source
    ci_prs = {str(pr.number) for pr in github.prs(DEMO_REPO) if pr.merged and pr.title.startswith("CI: ")}
    assert ci_prs and not ci_prs & {str(n) for p in stale["pages"] for n in p["prs"]}
    stale_rows = demo.sql(f"SELECT COUNT(*) AS n FROM stale_page WHERE source_name = '{DEMO_SOURCE}'")
    assert stale_rows[0]["n"] == stale["pages_changed"]  # one window: each evaluation replaced the same rows
