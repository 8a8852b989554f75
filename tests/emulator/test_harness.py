"""PluginHarness: the in-process entry-point runner plugin unit tests use (docs/internals.md)."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from emulator.harness import HarnessError, PluginHarness

COUNTER_PLUGIN = """
    def _count(influxdb3_local):
        try:
            return influxdb3_local.query("SELECT count(*) AS n FROM hits")[0]["n"]
        except Exception:  # the table does not exist before the first write
            return 0

    def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
        influxdb3_local.write(LineBuilder("hits").tag("src", "request").int64_field("v", 1))
        return {"before": _count(influxdb3_local), "prefix": (args or {}).get("prefix")}

    def process_scheduled_call(influxdb3_local, call_time, args=None):
        influxdb3_local.write(LineBuilder("hits").tag("src", "schedule").int64_field("v", call_time.second)
                              .time_ns(int(call_time.timestamp()) * 1_000_000_000))

    def process_writes(influxdb3_local, table_batches, args=None):
        for batch in table_batches:
            influxdb3_local.info(batch["table_name"], len(batch["rows"]))
    """


@pytest.fixture
def harness(tmp_path: Path):
    path = tmp_path / "counter.py"
    path.write_text(textwrap.dedent(COUNTER_PLUGIN))
    with PluginHarness(path, database="aichat", args={"prefix": "p"}) as h:
        yield h


def test_harness_request_writes_are_applied_after_return(harness: PluginHarness) -> None:
    first = harness.request()
    assert (first.status, first.json()) == (200, {"before": 0, "prefix": "p"})
    assert first.writes == ["hits,src=request v=1i"]
    second = harness.request(method="GET")
    assert second.json()["before"] == 1
    assert harness.query("SELECT src, v FROM hits") == [{"src": "request", "v": 1}, {"src": "request", "v": 1}]


def test_harness_scheduled_and_writes_and_logs(harness: PluginHarness) -> None:
    r = harness.scheduled(datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC))
    assert r.error is None and r.status is None
    assert harness.query("SELECT src, v, time FROM hits") == [
        {"src": "schedule", "v": 9, "time": int(datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC).timestamp()) * 10**9}]
    w = harness.writes("cpu,host=a u=1i 1\nmem f=1.0 2\ncpu,host=b u=2i 3")
    assert [line for line in w.logs if line[1] in ("cpu 2", "mem 1")] == [("INFO", "cpu 2"), ("INFO", "mem 1")]
    assert harness.query("SELECT count(*) AS n FROM cpu") == [{"n": 2}]
    assert ("INFO", "starting execution of wal plugin.") in harness.logs
    assert harness.logs[0] == ("INFO", "starting execution with scheduled time 2026-05-06 07:08:09 UTC")


def test_harness_rejects_bad_seed_data(harness: PluginHarness) -> None:
    with pytest.raises(HarnessError):
        harness.write_lp("bad line without fields")


def test_harness_missing_plugin_file(tmp_path: Path) -> None:
    with pytest.raises(HarnessError):
        PluginHarness(tmp_path / "absent.py")
