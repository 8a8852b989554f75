"""Write validation in every plugin: a value the server would reject skips its row, never the whole write-back.

Queued plugin writes are flushed after the plugin returns and fail as a whole (processing reference §3), so the
plugins check each value first (the `_CheckedLine` block, one copy per self-contained plugin file).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from emulator.linebuilder import LINEBUILDER_SOURCE
from emulator.lineprotocol import parse_lines

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ("github_prs.py", "kapa_sources.py", "docs_freshness.py")
PROJECT = "proj-1"
_BLOCK_RE = re.compile(r"# -+ write validation\n.*?\ndef _write_checked.*?\n    return None\n", re.S)


def _block(plugin: str) -> str:
    found = _BLOCK_RE.search((ROOT / "plugins" / plugin).read_text(encoding="utf-8"))
    assert found, f"{plugin} has no write-validation block"
    return found.group(0)


def test_write_validation_block_is_the_same_in_every_plugin():
    blocks = {plugin: _block(plugin) for plugin in PLUGINS}
    assert len(set(blocks.values())) == 1, "the copies of the write-validation block differ"


@pytest.fixture(scope="module")
def validator():
    """The block, executed with the engine's LineBuilder, as the server runs a plugin."""
    namespace: dict = {}
    exec(LINEBUILDER_SOURCE, namespace)  # noqa: S102 (our own LineBuilder source, as the runtime runs it)
    exec(_block(PLUGINS[0]), namespace)  # noqa: S102
    return namespace


@pytest.mark.parametrize(("kind", "value", "problem"), [
    ("time", 2 ** 63, "outside 1677-09-21"),
    ("time", -(2 ** 63) - 1, "outside 1677-09-21"),
    ("int64", 2 ** 63, "outside the signed 64-bit range"),
    ("int64", True, "not an integer"),
    ("tag", "", "is empty"),
    ("tag", "a\nb", "control character"),
    ("tag", "a\tb", "control character"),
    ("tag", "nul\x00", "control character"),
    ("tag", "dir\\", "ends with a backslash"),
    ("tag", "x" * 65_537, "over the 64 KB limit"),
    ("tag", "\ud800", "lone surrogate"),
    ("string", "é" * 32_769, "over the 64 KB limit"),
    ("string", 5, "not a string"),
])
def test_write_validation_rejects_what_the_server_rejects(validator, kind, value, problem):
    assert problem in validator["_value_problem"](kind, "k", value)


@pytest.mark.parametrize(("kind", "value"), [
    ("time", 2 ** 63 - 1), ("time", -(2 ** 63)), ("int64", 0), ("tag", "with space, comma=and \\ inside"),
    ("tag", "ü" * 100), ("string", 'multi\nline "quoted" \\'), ("string", "x" * 65_536), ("string", ""),
])
def test_write_validation_accepts_what_the_server_stores(validator, kind, value):
    """Every value the check lets through parses back to itself in the server's line protocol."""
    assert validator["_value_problem"](kind, "k", value) is None
    line = validator["_CheckedLine"]("t")
    if kind == "tag":
        line.tag("k", value).int64_field("f", 1)
    elif kind == "string":
        line.string_field("k", value)
    elif kind == "int64":
        line.int64_field("k", value)
    else:
        line.int64_field("f", 1).time_ns(value)
    assert line.problems == []
    parsed, errors = parse_lines(line.build(), precision="ns", default_time_ns=0)
    assert errors == [] and len(parsed) == 1, errors
    row = parsed[0]
    got = {"tag": lambda: row.tags["k"], "string": lambda: row.fields["k"][1], "int64": lambda: row.fields["k"][1],
           "time": lambda: row.time_ns}[kind]()
    assert got == value


def test_write_validation_rejected_values_would_fail_the_whole_write(validator):
    """The other side: what the check refuses is what the server's parser refuses (so a whole batch fails)."""
    for key, value in (("tag", "dir\\"), ("tag", "a\tb"), ("tag", "")):
        text = validator["LineBuilder"]("t").tag("k", value).int64_field("f", 1).build()
        assert parse_lines(text, precision="ns", default_time_ns=0)[1], (key, value)
    text = validator["LineBuilder"]("t").int64_field("f", 1).time_ns(2 ** 63).build()
    assert parse_lines(text, precision="ns", default_time_ns=0)[1]


