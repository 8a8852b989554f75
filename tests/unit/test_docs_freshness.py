"""plugins/docs_freshness.py on the plugin runtime: status rows, alert severity and dedup, webhook, fallback."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta

import pytest

PLUGIN = "docs_freshness.py"
REPO = "influxdata/docs-v2"


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000


def _ingestion_lp(moment: datetime, name: str = "Documentation") -> str:
    return (f"kapa_source,project_id=p1,source_id=s1,source_name={name},source_type=scrape,event_type=ingested_at "
            f'timestamp_unix={int(moment.timestamp())}i,timezone="UTC",occurred=1i {_ns(moment)}')


def _gh_lp(number: int, lines: int, moment: datetime, repo: str = REPO, ref: str = "master") -> str:
    return (f'gh,repo={repo},ref={ref},pr_number={number} activity_type="pr_merge",lines={lines}i,'
            f'additions={lines}i,deletions=0i,author="a",title="t",url="u" {_ns(moment)}')


@pytest.fixture
def ingested(now: datetime) -> datetime:
    return now - timedelta(days=5, hours=1)


@pytest.fixture
def seeded(make_harness, ingested, now, fast):
    """A harness whose engine holds one ingestion 5 days ago, a PR before it and one other-branch PR."""
    h = make_harness(PLUGIN, {**fast})
    h.write_lp(_ingestion_lp(ingested))
    h.write_lp(_gh_lp(1, 500, ingested - timedelta(hours=1)))  # merged before the ingestion: not counted
    h.write_lp(_gh_lp(2, 700, now - timedelta(hours=1), ref="release"))  # other branch: not counted
    return h


def _status(h):
    return h.query("SELECT days_since_ingestion, prs_since_ingestion, lines_since_ingestion, needs_update, "
                   "severity_threshold FROM integration_status ORDER BY time")


def _alerts(h):
    return h.query("SELECT severity, lines_changed, days_since_ingestion, message FROM documentation_alert "
                   "ORDER BY time")


def test_docs_freshness_warning_at_threshold(seeded, now):
    r = seeded.writes("\n".join([_gh_lp(10, 60, now - timedelta(hours=3)), _gh_lp(11, 40, now - timedelta(hours=2))]))
    assert r.ok, r.error
    assert _status(seeded) == [{"days_since_ingestion": 5, "prs_since_ingestion": 2, "lines_since_ingestion": 100,
                                "needs_update": 1, "severity_threshold": 100}]
    alerts = _alerts(seeded)
    assert [(a["severity"], a["lines_changed"], a["days_since_ingestion"]) for a in alerts] == [("warning", 100, 5)]
    assert alerts[0]["message"].startswith("Documentation needs update: 2 PRs with 100 lines changed in the last 5.0")
    assert not any(line.startswith("gh") for line in r.writes)


def test_docs_freshness_info_below_threshold_then_warning_once(seeded, now):
    seeded.writes(_gh_lp(10, 30, now - timedelta(hours=3)))
    assert [a["severity"] for a in _alerts(seeded)] == ["info"]
    r = seeded.writes(_gh_lp(11, 20, now - timedelta(hours=2)))  # still info: no repeat
    assert [line.split(",")[0] for line in r.writes] == ["integration_status"]
    seeded.writes(_gh_lp(12, 80, now - timedelta(hours=1)))  # 130 lines: worse -> warning
    seeded.writes(_gh_lp(13, 5, now - timedelta(minutes=30)))  # still warning: no repeat
    assert [(a["severity"], a["lines_changed"]) for a in _alerts(seeded)] == [("info", 30), ("warning", 130)]
    assert [s["lines_since_ingestion"] for s in _status(seeded)] == [30, 50, 130, 135]


def test_docs_freshness_new_ingestion_allows_a_new_alert(seeded, now):
    seeded.write_lp(_gh_lp(10, 300, now - timedelta(hours=4)))
    seeded.scheduled(now - timedelta(hours=3))  # warning, stamped 3 h ago
    seeded.write_lp(_ingestion_lp(now - timedelta(hours=2)))  # Kapa re-ingested after that alert
    seeded.write_lp(_gh_lp(11, 10, now - timedelta(hours=1)))
    seeded.scheduled(now)
    assert [(a["severity"], a["lines_changed"]) for a in _alerts(seeded)] == [("warning", 300), ("info", 10)]


def test_docs_freshness_no_changes_writes_status_without_alert(seeded, now):
    r = seeded.scheduled(now)
    assert r.ok
    assert _status(seeded) == [{"days_since_ingestion": 5, "prs_since_ingestion": 0, "lines_since_ingestion": 0,
                                "needs_update": 0, "severity_threshold": 100}]
    assert [line.split(",")[0] for line in r.writes] == ["integration_status"]


def test_docs_freshness_scheduled_evaluates_and_dedups(seeded, now):
    seeded.write_lp(_gh_lp(10, 150, now - timedelta(hours=3)))
    first = seeded.scheduled(now)
    second = seeded.scheduled(now + timedelta(days=1))
    assert [line.split(",")[0] for line in first.writes] == ["integration_status", "documentation_alert"]
    assert [line.split(",")[0] for line in second.writes] == ["integration_status"]
    assert [s["days_since_ingestion"] for s in _status(seeded)] == [5, 6]


@pytest.mark.parametrize("batches", [
    [],
    [{"table_name": "gh", "rows": []}],
    [{"table_name": "cpu", "rows": [{"repo": REPO, "ref": "master", "time": 1}]}],
    [{"table_name": "gh", "rows": [{"repo": "other/repo", "ref": "master", "lines": 5, "time": 1}]}],
    [{"table_name": "gh", "rows": [{"repo": REPO, "ref": "release", "time": 1}]}],
    [{"table_name": "integration_status", "rows": [{"repo": REPO, "time": 1}]}],
])
def test_docs_freshness_ignores_irrelevant_batches(seeded, batches):
    r = seeded.writes(batches)
    assert (r.ok, r.writes) == (True, [])
    assert any("no new gh rows for influxdata/docs-v2@master; skipped" in text for _level, text in r.logs)


def test_docs_freshness_rows_with_only_present_columns_are_relevant(seeded, now):
    seeded.write_lp(_gh_lp(10, 5, now - timedelta(hours=1)))
    r = seeded.writes([{"table_name": "gh", "rows": [{"repo": REPO, "pr_number": "10", "time": 1}]}])
    assert [line.split(",")[0] for line in r.writes] == ["integration_status", "documentation_alert"]


def test_docs_freshness_first_run_without_tables(make_harness, fast, now):
    h = make_harness(PLUGIN, {**fast})
    r = h.scheduled(now)
    assert (r.ok, r.writes) == (True, [])
    assert any(level == "WARN" and "no ingestion time known for source 'Documentation'" in text
               for level, text in r.logs)


def test_docs_freshness_before_any_alert_table_exists(make_harness, fast, ingested, now):
    h = make_harness(PLUGIN, {**fast, "severity_threshold": "10"})
    h.write_lp(_ingestion_lp(ingested))
    r = h.writes(_gh_lp(5, 12, now - timedelta(hours=1)))
    assert r.ok and [(a["severity"], a["lines_changed"]) for a in _alerts(h)] == [("warning", 12)]


def test_docs_freshness_kapa_api_fallback_when_table_is_empty(make_harness, fast, kapa, kapa_key, now):
    kapa.add_source("p1", "Other", ingested_at=now - timedelta(days=1))
    kapa.add_source("p1", "Documentation", ingested_at=now - timedelta(days=3, hours=1))
    h = make_harness(PLUGIN, {**fast, "project_id": "p1", "kapa_api_url": kapa.url, "kapa_token": kapa_key})
    r = h.writes(_gh_lp(3, 42, now - timedelta(days=2)) + "\n" + _gh_lp(4, 1, now - timedelta(days=4)))
    assert r.ok
    assert _status(h)[0]["prs_since_ingestion"] == 1 and _status(h)[0]["days_since_ingestion"] == 3
    assert kapa.count("sources") == 1 and kapa.auth_headers("x-api-key") == [kapa_key]
    assert not any(line.startswith("kapa_source") for line in r.writes)


def test_docs_freshness_kapa_api_deeply_nested_answer_is_retried(make_harness, fast, kapa, kapa_key, now):
    # JSON nested deeper than the decoder's limit raises RecursionError (not ValueError): a malformed answer
    kapa.add_source("p1", "Documentation", ingested_at=now - timedelta(days=3, hours=1))
    kapa.fail_next(status=200, body=b"[" * 100_000 + b"]" * 100_000)
    h = make_harness(PLUGIN, {**fast, "project_id": "p1", "kapa_api_url": kapa.url, "kapa_token": kapa_key})
    r = h.writes(_gh_lp(3, 42, now - timedelta(days=2)))
    assert r.ok
    assert _status(h)[0]["days_since_ingestion"] == 3 and kapa.count("sources") == 2


def test_docs_freshness_table_ingestion_wins_over_api(seeded, kapa, kapa_key, now, fast):
    seeded.args = {**fast, "project_id": "p1", "kapa_api_url": kapa.url, "kapa_token": kapa_key}
    seeded.writes(_gh_lp(10, 5, now - timedelta(hours=1)))
    assert kapa.count() == 0


def test_docs_freshness_severity_threshold_argument(seeded, now, fast):
    seeded.args = {**fast, "severity_threshold": "500"}
    seeded.writes(_gh_lp(10, 499, now - timedelta(hours=1)))
    assert [a["severity"] for a in _alerts(seeded)] == ["info"]
    assert _status(seeded)[0]["severity_threshold"] == 500


def test_docs_freshness_bad_threshold_logs_error(seeded, now, fast):
    seeded.args = {**fast, "severity_threshold": "lots"}
    r = seeded.writes(_gh_lp(10, 5, now - timedelta(hours=1)))
    assert r.writes == []
    assert any(level == "ERROR" and text.endswith("bad configuration: severity_threshold must be a number, got "
                                                  "'lots'") for level, text in r.logs)


def test_docs_freshness_webhook_posts_each_new_alert(seeded, webhook, now, fast, tmp_path, exposed):
    url_file = tmp_path / "notify_url"
    secret_url = f"{webhook.url}/services/T000/B000/secretpath123"
    url_file.write_text(secret_url)
    seeded.args = {**fast, "notify_url_file": str(url_file)}
    seeded.writes(_gh_lp(10, 150, now - timedelta(hours=1)))
    r = seeded.writes(_gh_lp(11, 1, now - timedelta(minutes=30)))
    assert len(webhook.posts) == 1
    assert set(webhook.posts[0]) == {"text"}
    assert webhook.posts[0]["text"].startswith("[warning] Documentation needs update: 1 PRs with 150 lines")
    assert webhook.requests[0].path == "/services/T000/B000/secretpath123"
    assert secret_url not in exposed(r, seeded)


def test_docs_freshness_failing_webhook_keeps_the_alert_row(seeded, webhook, now, fast, tmp_path, monkeypatch):
    url_file = tmp_path / "notify_url"
    url_file.write_text(webhook.url + "/hook")
    monkeypatch.setenv("NOTIFY_URL_FILE", str(url_file))
    webhook.fail_next(10, status=500)
    r = seeded.writes(_gh_lp(10, 20, now - timedelta(hours=1)))
    assert r.ok
    assert webhook.count("post") == 4  # 1 + max_retries (3)
    assert [a["severity"] for a in _alerts(seeded)] == ["info"]
    assert any(level == "ERROR" and "alert notification failed (the alert row is kept): webhook: HTTP 500; gave up "
               "after 4 attempts" in text for level, text in r.logs)


def test_docs_freshness_broken_webhook_answer_keeps_the_rows_and_hides_the_url(seeded, webhook, now, fast, tmp_path,
                                                                               exposed):
    # A body cut short raises ChunkedEncodingError (neither a timeout nor a connect error). Had it escaped, the
    # engine would discard the queued status and alert rows and log the exception text.
    url_file = tmp_path / "notify_url"
    secret_url = f"{webhook.url}/services/T000/B000/secretpath123"
    url_file.write_text(secret_url)
    seeded.args = {**fast, "notify_url_file": str(url_file)}
    webhook.fail_next(10, truncated=True)
    r = seeded.writes(_gh_lp(10, 20, now - timedelta(hours=1)))
    assert r.ok, r.error
    assert webhook.count("post") == 4  # 1 + max_retries (3)
    assert [a["severity"] for a in _alerts(seeded)] == ["info"]
    assert len(_status(seeded)) == 1
    assert any(level == "ERROR" and "alert notification failed (the alert row is kept): webhook: " in text
               and "gave up after 4 attempts" in text for level, text in r.logs)
    assert "secretpath123" not in exposed(r, seeded)


@pytest.mark.parametrize("content", [None, "not-a-url"])
def test_docs_freshness_unusable_notify_file_turns_off_the_webhook_not_the_rows(seeded, webhook, now, fast,
                                                                                tmp_path, content):
    url_file = tmp_path / "notify_url"
    if content is not None:
        url_file.write_text(content)  # None: the file does not exist (e.g. unreadable for the server's user)
    seeded.args = {**fast, "notify_url_file": str(url_file)}
    r = seeded.writes(_gh_lp(10, 150, now - timedelta(hours=1)))
    assert len(_status(seeded)) == 1 and len(_alerts(seeded)) == 1
    assert webhook.count("post") == 0
    errors = [text for level, text in r.logs if level == "ERROR"]
    assert len(errors) == 1 and "webhook off for this run (alerts are still written): " in errors[0]


def test_docs_freshness_unreadable_kapa_key_turns_off_only_the_fallback(seeded, kapa, now, fast, tmp_path):
    seeded.args = {**fast, "project_id": "p1", "kapa_api_url": kapa.url,
                   "kapa_token_file": str(tmp_path / "absent")}
    seeded.writes(_gh_lp(10, 150, now - timedelta(hours=1)))
    assert len(_status(seeded)) == 1  # the ingestion time comes from kapa_source; no key needed
    assert kapa.count() == 0


def test_docs_freshness_empty_notify_file_means_no_webhook(seeded, webhook, now, fast, tmp_path):
    url_file = tmp_path / "notify_url"
    url_file.write_text("")
    seeded.args = {**fast, "notify_url_file": str(url_file)}
    seeded.writes(_gh_lp(10, 150, now - timedelta(hours=1)))
    assert webhook.count("post") == 0 and len(_alerts(seeded)) == 1


def test_docs_freshness_webhook_retry_then_success(seeded, webhook, now, fast, tmp_path):
    url_file = tmp_path / "notify_url"
    url_file.write_text(webhook.url + "/hook")
    seeded.args = {**fast, "notify_url_file": str(url_file)}
    webhook.fail_next(status=503)
    seeded.writes(_gh_lp(10, 20, now - timedelta(hours=1)))
    assert webhook.count("post") == 2 and len(_alerts(seeded)) == 1


def test_docs_freshness_log_lines_carry_a_task_id(seeded, now):
    r = seeded.writes(_gh_lp(10, 20, now - timedelta(hours=1)))
    plugin_lines = [text for _level, text in r.logs if not text.startswith(("starting execution", "finished"))]
    assert plugin_lines and all(text[0] == "[" and text[9:11] == "] " for text in plugin_lines)
    assert len({text[:10] for text in plugin_lines}) == 1


def test_docs_freshness_source_and_repo_arguments(make_harness, fast, now):
    h = make_harness(PLUGIN, {**fast, "source_name": "API reference", "repo": "o/r", "base": "main"})
    h.write_lp(_ingestion_lp(now - timedelta(days=1), name="API\\ reference"))
    h.write_lp(_ingestion_lp(now - timedelta(days=9)))
    r = h.writes(_gh_lp(1, 7, now - timedelta(hours=1), repo="o/r", ref="main"))
    assert r.ok
    assert h.query("SELECT repo, source_name, lines_since_ingestion, days_since_ingestion FROM integration_status") == [
        {"repo": "o/r", "source_name": "API reference", "lines_since_ingestion": 7, "days_since_ingestion": 1}]


def test_docs_freshness_call_time_is_the_evaluation_time(seeded):
    at = datetime(2031, 1, 1, 8, 0, tzinfo=UTC)
    seeded.scheduled(at)
    assert seeded.query("SELECT time FROM integration_status") == [{"time": _ns(at)}]


def test_docs_freshness_unresolvable_kapa_host_fails_the_fallback_at_once(make_harness, fast, kapa_key, now):
    """The Kapa listing fallback offline: one warning naming the host, no retries, the evaluation goes on."""
    h = make_harness(PLUGIN, {**fast, "project_id": "p1", "kapa_api_url": "http://kapa.invalid:8443",
                              "kapa_token": kapa_key, "max_retries": "4", "backoff_seconds": "1",
                              "budget_seconds": "30"})
    started = time.monotonic()
    r = h.writes(_gh_lp(3, 42, now - timedelta(days=2)))
    assert time.monotonic() - started < 5  # with retries: 1 + 2 + 4 + 8 s of backoff alone
    assert r.ok, r.error
    warnings = [text for level, text in r.logs if level == "WARN"]
    assert any("Kapa API fallback failed: Kapa sources page 1: cannot reach kapa.invalid:8443 (name not resolved)"
               in text for text in warnings), r.logs
    assert not any("retry" in text for _level, text in r.logs), r.logs


def test_docs_freshness_webhook_refused_names_only_the_host(seeded, now, fast, tmp_path, exposed):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url_file = tmp_path / "notify_url"
    url_file.write_text(f"http://127.0.0.1:{port}/services/T000/B000/secretpath123")
    seeded.args = {**fast, "notify_url_file": str(url_file)}
    r = seeded.writes(_gh_lp(10, 150, now - timedelta(hours=1)))
    assert len(_alerts(seeded)) == 1  # the alert row is kept
    assert any(level == "ERROR" and f"webhook: connection to 127.0.0.1:{port} failed; gave up after 4 attempts"
               in text for level, text in r.logs), r.logs
    assert "secretpath123" not in exposed(r, seeded)
