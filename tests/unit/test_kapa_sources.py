"""plugins/kapa_sources.py on the plugin runtime, against the loopback FakeKapa."""

from __future__ import annotations

import re
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

PLUGIN = "kapa_sources.py"
PROJECT = "proj-1"
ROOT = Path(__file__).resolve().parents[2]


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000) * 1000


def _args(kapa, fast, key, **extra):
    return {"project_id": PROJECT, "kapa_api_url": kapa.url, "kapa_token": key, **fast, **extra}


def test_kapa_sources_rows_and_response_shape(kapa, make_harness, fast, kapa_key):
    ingested = datetime(2025, 3, 19, 12, 0, 35, 788963, tzinfo=UTC)
    next_run = datetime(2025, 3, 26, 12, 0, 0, 138, tzinfo=UTC)
    kapa.add_source(PROJECT, "Documentation", source_id="e58aefe2", ingested_at=ingested, next_run_at=next_run)
    h = make_harness(PLUGIN, _args(kapa, fast, kapa_key))
    r = h.request(body={"integration_id": "int-9"})
    assert r.status == 200, r.body
    assert r.writes == [
        "kapa_source,project_id=proj-1,source_id=e58aefe2,source_name=Documentation,source_type=scrape,"
        f'event_type=ingested_at timestamp_unix=1742385635i,timezone="UTC",occurred=1i {_ns(ingested)}',
        "kapa_source,project_id=proj-1,source_id=e58aefe2,source_name=Documentation,source_type=scrape,"
        f'event_type=next_run_at timestamp_unix=1742990400i,timezone="UTC",scheduled=1i {_ns(next_run)}',
    ]
    assert r.json() == {
        "status": "success", "project_id": PROJECT, "integration_id": "int-9", "source_count": 1,
        "sources": [{"id": "e58aefe2", "name": "Documentation", "type": "scrape",
                     "ingested_at": "2025-03-19T12:00:35.788963Z", "next_run_at": "2025-03-26T12:00:00.000138Z"}],
        "not_ingested": [], "rows_written": 2, "skipped": [], "api_calls": 1,
    }
    assert kapa.auth_headers("x-api-key") == [kapa_key]
    assert h.query("SELECT event_type, occurred, scheduled, time FROM kapa_source ORDER BY time") == [
        {"event_type": "ingested_at", "occurred": 1, "scheduled": None, "time": _ns(ingested)},
        {"event_type": "next_run_at", "occurred": None, "scheduled": 1, "time": _ns(next_run)}]


def test_kapa_sources_follows_pages_until_count(kapa, make_harness, fast, kapa_key):
    base = datetime(2025, 1, 1, tzinfo=UTC)
    for i in range(250):
        kapa.add_source(PROJECT, f"Source {i}", ingested_at=base + timedelta(minutes=i))
    h = make_harness(PLUGIN, _args(kapa, fast, kapa_key))
    body = h.request().json()
    assert (body["source_count"], body["rows_written"], body["api_calls"]) == (250, 250, 3)
    assert [r.query["page"] for r in kapa.requests] == ["1", "2", "3"]
    assert {r.query["page_size"] for r in kapa.requests} == {"100"}
    assert h.query("SELECT count(DISTINCT source_id) AS n FROM kapa_source") == [{"n": 250}]


def test_kapa_sources_never_ingested_are_reported_not_written(kapa, make_harness, fast, kapa_key):
    kapa.add_source(PROJECT, "Docs", ingested_at=datetime(2025, 1, 1, tzinfo=UTC))
    never = kapa.add_source(PROJECT, "Release notes", ingested_at=None, next_run_at=None)
    h = make_harness(PLUGIN, _args(kapa, fast, kapa_key))
    body = h.request().json()
    assert body["not_ingested"] == [{"id": never["id"], "name": "Release notes"}]
    assert body["sources"][1]["ingested_at"] is None
    assert body["rows_written"] == 1
    assert h.query("SELECT source_name FROM kapa_source") == [{"source_name": "Docs"}]


def test_kapa_sources_stops_on_an_empty_page_when_count_lies(kapa, make_harness, fast, kapa_key):
    for i in range(3):
        kapa.add_source(PROJECT, f"S{i}", ingested_at=datetime(2025, 1, 1, tzinfo=UTC))
    kapa.claimed_count = 1000
    h = make_harness(PLUGIN, _args(kapa, fast, kapa_key, page_size="2"))
    body = h.request().json()
    assert (body["source_count"], kapa.count("sources")) == (3, 3)


