"""Grafana provisioning: the datasource file is the built-in InfluxDB datasource in SQL mode, and every
dashboard panel's SQL runs on the embedded engine against sample data with exact results.

Grafana's InfluxDB SQL mode (pkg/tsdb/influxdb/fsql) reads ``rawSql`` and interpolates macros before sending
the query; we substitute them here the same way: ``$__timeFilter(col)`` -> ``col >= '<from>' AND col <= '<to>'``
(RFC 3339, UTC), ``$__timeFrom``/``$__timeTo`` -> ``cast('<RFC 3339>' as timestamp)``,
``$__interval`` -> ``interval '<n> second'``; the dashboard variable ``${source:sqlstring}`` -> the value quoted
with ``'`` and inner quotes doubled (Grafana's ``sqlstring`` format).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.support import start_server

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "grafana" / "dashboards" / "aichat.json").read_text())
DATASOURCES = yaml.safe_load((ROOT / "grafana" / "provisioning" / "datasources" / "influxdb3.yaml").read_text())

NOW = datetime.now(UTC).replace(microsecond=0)
DAY0 = (NOW - timedelta(days=3)).replace(hour=0, minute=0, second=0)
FROM, TO = NOW - timedelta(days=30), NOW + timedelta(minutes=1)


def ns(dt: datetime) -> int:
    return int(dt.timestamp()) * 1_000_000_000


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def evaluated(dt: datetime) -> str:
    """stale_page.evaluated_at as docs_freshness writes it: RFC 3339 with nanoseconds, UTC."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000000000Z")


def interpolate(sql: str, start: datetime = FROM, end: datetime = TO, interval_s: int = 3600,
                source: str = "Documentation") -> str:
    """Grafana's macro and variable expansion for the InfluxDB SQL datasource."""
    sql = sql.replace("${source:sqlstring}", "'" + source.replace("'", "''") + "'")
    sql = re.sub(r"\$__timeFilter\(\s*([A-Za-z_\"]+)\s*\)",
                 lambda m: f"{m.group(1)} >= '{rfc3339(start)}' AND {m.group(1)} <= '{rfc3339(end)}'", sql)
    sql = re.sub(r"\$__timeFrom(\(\))?", f"cast('{rfc3339(start)}' as timestamp)", sql)
    sql = re.sub(r"\$__timeTo(\(\))?", f"cast('{rfc3339(end)}' as timestamp)", sql)
    sql = sql.replace("$__interval", f"interval '{interval_s} second'")
    assert "$" not in sql, f"unhandled macro or variable in {sql}"
    return sql


