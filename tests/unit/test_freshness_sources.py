"""plugins/docs_freshness.py per source: the glob rules, page URLs, changed files from gh_file, status and alert
rows per source and repository, unknown Kapa sources, and the request:freshness endpoint."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.unit.conftest import PLUGINS
from tests.unit.test_grafana_sql import interpolate, panel_sql

PLUGIN = "docs_freshness.py"
_spec = importlib.util.spec_from_file_location("docs_freshness_under_test", PLUGINS / PLUGIN)
plugin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plugin)

DOCS = "influxdata/docs-v2"
API = "influxdata/openapi"
PAGES = {"base_url": "https://docs.example.com/", "strip_prefix": "content/"}


# ---------------------------------------------------------------- globs


def matches(pattern: str, path: str) -> bool:
    return plugin.compile_glob(pattern).fullmatch(path) is not None


@pytest.mark.parametrize("pattern, yes, no", [
    # a file at the root
    ("README.md", ["README.md", "docs/README.md"], ["README.mdx", "xREADME.md"]),
    ("/README.md", ["README.md"], ["docs/README.md"]),
    ("*.md", ["README.md", "content/a/b.md"], ["a.mdx", "content/md"]),
    ("*", ["README.md", "a/b/c.txt", ".github"], []),
    ("**", ["README.md", "a/b/c.txt"], []),
    # **/*.png: at any depth, the root included
    ("**/*.png", ["logo.png", "static/img/logo.png"], ["logo.png.txt", "static/png"]),
    # a trailing /: directories only, at any depth unless anchored
    ("docs/", ["docs/a.md", "x/docs/b/c.md"], ["docs", "docsx/a.md"]),
    ("/docs/", ["docs/a.md"], ["x/docs/a.md", "docs"]),
    (".github/", [".github/workflows/ci.yml"], [".githubx/a"]),
    # content/**: everything inside content/, anchored
    ("content/**", ["content/a.md", "content/en/b/_index.md"], ["content", "contents/a.md", "x/content/a.md"]),
    ("content/*.md", ["content/a.md"], ["content/en/a.md", "x/content/a.md"]),
    ("docs/*", ["docs/a.md"], ["docs/build/t.md"]),
    ("a/**/b", ["a/b", "a/x/b", "a/x/y/b", "a/x/b/c.md"], ["b", "a/xb"]),
    ("**/logs", ["logs/x", "build/logs/a.txt", "logs"], ["build/logsx/a"]),
    ("content/en", ["content/en", "content/en/a.md"], ["content/enx.md", "x/content/en/a.md"]),
    ("?.md", ["a.md", "x/b.md"], ["ab.md"]),
])
def test_glob_codeowners_semantics(pattern, yes, no):
    for path in yes:
        assert matches(pattern, path), (pattern, path)
    for path in no:
        assert not matches(pattern, path), (pattern, path)


@pytest.mark.parametrize("pattern, problem", [
    ("", "empty pattern"), (" a/**", "spaces at either end"), ("!a", "! negation"), ("#a", "starts with #"),
    ("a/[bc]", "[...] ranges"), ("a\\*", "\\ escapes"), ("/", "names no path"), ("a//b", "empty path segment"),
    ("../a", "a .. segment"), ("a/**b", "** inside a path segment"), ("***", "** inside a path segment"),
])
def test_glob_rejects_what_codeowners_does_not_support(pattern, problem):
    with pytest.raises(plugin.GlobError) as info:
        plugin.compile_glob(pattern)
    assert problem in info.value.problem and info.value.fix


def test_path_selected_needs_an_include_and_no_exclude():
    inc = [plugin.compile_glob("content/**")]
    exc = [plugin.compile_glob("**/*.png")]
    assert plugin.path_selected("content/a.md", inc, exc)
    assert not plugin.path_selected("content/img/a.png", inc, exc)
    assert not plugin.path_selected(".github/workflows/ci.yml", inc, exc)


@pytest.mark.parametrize("path, page", [
    ("content/influxdb3/core/get-started.md", "https://docs.example.com/influxdb3/core/get-started/"),
    ("content/influxdb3/core/_index.md", "https://docs.example.com/influxdb3/core/"),
    ("content/influxdb3/index.html", "https://docs.example.com/influxdb3/"),
    ("content/_index.md", "https://docs.example.com/"),
    ("content/a/b.html", "https://docs.example.com/a/b/"),
    ("content/img/logo.png", "content/img/logo.png"),  # not a page: listed by its path
    ("data/products.yml", "data/products.yml"),  # outside strip_prefix
])
def test_page_urls_from_paths(path, page):
    assert plugin.page_for(path, PAGES) == page
    assert plugin.page_for(path, None) == path


# ---------------------------------------------------------------- evaluation on the plugin runtime


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000


def _ingestion(moment: datetime, name: str) -> str:
    return (f"kapa_source,project_id=p1,source_id=s{len(name)},source_name={name.replace(' ', chr(92) + ' ')},"
            f"source_type=scrape,event_type=ingested_at timestamp_unix={int(moment.timestamp())}i,timezone=\"UTC\","
            f"occurred=1i {_ns(moment)}")


def _pr(number: int, moment: datetime, files: list[tuple], repo: str = DOCS, ref: str = "master") -> str:
    """A gh row and its gh_file rows; files are (path, additions, deletions[, previous_path])."""
    adds = sum(f[1] for f in files)
    dels = sum(f[2] for f in files)
    lines = [f'gh,repo={repo},ref={ref},pr_number={number} activity_type="pr_merge",lines={adds + dels}i,'
             f'additions={adds}i,deletions={dels}i,author="a",title="t{number}",url="u" {_ns(moment)}']
    for f in files:
        path, a, d = f[0], f[1], f[2]
        kind = "renamed" if len(f) > 3 else "modified"
        extra = f',previous_path="{f[3]}"' if len(f) > 3 else ""
        lines.append(f'gh_file,repo={repo},ref={ref},pr_number={number},path={path} additions={a}i,deletions={d}i,'
                     f'change_type="{kind}"{extra} {_ns(moment)}')
    return "\n".join(lines)


def _sources(*items: dict) -> dict[str, str]:
    full = [{"paths": ["**"], "exclude": [], "severity_threshold": 100, **item} for item in items]
    return {"sources": json.dumps(full, separators=(",", ":"))}


@pytest.fixture
def ingested(now):
    return now - timedelta(days=3, hours=1)


def _status(h):
    return h.query("SELECT source_name, repo, prs_since_ingestion, lines_since_ingestion, files_changed, "
                   "pages_changed, needs_update, status FROM integration_status ORDER BY source_name, repo")


def _alerts(h):
    return h.query("SELECT source_name, repo, severity, lines_changed, message FROM documentation_alert "
                   "ORDER BY source_name, repo, time")


def test_freshness_pr_with_only_excluded_or_outside_paths_raises_nothing(make_harness, fast, now, ingested):
    h = make_harness(PLUGIN, {**fast, **_sources({"kapa_source": "Docs", "repos": [f"{DOCS}@master"],
                                                  "paths": ["content/**"], "exclude": ["**/*.png"]})})
    h.write_lp(_ingestion(ingested, "Docs"))
    r = h.writes(_pr(7, now - timedelta(hours=2), [(".github/workflows/ci.yml", 40, 2), ("Makefile", 3, 1),
                                                  ("content/img/new.png", 0, 0)]))
    assert r.ok, r.error
    assert _status(h) == [{"source_name": "Docs", "repo": DOCS, "prs_since_ingestion": 0, "lines_since_ingestion": 0,
                           "files_changed": 0, "pages_changed": 0, "needs_update": 0, "status": "ok"}]
    assert [line.split(",")[0] for line in r.writes] == ["integration_status"]  # no alert, no stale_page


def test_freshness_pr_with_250_files_names_five_pages_and_how_many_more(make_harness, fast, now, ingested):
    h = make_harness(PLUGIN, {**fast, **_sources({"kapa_source": "Docs", "repos": [f"{DOCS}@master"],
                                                  "paths": ["content/**"], "pages": PAGES,
                                                  "severity_threshold": 1000})})
    h.write_lp(_ingestion(ingested, "Docs"))
    files = [(f"content/p{i:03d}.md", i, 0) for i in range(1, 241)] + [(f"ci/s{i}.sh", 5, 5) for i in range(10)]
    r = h.writes(_pr(9, now - timedelta(hours=1), files))
    assert r.ok, r.error
    total = sum(range(1, 241))
    (status,) = _status(h)
    assert (status["files_changed"], status["pages_changed"], status["lines_since_ingestion"]) == (240, 240, total)
    (alert,) = _alerts(h)
    assert alert["severity"] == "warning" and alert["lines_changed"] == total
    assert alert["message"].endswith(
        "(240 files, 240 pages); most changed: https://docs.example.com/p240/ (240 lines), "
        "https://docs.example.com/p239/ (239 lines), https://docs.example.com/p238/ (238 lines), "
        "https://docs.example.com/p237/ (237 lines), https://docs.example.com/p236/ (236 lines) and 235 more")
    pages = h.query("SELECT page, lines_changed, pr_count, pr_numbers FROM stale_page ORDER BY lines_changed DESC")
    assert len(pages) == 240
    assert pages[0] == {"page": "https://docs.example.com/p240/", "lines_changed": 240, "pr_count": 1,
                        "pr_numbers": "9"}


def test_freshness_rename_counts_old_and_new_page(make_harness, fast, now, ingested):
    h = make_harness(PLUGIN, {**fast, **_sources({"kapa_source": "Docs", "repos": [f"{DOCS}@master"],
                                                  "paths": ["content/**"], "pages": PAGES})})
    h.write_lp(_ingestion(ingested, "Docs"))
    h.writes(_pr(11, now - timedelta(hours=1), [("content/new-name.md", 3, 1, "content/old-name.md")]))
    (status,) = _status(h)
    assert (status["files_changed"], status["pages_changed"], status["lines_since_ingestion"]) == (1, 2, 4)
    report = h.request(body={"source": "Docs"}).json()
    assert [(p["page"], p["lines"]) for p in report["sources"][0]["pages"]] == [
        ("https://docs.example.com/new-name/", 4), ("https://docs.example.com/old-name/", 4)]


def test_freshness_rename_out_of_the_content_paths_still_counts(make_harness, fast, now, ingested):
    h = make_harness(PLUGIN, {**fast, **_sources({"kapa_source": "Docs", "repos": [f"{DOCS}@master"],
                                                  "paths": ["content/**"]})})
    h.write_lp(_ingestion(ingested, "Docs"))
    h.writes(_pr(12, now - timedelta(hours=1), [("archive/page.md", 0, 0, "content/page.md")]))
    (status,) = _status(h)
    assert (status["files_changed"], status["pages_changed"], status["needs_update"]) == (1, 1, 1)
    assert [a["severity"] for a in _alerts(h)] == ["info"]


def _stale_pages(h):
    return h.query("SELECT page, lines_changed, pr_numbers, time FROM stale_page ORDER BY time, page")


def _panel(h, source):
    """The Grafana "Stale pages" panel's SQL, run on the plugin's own rows."""
    return [(row["page"], row["lines_changed"], row["pr_numbers"])
            for row in h.query(interpolate(panel_sql("Stale pages"), source=source))]


def test_freshness_stale_page_rows_grow_per_ingestion_window_not_per_evaluation(make_harness, fast, now, ingested):
    h = make_harness(PLUGIN, {**fast, **_sources({"kapa_source": "Docs", "repos": [f"{DOCS}@master"],
                                                  "paths": ["content/**"]})})
    h.write_lp(_ingestion(ingested, "Docs"))
    first = _pr(30, now - timedelta(hours=3), [("content/a.md", 5, 0), ("content/b.md", 3, 0)])
    assert h.writes(first).ok
    once = len(_stale_pages(h))
    # with a token the hourly collection rewrites the window's gh rows, and table:gh evaluates again each time
    for _ in range(3):
        assert h.writes(first).ok
    assert len(_status(h)) == 4  # four evaluations ...
    assert len(_stale_pages(h)) == once == 2  # ... and the rows of one
    # within the window the set only grows: a page with more lines has its row replaced, a new page is added
    assert h.writes(_pr(31, now - timedelta(hours=2), [("content/a.md", 10, 0), ("content/c.md", 1, 0)])).ok
    rows = _stale_pages(h)
    assert [(r["page"], r["lines_changed"], r["pr_numbers"]) for r in rows] == [
        ("content/a.md", 15, "30 31"), ("content/b.md", 3, "30"), ("content/c.md", 1, "31")]
    assert {r["time"] for r in rows} == {_ns(ingested)}  # the window's start: the ingestion, not the evaluation
    assert _panel(h, "Docs") == [("content/a.md", 15, "30 31"), ("content/b.md", 3, "30"), ("content/c.md", 1, "31")]
    # a new ingestion: the old window's rows stay at their time (history); the panel shows the current pages only
    reingested = now - timedelta(hours=1)
    h.write_lp(_ingestion(reingested, "Docs"))
    assert h.writes(first).ok  # nothing merged since the new ingestion
    assert _panel(h, "Docs") == []
    assert h.writes(_pr(32, now - timedelta(minutes=30), [("content/d.md", 2, 0)])).ok
    assert h.writes(_pr(32, now - timedelta(minutes=30), [("content/d.md", 2, 0)])).ok
    assert _panel(h, "Docs") == [("content/d.md", 2, "32")]
    assert [(r["page"], r["time"]) for r in _stale_pages(h)] == [
        ("content/a.md", _ns(ingested)), ("content/b.md", _ns(ingested)), ("content/c.md", _ns(ingested)),
        ("content/d.md", _ns(reingested))]


def test_freshness_stale_page_panel_drops_pages_the_latest_evaluation_no_longer_lists(make_harness, fast, now,
                                                                                        ingested):
    """Same window, narrower paths (freshness.toml edited): the earlier rows stay, the panel leaves them out."""
    h = make_harness(PLUGIN, {**fast, **_sources({"kapa_source": "Docs", "repos": [f"{DOCS}@master"]})})
    h.write_lp(_ingestion(ingested, "Docs"))
    change = _pr(40, now - timedelta(hours=2), [("content/a.md", 5, 0), ("Makefile", 9, 0)])
    assert h.writes(change).ok
    assert _panel(h, "Docs") == [("Makefile", 9, "40"), ("content/a.md", 5, "40")]
    h.args = {**fast, **_sources({"kapa_source": "Docs", "repos": [f"{DOCS}@master"], "paths": ["content/**"]})}
    assert h.writes(change).ok
    assert _panel(h, "Docs") == [("content/a.md", 5, "40")]
    assert len(_stale_pages(h)) == 2


def test_freshness_two_sources_sharing_a_repository_with_different_paths(make_harness, fast, now, ingested):
    h = make_harness(PLUGIN, {**fast, **_sources(
        {"kapa_source": "Docs", "repos": [f"{DOCS}@master"], "paths": ["content/**"]},
        {"kapa_source": "API reference", "repos": [f"{DOCS}@master"], "paths": ["api-docs/"],
         "severity_threshold": 10})})
    h.write_lp(_ingestion(ingested, "Docs"))
    h.write_lp(_ingestion(now - timedelta(days=1), "API reference"))
    r = h.writes("\n".join([
        _pr(20, now - timedelta(days=2), [("content/a.md", 5, 0), ("api-docs/v3/ref.yml", 50, 0)]),  # API: before
        _pr(21, now - timedelta(hours=2), [("api-docs/v3/ref.yml", 7, 7)]),
    ]))
    assert r.ok, r.error
    assert _status(h) == [
        {"source_name": "API reference", "repo": DOCS, "prs_since_ingestion": 1, "lines_since_ingestion": 14,
         "files_changed": 1, "pages_changed": 1, "needs_update": 1, "status": "ok"},
        {"source_name": "Docs", "repo": DOCS, "prs_since_ingestion": 1, "lines_since_ingestion": 5,
         "files_changed": 1, "pages_changed": 1, "needs_update": 1, "status": "ok"},
    ]
    assert [(a["source_name"], a["severity"], a["lines_changed"]) for a in _alerts(h)] == [
        ("API reference", "warning", 14), ("Docs", "info", 5)]
    # dedup holds per source: a later small change to Docs repeats neither alert
    h.writes(_pr(22, now - timedelta(hours=1), [("content/b.md", 1, 0)]))
    assert len(_alerts(h)) == 2


def test_freshness_source_with_two_repositories_rows_per_repository(make_harness, fast, now, ingested, webhook,
                                                                    tmp_path):
    url_file = tmp_path / "notify"
    url_file.write_text(webhook.url + "/hook")
    h = make_harness(PLUGIN, {**fast, "notify_url_file": str(url_file), **_sources(
        {"kapa_source": "Docs", "repos": [f"{DOCS}@master", f"{API}@main"], "exclude": ["*.yml"]})})
    h.write_lp(_ingestion(ingested, "Docs"))
    h.write_lp(_pr(30, now - timedelta(hours=3), [("content/a.md", 60, 0)]))
    h.write_lp(_pr(31, now - timedelta(hours=2), [("openapi/ref.md", 200, 0), ("x.yml", 9, 9)], repo=API,
                   ref="main"))
    r = h.scheduled(now)
    assert r.ok, r.error
    assert [(s["repo"], s["lines_since_ingestion"], s["files_changed"]) for s in _status(h)] == [
        (DOCS, 60, 1), (API, 200, 1)]
    assert [(a["repo"], a["severity"]) for a in _alerts(h)] == [(DOCS, "info"), (API, "warning")]
    texts = sorted(p["text"] for p in webhook.posts)
    assert texts[0].startswith("[info] Docs needs update: 1 PRs with 60 lines changed in the last 3.0 days "
                               "(1 files, 1 pages); most changed: content/a.md (60 lines)")
    assert texts[0].endswith(f"({DOCS}@master)")
    assert "openapi/ref.md (200 lines)" in texts[1] and texts[1].endswith(f"({API}@main)")
    # only the repository the new gh rows belong to is evaluated after a write
    r = h.writes(_pr(32, now - timedelta(hours=1), [("openapi/b.md", 1, 0)], repo=API, ref="main"))
    assert [line.split(",")[:2] for line in r.writes if line.startswith("integration_status")] == [
        ["integration_status", f"repo={API}"]]
    report = h.request(query={"source": "Docs"}).json()["sources"][0]
    assert (report["repos"], report["pr_count"], report["lines"], report["files"]) == (
        [f"{DOCS}@master", f"{API}@main"], 3, 261, 3)
    assert [(p["page"], p["repo"], p["lines"], p["prs"]) for p in report["pages"]] == [
        ("openapi/ref.md", API, 200, [31]), ("content/a.md", DOCS, 60, [30]), ("openapi/b.md", API, 1, [32])]


def test_freshness_unknown_kapa_source_warns_once_and_writes_a_status_row(make_harness, fast, now, ingested):
    h = make_harness(PLUGIN, {**fast, **_sources(
        {"kapa_source": "Docs", "repos": [f"{DOCS}@master"]},
        {"kapa_source": "Typo", "repos": [f"{DOCS}@master", f"{API}@main"]},
        {"kapa_source": "Typo 2", "repos": [f"{API}@main"]})})
    h.write_lp(_ingestion(ingested, "Docs"))
    r = h.scheduled(now)
    assert r.ok, r.error
    rows = h.query("SELECT source_name, repo, status, needs_update FROM integration_status "
                   "ORDER BY source_name, repo")
    assert rows == [
        {"source_name": "Docs", "repo": DOCS, "status": "ok", "needs_update": 0},
        {"source_name": "Typo", "repo": DOCS, "status": "unknown_source", "needs_update": 0},
        {"source_name": "Typo", "repo": API, "status": "unknown_source", "needs_update": 0},
        {"source_name": "Typo 2", "repo": API, "status": "unknown_source", "needs_update": 0},
    ]
    warnings = [text for level, text in r.logs if level == "WARN"]
    assert len(warnings) == 1
    assert "Kapa lists no source named 'Typo', 'Typo 2' (known: Docs); fix kapa_source in freshness.toml" \
        in warnings[0]


def test_freshness_unknown_source_from_the_kapa_api_listing(make_harness, fast, now, kapa, kapa_key):
    kapa.add_source("p1", "Docs", ingested_at=now - timedelta(days=1))
    h = make_harness(PLUGIN, {**fast, "project_id": "p1", "kapa_api_url": kapa.url, "kapa_token": kapa_key,
                              **_sources({"kapa_source": "Docs", "repos": [f"{DOCS}@master"]},
                                         {"kapa_source": "Gone", "repos": [f"{DOCS}@master"]})})
    r = h.scheduled(now)
    assert r.ok and kapa.count("sources") == 1  # one listing serves every source of the run
    assert [(s["source_name"], s["status"]) for s in _status(h)] == [("Docs", "ok"), ("Gone", "unknown_source")]


def test_freshness_pr_without_file_rows_counts_whole_as_before(make_harness, fast, now, ingested):
    h = make_harness(PLUGIN, {**fast, **_sources({"kapa_source": "Docs", "repos": [f"{DOCS}@master"],
                                                  "paths": ["content/**"]})})
    h.write_lp(_ingestion(ingested, "Docs"))
    r = h.writes(f'gh,repo={DOCS},ref=master,pr_number=5 activity_type="pr_merge",lines=42i,additions=40i,'
                 f'deletions=2i,author="a",title="t",url="u" {_ns(now - timedelta(hours=1))}')
    assert r.ok
    (status,) = _status(h)
    assert (status["prs_since_ingestion"], status["lines_since_ingestion"], status["files_changed"]) == (1, 42, 0)
    assert _alerts(h)[0]["message"].endswith("; 1 PRs without a file list counted whole")


@pytest.mark.parametrize("raw, problem", [
    ("not json", "sources argument is not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "sources argument is not valid JSON"),
    ("[]", "must be a non-empty JSON array"),
    ('[{"kapa_source":"D","repos":["o/r"]}]', "source 'D': repos entry 'o/r' is not owner/name@base"),
    ('[{"kapa_source":"D","repos":["o/r@m"],"paths":["[x]"]}]', "source 'D': paths: '[x]' uses [...] ranges"),
])
def test_freshness_bad_sources_argument_is_logged_not_raised(make_harness, fast, now, raw, problem):
    h = make_harness(PLUGIN, {**fast, "sources": raw})
    r = h.scheduled(now)
    assert r.ok and r.writes == []
    assert any(level == "ERROR" and problem in text for level, text in r.logs)
    resp = h.request(body={})
    assert resp.status == 400 and problem in resp.json()["message"]


# ---------------------------------------------------------------- request:freshness


@pytest.fixture
def endpoint(make_harness, fast, now, ingested):
    h = make_harness(PLUGIN, {**fast, **_sources(
        {"kapa_source": "Docs", "repos": [f"{DOCS}@master"], "paths": ["content/**"], "pages": PAGES},
        {"kapa_source": "API reference", "repos": [f"{API}@main"]},
        {"kapa_source": "Never", "repos": [f"{API}@main"]})})
    h.write_lp(_ingestion(ingested, "Docs"))
    h.write_lp(_ingestion(now - timedelta(hours=5), "API reference"))
    h.write_lp("\n".join([
        _pr(40, now - timedelta(hours=4), [("content/a/_index.md", 10, 0), ("content/b.md", 2, 2)]),
        _pr(41, now - timedelta(hours=3), [("content/a/_index.md", 30, 5), ("README.md", 9, 9)]),
        _pr(42, now - timedelta(hours=6), [("spec.yml", 3, 0)], repo=API, ref="main"),  # before its ingestion
    ]))
    return h


def test_freshness_endpoint_reports_pages_most_changed_first(endpoint, now, ingested):
    r = endpoint.request(query={"source": "Docs"}, method="GET")
    assert r.status == 200, r.body
    body = r.json()
    assert body["status"] == "success" and r.writes == []
    (docs,) = body["sources"]
    assert docs == {
        "source": "Docs", "repos": [f"{DOCS}@master"],
        "last_ingestion": ingested.strftime("%Y-%m-%dT%H:%M:%SZ"), "days_since_ingestion": docs["days_since_ingestion"],
        "pr_count": 2, "lines": 49, "files": 2, "pages_changed": 2, "severity_threshold": 100,
        "pages": [
            {"page": "https://docs.example.com/a/", "repo": DOCS, "lines": 45, "prs": [40, 41],
             "last_merged_at": (now - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")},
            {"page": "https://docs.example.com/b/", "repo": DOCS, "lines": 4, "prs": [40],
             "last_merged_at": (now - timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ")},
        ]}
    assert 3.0 < docs["days_since_ingestion"] < 3.1


def test_freshness_endpoint_all_sources_without_a_source(endpoint):
    body = endpoint.request(body=b"").json()
    assert [(s["source"], s["pr_count"], s["last_ingestion"] is None) for s in body["sources"]] == [
        ("Docs", 2, False), ("API reference", 0, False), ("Never", 0, True)]
    assert "no ingestion" in body["sources"][2]["note"]


def test_freshness_endpoint_source_in_the_body_wins(endpoint):
    body = endpoint.request(query={"source": "Docs"}, body={"source": "API reference"}).json()
    assert [s["source"] for s in body["sources"]] == ["API reference"]


def test_freshness_endpoint_unknown_source_is_404_listing_known_ones(endpoint):
    r = endpoint.request(query={"source": "Nope"})
    assert r.status == 404
    assert r.json() == {"status": "error",
                        "message": "unknown source 'Nope'; known sources: 'Docs', 'API reference', 'Never'"}


@pytest.mark.parametrize("body, message", [
    (b"{", "request body is not valid JSON"), (b"[1]", "request body must be a JSON object"),
    (b'{"source": 3}', "field 'source' must be a string, got int"),
    (b"[" * 100_000 + b"]" * 100_000, "request body is not valid JSON: nested too deeply"),
])
def test_freshness_endpoint_bad_body_is_400(endpoint, body, message):
    r = endpoint.request(body=body)
    assert r.status == 400 and r.json()["status"] == "error" and message in r.json()["message"]


def test_freshness_endpoint_refuses_a_token_in_the_query_string(endpoint):
    r = endpoint.request(query={"source": "Docs", "token": "ghp_secret0123456789abcdefghijklmnop"})
    assert r.status == 400 and "do not send a token in the query string (token)" in r.json()["message"]
    assert "ghp_secret" not in r.body.decode() + " ".join(t for _l, t in endpoint.logs)


def test_freshness_endpoint_source_name_is_a_parameter_not_sql(make_harness, fast, now):
    name = "Docs' OR '1'='1"
    h = make_harness(PLUGIN, {**fast, **_sources({"kapa_source": name, "repos": [f"{DOCS}@master"]})})
    h.write_lp(_ingestion(now - timedelta(days=1), "Docs"))
    (report,) = h.request(query={"source": name}).json()["sources"]
    assert report["last_ingestion"] is None


def test_freshness_endpoint_without_sources_uses_the_single_source_settings(make_harness, fast, now):
    h = make_harness(PLUGIN, {**fast, "source_name": "Docs", "repo": DOCS, "base": "master"})
    h.write_lp(_ingestion(now - timedelta(days=1), "Docs"))
    h.write_lp(_pr(50, now - timedelta(hours=1), [(".github/ci.yml", 1, 1)]))
    (report,) = h.request().json()["sources"]
    assert (report["source"], report["repos"], report["files"], report["lines"]) == ("Docs", [f"{DOCS}@master"], 1, 2)
    assert report["pages"][0]["page"] == ".github/ci.yml"


def test_freshness_log_lines_carry_a_task_id_across_sources(make_harness, fast, now, ingested):
    h = make_harness(PLUGIN, {**fast, **_sources({"kapa_source": "Docs", "repos": [f"{DOCS}@master"]},
                                                 {"kapa_source": "X", "repos": [f"{API}@main"]})})
    h.write_lp(_ingestion(ingested, "Docs"))
    r = h.scheduled(datetime.now(UTC))
    lines = [t for _lvl, t in r.logs if not t.startswith(("starting execution", "finished"))]
    assert len(lines) > 2 and len({t[:10] for t in lines}) == 1