def test_kapa_sources_page_cap_guards_an_endless_server(kapa, make_harness, fast, kapa_key):
    kapa.add_source(PROJECT, "S", ingested_at=datetime(2025, 1, 1, tzinfo=UTC))
    kapa.endless = True
    h = make_harness(PLUGIN, _args(kapa, fast, kapa_key, max_pages="5"))
    r = h.request()
    assert (r.status, r.json()["source_count"], kapa.count("sources")) == (200, 1, 5)
    assert any(level == "WARN" and "stopped after max_pages=5 pages with 1 of 2 sources" in text
               for level, text in r.logs)


@pytest.mark.parametrize("fault", [{"status": 503}, {"status": 429, "headers": {"retry-after": "0"}},
                                   {"malformed": True}, {"delay": 0.6}, {"truncated": True},
                                   {"status": 200, "body": b"[" * 100_000 + b"]" * 100_000}])  # RecursionError
def test_kapa_sources_fault_retried_then_succeeds(kapa, make_harness, fast, kapa_key, fault):
    kapa.add_source(PROJECT, "Docs", ingested_at=datetime(2025, 1, 1, tzinfo=UTC))
    kapa.fail_next(**fault)
    h = make_harness(PLUGIN, _args(kapa, fast, kapa_key))
    r = h.request()
    assert (r.status, r.json()["rows_written"], r.json()["api_calls"]) == (200, 1, 2)


def test_kapa_sources_fault_exhaustion_is_502_without_rows(kapa, make_harness, fast, kapa_key):
    kapa.add_source(PROJECT, "Docs", ingested_at=datetime(2025, 1, 1, tzinfo=UTC))
    kapa.fail_next(10, status=500)
    h = make_harness(PLUGIN, _args(kapa, fast, kapa_key))
    r = h.request()
    assert (r.status, r.json(), r.writes) == (502, {
        "status": "error", "message": "Kapa collection failed: Kapa sources page 1: HTTP 500; gave up after 4 attempts"},
        [])


def test_kapa_sources_failure_on_page_two_writes_nothing(kapa, make_harness, fast, kapa_key):
    for i in range(150):
        kapa.add_source(PROJECT, f"S{i}", ingested_at=datetime(2025, 1, 1, tzinfo=UTC))
    kapa.fail_next(10, status=500, after=1)
    h = make_harness(PLUGIN, _args(kapa, fast, kapa_key))
    r = h.request()
    assert (r.status, r.writes) == (502, [])


def test_kapa_sources_wrong_key_is_not_retried(kapa, make_harness, fast):
    h = make_harness(PLUGIN, _args(kapa, fast, "kapa_wrong_key"))
    r = h.request()
    assert (r.status, r.json()["message"]) == (
        502, "Kapa collection failed: Kapa sources page 1: Kapa rejected the API key (HTTP 401: Invalid API key.)")
    assert kapa.count() == 1


def test_kapa_sources_missing_settings_are_400(kapa, make_harness, fast, kapa_key):
    h = make_harness(PLUGIN, {"kapa_api_url": kapa.url, "kapa_token": kapa_key})
    assert (h.request().status, h.request().json()["message"]) == (
        400, "missing setting project_id: give it in the request body, the trigger argument project_id or the "
             "KAPA_PROJECT_ID setting")
    h2 = make_harness(PLUGIN, {"kapa_api_url": kapa.url, "project_id": PROJECT})
    assert h2.request().json() == {"status": "error", "message": (
        "missing Kapa API key: set the trigger argument kapa_token_file or KAPA_TOKEN_FILE (or mount "
        "/run/secrets/kapa_token)")}
    h3 = make_harness(PLUGIN, {"kapa_api_url": kapa.url, "kapa_token": kapa_key})
    assert h3.request(body={"project_id": "../etc"}).json()["message"] == (
        "invalid project_id '../etc': letters, digits, '-' and '_' only")
    assert kapa.count() == 0


def test_kapa_sources_empty_key_file_is_a_missing_key(kapa, make_harness, fast, tmp_path):
    key_file = tmp_path / "kapa_token"
    key_file.write_text("")
    h = make_harness(PLUGIN, {"kapa_api_url": kapa.url, "project_id": PROJECT, "kapa_token_file": str(key_file)})
    r = h.request()
    assert (r.status, r.json()["message"]) == (400, (
        "missing Kapa API key: set the trigger argument kapa_token_file or KAPA_TOKEN_FILE (or mount "
        "/run/secrets/kapa_token)"))
    assert kapa.count() == 0