SAMPLE = "\n".join([
    # two PRs on DAY0 (10 + 5 lines), one on DAY0+1 (40 lines), one outside the dashboard range
    f'gh,repo=acme/docs,ref=master,pr_number=1 activity_type="pr_merge",lines=10i,additions=7i,deletions=3i,'
    f'author="a",title="t1",url="u1" {ns(DAY0 + timedelta(hours=1))}',
    f'gh,repo=acme/docs,ref=master,pr_number=2 activity_type="pr_merge",lines=5i,additions=5i,deletions=0i,'
    f'author="b",title="t2",url="u2" {ns(DAY0 + timedelta(hours=2))}',
    f'gh,repo=acme/docs,ref=master,pr_number=3 activity_type="pr_merge",lines=40i,additions=30i,deletions=10i,'
    f'author="a",title="t3",url="u3" {ns(DAY0 + timedelta(days=1, hours=5))}',
    f'gh,repo=acme/docs,ref=master,pr_number=4 activity_type="pr_merge",lines=999i,additions=999i,deletions=0i,'
    f'author="a",title="old",url="u4" {ns(NOW - timedelta(days=90))}',
    # Kapa ingestions: Documentation 2 and 5 days ago (latest counts), API reference 10 days ago
    f'kapa_source,project_id=p,source_id=s1,source_name=Documentation,source_type=scrape,event_type=ingested_at '
    f'timestamp_unix={int((NOW - timedelta(days=5)).timestamp())}i,timezone="UTC",occurred=1i {ns(NOW - timedelta(days=5))}',
    f'kapa_source,project_id=p,source_id=s1,source_name=Documentation,source_type=scrape,event_type=ingested_at '
    f'timestamp_unix={int((NOW - timedelta(days=2, hours=1)).timestamp())}i,timezone="UTC",occurred=1i '
    f'{ns(NOW - timedelta(days=2, hours=1))}',
    f'kapa_source,project_id=p,source_id=s1,source_name=Documentation,source_type=scrape,event_type=next_run_at '
    f'timestamp_unix={int((NOW + timedelta(days=5)).timestamp())}i,timezone="UTC",scheduled=1i {ns(NOW + timedelta(days=5))}',
    f'kapa_source,project_id=p,source_id=s2,source_name=API\\ reference,source_type=openapi,event_type=ingested_at '
    f'timestamp_unix={int((NOW - timedelta(days=10, hours=1)).timestamp())}i,timezone="UTC",occurred=1i '
    f'{ns(NOW - timedelta(days=10, hours=1))}',
    # integration_status: an older and a newer evaluation for Documentation, one for API reference
    f'integration_status,repo=acme/docs,source_name=Documentation days_since_ingestion=1i,prs_since_ingestion=2i,'
    f'lines_since_ingestion=15i,needs_update=0i,severity_threshold=200i {ns(NOW - timedelta(days=1))}',
    f'integration_status,repo=acme/docs,source_name=Documentation days_since_ingestion=2i,prs_since_ingestion=3i,'
    f'lines_since_ingestion=55i,needs_update=1i,severity_threshold=200i {ns(NOW - timedelta(hours=1))}',
    f'integration_status,repo=acme/docs,source_name=API\\ reference days_since_ingestion=10i,prs_since_ingestion=9i,'
    f'lines_since_ingestion=300i,needs_update=1i,severity_threshold=200i {ns(NOW - timedelta(hours=2))}',
    # Documentation also watches a second repository; its latest evaluation found 2 pages changed
    f'integration_status,repo=acme/site,source_name=Documentation days_since_ingestion=2i,prs_since_ingestion=1i,'
    f'lines_since_ingestion=7i,files_changed=2i,pages_changed=2i,needs_update=1i,severity_threshold=200i,'
    f'status="ok" {ns(NOW - timedelta(hours=3))}',
    # stale_page rows, time = the ingestion they count from, evaluated_at = their evaluation (the time of its
    # integration_status row). Documentation/acme/docs: a page of the previous window (history), a page an
    # earlier evaluation of this window listed but the latest no longer does, and the latest evaluation's two.
    f'stale_page,source_name=Documentation,repo=acme/docs,page=https://d.example/old/ lines_changed=99i,pr_count=1i,'
    f'pr_numbers="1",last_merged_at="x",evaluated_at="{evaluated(NOW - timedelta(days=3))}" '
    f'{ns(NOW - timedelta(days=5))}',
    f'stale_page,source_name=Documentation,repo=acme/docs,page=https://d.example/dropped/ lines_changed=70i,'
    f'pr_count=1i,pr_numbers="2",last_merged_at="x",evaluated_at="{evaluated(NOW - timedelta(days=1))}" '
    f'{ns(NOW - timedelta(days=2, hours=1))}',
    f'stale_page,source_name=Documentation,repo=acme/docs,page=https://d.example/a/ lines_changed=40i,pr_count=1i,'
    f'pr_numbers="3",last_merged_at="2025-01-02T05:00:00Z",evaluated_at="{evaluated(NOW - timedelta(hours=1))}" '
    f'{ns(NOW - timedelta(days=2, hours=1))}',
    f'stale_page,source_name=Documentation,repo=acme/docs,page=https://d.example/b/ lines_changed=15i,pr_count=2i,'
    f'pr_numbers="1 2",last_merged_at="2025-01-01T02:00:00Z",evaluated_at="{evaluated(NOW - timedelta(hours=1))}" '
    f'{ns(NOW - timedelta(days=2, hours=1))}',
    f'stale_page,source_name=Documentation,repo=acme/site,page=site/index.md lines_changed=5i,pr_count=1i,'
    f'pr_numbers="8",last_merged_at="2025-01-01T02:00:00Z",evaluated_at="{evaluated(NOW - timedelta(hours=3))}" '
    f'{ns(NOW - timedelta(days=2, hours=1))}',
    f'stale_page,source_name=API\\ reference,repo=acme/docs,page=api/ref.yml lines_changed=300i,pr_count=9i,'
    f'pr_numbers="9",last_merged_at="2025-01-01T02:00:00Z",evaluated_at="{evaluated(NOW - timedelta(hours=2))}" '
    f'{ns(NOW - timedelta(days=10, hours=1))}',
    # alerts
    f'documentation_alert,repo=acme/docs,source_name=Documentation,severity=info message="55 lines",'
    f'lines_changed=55i,days_since_ingestion=2i {ns(NOW - timedelta(hours=1))}',
    f'documentation_alert,repo=acme/docs,source_name=API\\ reference,severity=warning message="300 lines",'
    f'lines_changed=300i,days_since_ingestion=10i {ns(NOW - timedelta(hours=2))}',
])