def _args(kapa, fast, key):
    return {"project_id": PROJECT, "kapa_api_url": kapa.url, "kapa_token": key, **fast}


def test_write_validation_kapa_out_of_range_times_skip_one_row_and_keep_the_rest(kapa, make_harness, fast,
                                                                                   kapa_key):
    good = datetime(2025, 3, 19, 12, 0, tzinfo=UTC)
    kapa.add_source(PROJECT, "Docs", source_id="good", ingested_at=good)
    future = kapa.add_source(PROJECT, "Far future", source_id="future", ingested_at=good, next_run_at=good)
    future["ingested_at"] = "9999-12-31T23:59:59Z"
    ancient = kapa.add_source(PROJECT, "Ancient", source_id="ancient", ingested_at=good, next_run_at=good)
    ancient["ingested_at"] = "1600-01-01T00:00:00Z"
    h = make_harness("kapa_sources.py", _args(kapa, fast, kapa_key))
    r = h.request()
    assert r.status == 200, r.body
    body = r.json()
    assert body["rows_written"] == 3 == len(r.writes)
    assert [(s["id"], s["event_type"], s["value"]) for s in body["skipped"]] == [
        ("future", "ingested_at", "9999-12-31T23:59:59Z"), ("ancient", "ingested_at", "1600-01-01T00:00:00Z")]
    assert all("outside 1677-09-21T00:12:43Z..2262-04-11T23:47:16Z" in s["reason"] for s in body["skipped"])
    stored = h.query("SELECT source_id, event_type FROM kapa_source ORDER BY source_id, event_type")
    assert [(s["source_id"], s["event_type"]) for s in stored] == [
        ("ancient", "next_run_at"), ("future", "next_run_at"), ("good", "ingested_at")]
    assert not [text for level, text in r.logs if level == "ERROR"], r.logs
    warnings = [text for level, text in r.logs if level == "WARN"]
    assert len(warnings) == 2 and "skipped one kapa_source row (source 'future' 'Far future'" in warnings[0]


def test_write_validation_kapa_bad_names_skip_their_rows(kapa, make_harness, fast, kapa_key):
    good = datetime(2025, 3, 19, 12, 0, tzinfo=UTC)
    kapa.add_source(PROJECT, "Docs", source_id="good", ingested_at=good)
    kapa.add_source(PROJECT, "C:\\docs\\", source_id="backslash", ingested_at=good)
    kapa.add_source(PROJECT, "bell\x07", source_id="control", ingested_at=good)
    h = make_harness("kapa_sources.py", _args(kapa, fast, kapa_key))
    body = h.request().json()
    assert (body["rows_written"], [s["id"] for s in body["skipped"]]) == (1, ["backslash", "control"])
    assert h.query("SELECT source_id FROM kapa_source") == [{"source_id": "good"}]


def test_write_validation_docs_freshness_skips_and_reports_rows_it_cannot_store(make_harness, fast, kapa, kapa_key,
                                                                                 now):
    """A Kapa source name the server rejects as a tag value (trailing backslash): no row, no alert post, no
    error; the skip is logged with the reason."""
    name = "Docs C:\\"
    kapa.add_source("p1", name, ingested_at=now - timedelta(days=3))
    h = make_harness("docs_freshness.py", {**fast, "project_id": "p1", "kapa_api_url": kapa.url,
                                           "kapa_token": kapa_key, "source_name": name})
    h.write_lp(f'gh,repo=influxdata/docs-v2,ref=master,pr_number=3 activity_type="pr_merge",lines=500i,'
               f'additions=500i,deletions=0i,author="a",title="t",url="u" {int(now.timestamp()) * 10**9}')
    r = h.scheduled()
    assert r.ok and r.writes == []
    warnings = [text for level, text in r.logs if level == "WARN"]
    assert sum("skipped one integration_status row" in t and "ends with a backslash" in t for t in warnings) == 1
    assert sum("skipped one documentation_alert row" in t for t in warnings) == 1
    assert not [text for level, text in h.logs if level == "ERROR"]