@pytest.mark.parametrize("body, message", [
    (b"{", "request body is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    ({"project_id": 7}, "field 'project_id' must be a string, got int"),
    ("\"text\"", "request body must be a JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, "request body is not valid JSON: nested too deeply"),
])
def test_kapa_sources_bad_body_is_400(kapa, make_harness, fast, kapa_key, body, message):
    h = make_harness(PLUGIN, _args(kapa, fast, kapa_key))
    assert (h.request(body=body).status, h.request(body=body).json()["message"]) == (400, message)


def test_kapa_sources_key_in_query_string_is_refused(kapa, make_harness, fast, kapa_key, exposed):
    h = make_harness(PLUGIN, _args(kapa, fast, kapa_key))
    r = h.request(query={"kapa_token": kapa_key})
    assert r.status == 400
    assert r.json()["message"].startswith("do not send an API key in the query string (kapa_token)")
    assert "kapa_token_file" in r.json()["message"] and kapa.count() == 0
    assert kapa_key not in exposed(r, h)


def test_kapa_sources_key_from_body_and_file(kapa, make_harness, fast, kapa_key, tmp_path, exposed, monkeypatch):
    kapa.add_source(PROJECT, "Docs", ingested_at=datetime(2025, 1, 1, tzinfo=UTC))
    h = make_harness(PLUGIN, {"kapa_api_url": kapa.url, **fast})
    r1 = h.request(body={"project_id": PROJECT, "kapa_token": kapa_key})
    key_file = tmp_path / "kapa_token"
    key_file.write_text(kapa_key + "\n")
    monkeypatch.setenv("KAPA_TOKEN_FILE", str(key_file))
    monkeypatch.setenv("KAPA_PROJECT_ID", PROJECT)
    r2 = h.request()
    kapa.fail_next(10, status=500, body={"detail": f"echo {kapa_key}"})
    r3 = h.request()
    assert (r1.status, r2.status, r3.status) == (200, 200, 502)
    assert kapa.auth_headers("x-api-key")[:2] == [kapa_key, kapa_key]
    for result in (r1, r2, r3):
        assert kapa_key not in exposed(result, h)


def test_kapa_sources_scheduled_writes_and_logs(kapa, make_harness, fast, kapa_key):
    kapa.add_source(PROJECT, "Docs", ingested_at=datetime(2025, 1, 1, tzinfo=UTC),
                    next_run_at=datetime(2025, 1, 8, tzinfo=UTC))
    kapa.add_source(PROJECT, "Forum", ingested_at=None)
    h = make_harness(PLUGIN, _args(kapa, fast, kapa_key))
    r = h.scheduled()
    assert r.ok and len(r.writes) == 2
    assert any(level == "INFO" and text.endswith("project proj-1: 2 sources, 2 rows, 0 skipped, never ingested: Forum; "
                                                 "1 Kapa requests") for level, text in r.logs)


def test_kapa_sources_scheduled_without_project_logs_an_error(make_harness):
    r = make_harness(PLUGIN, None).scheduled()
    assert r.ok and r.writes == []
    assert [level for level, text in r.logs if "bad configuration: missing setting project_id" in text] == ["ERROR"]


def test_kapa_sources_unresolvable_host_is_a_fast_502_naming_the_host(make_harness, fast, kapa_key):
    """Offline (or a mistyped host) the name does not resolve: no retries, one 502 that names the host."""
    args = {**fast, "project_id": PROJECT, "kapa_token": kapa_key, "kapa_api_url": "http://kapa.invalid:8443",
            "max_retries": "4", "backoff_seconds": "1", "budget_seconds": "30"}
    h = make_harness(PLUGIN, args)
    started = time.monotonic()
    r = h.request()
    assert time.monotonic() - started < 5  # with retries: 1 + 2 + 4 + 8 s of backoff alone
    assert (r.status, r.writes) == (502, [])
    assert r.json()["message"] == ("Kapa collection failed: Kapa sources page 1: cannot reach kapa.invalid:8443 "
                                   "(name not resolved); check this machine's network and kapa_api_url")
    assert not any("retry" in text for _level, text in h.logs), h.logs


def test_kapa_sources_refused_connection_is_retried_and_names_the_host(make_harness, fast, kapa_key):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    h = make_harness(PLUGIN, {**fast, "project_id": PROJECT, "kapa_token": kapa_key,
                              "kapa_api_url": f"http://127.0.0.1:{port}"})
    started = time.monotonic()
    r = h.request()
    assert time.monotonic() - started < 5
    assert (r.status, r.json()["message"]) == (
        502, f"Kapa collection failed: Kapa sources page 1: connection to 127.0.0.1:{port} failed; gave up after "
             "4 attempts")
    assert sum("retry" in text for _level, text in h.logs) == 3, h.logs


def test_unreachable_reason_is_the_same_in_every_plugin():
    """Each plugin is one self-contained file, so the offline check is copied: the copies must not drift."""
    pattern = re.compile(r"\ndef _unreachable_reason\(exc\):\n.*?\n    return None\n", re.S)
    copies = {name: pattern.search((ROOT / "plugins" / name).read_text(encoding="utf-8"))
              for name in ("github_prs.py", "kapa_sources.py", "docs_freshness.py")}
    assert all(copies.values()), copies
    assert len({found.group(0) for found in copies.values()}) == 1, "the copies of _unreachable_reason differ"