def panel_sql(title: str) -> str:
    (panel,) = [p for p in DASHBOARD["panels"] if p["title"] == title]
    (target,) = panel["targets"]
    return target["rawSql"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with start_server(tmp_path_factory.mktemp("grafana"), auth=False) as srv:
        r = srv.session.post(f"{srv.url}/api/v3/write_lp?db=aichat", data=SAMPLE, timeout=30)
        assert r.status_code == 204, r.text
        yield srv


def run(engine, sql: str, **kwargs) -> list[dict]:
    r = engine.session.post(f"{engine.url}/api/v3/query_sql",
                            json={"db": "aichat", "q": interpolate(sql, **kwargs), "format": "json"}, timeout=30)
    assert r.status_code == 200, f"{r.status_code} {r.text}\n{interpolate(sql, **kwargs)}"
    return r.json()


def test_grafana_datasource_is_builtin_influxdb_in_sql_mode_without_a_committed_token():
    (ds,) = DATASOURCES["datasources"]
    assert ds["type"] == "influxdb" and ds["uid"] == "aichat-influxdb3"
    assert ds["url"] == "http://influxdb3:8181"
    assert ds["jsonData"] == {"version": "SQL", "dbName": "${INFLUXDB3_DATABASE}", "insecureGrpc": True}
    assert ds["secureJsonData"] == {"token": "${INFLUXDB3_GRAFANA_TOKEN}"}


def test_grafana_dashboard_has_the_five_panels_all_on_the_provisioned_datasource_and_filtered_by_source():
    assert [p["title"] for p in DASHBOARD["panels"]] == [
        "PR lines merged per day",
        "Lines changed since last ingestion, per repository",
        "Days since ingestion",
        "Recent alerts",
        "Stale pages",
    ]
    for p in DASHBOARD["panels"]:
        for t in p["targets"]:
            assert t["datasource"] == {"type": "influxdb", "uid": "aichat-influxdb3"}
            assert t["rawQuery"] is True and t["format"] in ("table", "time_series")
            assert "${source:sqlstring}" in t["rawSql"], p["title"]


def test_grafana_source_variable_lists_the_evaluated_sources(engine):
    (var,) = DASHBOARD["templating"]["list"]
    assert (var["name"], var["type"], var["multi"], var["includeAll"]) == ("source", "query", False, False)
    assert var["datasource"] == {"type": "influxdb", "uid": "aichat-influxdb3"}
    assert run(engine, var["query"]) == [{"source_name": "API reference"}, {"source_name": "Documentation"}]


def test_grafana_sql_every_panel_runs_for_every_source_even_with_a_quote_in_its_name(engine):
    for p in DASHBOARD["panels"]:
        for source in ("Documentation", "API reference", "O'Reilly docs", "absent"):
            run(engine, p["targets"][0]["rawSql"], source=source)


def test_grafana_sql_pr_lines_merged_per_day(engine):
    rows = run(engine, panel_sql("PR lines merged per day"))
    day0 = DAY0.strftime("%Y-%m-%dT%H:%M:%S")
    day1 = (DAY0 + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert rows == [{"day": day0, "lines": 15, "prs": 2}, {"day": day1, "lines": 40, "prs": 1}]
    assert run(engine, panel_sql("PR lines merged per day"), source="absent") == []


def test_grafana_sql_lines_since_last_ingestion_uses_the_latest_status_per_repository(engine):
    rows = run(engine, panel_sql("Lines changed since last ingestion, per repository"))
    assert rows == [
        # written before files_changed/pages_changed/status existed: the JSON format leaves nulls out
        {"repo": "acme/docs", "lines_since_ingestion": 55, "prs_since_ingestion": 3, "needs_update": 1},
        {"repo": "acme/site", "lines_since_ingestion": 7, "files_changed": 2, "pages_changed": 2,
         "prs_since_ingestion": 1, "needs_update": 1, "status": "ok"},
    ]
    rows = run(engine, panel_sql("Lines changed since last ingestion, per repository"), source="API reference")
    assert [(r["repo"], r["lines_since_ingestion"]) for r in rows] == [("acme/docs", 300)]


def test_grafana_sql_days_since_ingestion(engine):
    rows = run(engine, panel_sql("Days since ingestion"))
    assert [(r["source_name"], r["days_since_ingestion"]) for r in rows] == [("Documentation", 2)]
    assert rows[0]["last_ingested_at"] == (NOW - timedelta(days=2, hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    rows = run(engine, panel_sql("Days since ingestion"), source="API reference")
    assert [(r["source_name"], r["days_since_ingestion"]) for r in rows] == [("API reference", 10)]


def test_grafana_sql_recent_alerts_newest_first(engine):
    rows = run(engine, panel_sql("Recent alerts"))
    assert [(r["severity"], r["repo"], r["lines_changed"]) for r in rows] == [("info", "acme/docs", 55)]
    assert rows[0]["message"] == "55 lines"
    rows = run(engine, panel_sql("Recent alerts"), source="API reference")
    assert [(r["severity"], r["lines_changed"]) for r in rows] == [("warning", 300)]


def test_grafana_sql_stale_pages_of_the_latest_evaluation_per_repository(engine):
    """Only the pages the latest evaluation of each repository listed: not the previous ingestion window's, not
    a page an earlier evaluation of this window wrote (its row stays, with an older evaluated_at)."""
    rows = run(engine, panel_sql("Stale pages"))
    assert [(r["page"], r["repo"], r["lines_changed"], r["pr_numbers"]) for r in rows] == [
        ("https://d.example/a/", "acme/docs", 40, "3"),
        ("https://d.example/b/", "acme/docs", 15, "1 2"),
        ("site/index.md", "acme/site", 5, "8"),
    ]
    rows = run(engine, panel_sql("Stale pages"), source="API reference")
    assert [(r["page"], r["pr_count"]) for r in rows] == [("api/ref.yml", 9)]


def test_grafana_sql_time_filter_excludes_rows_outside_the_range(engine):
    sql = interpolate(panel_sql("PR lines merged per day"), start=NOW - timedelta(days=1), end=NOW)
    r = engine.session.post(f"{engine.url}/api/v3/query_sql", json={"db": "aichat", "q": sql, "format": "json"})
    assert r.status_code == 200 and r.json() == []
