"""A stuck plugin delays only its own trigger (issue 9 item 9), and where the server is fragile on purpose
the stand-in is too, with a warning naming the trigger.

Server facts (influxdata/influxdb ``influxdb3_processing_engine``): each request trigger has its own task fed
by a channel of ``PLUGIN_EVENT_BUFFER_SIZE`` (60) requests; a non-async trigger runs one call at a time on the
blocking pool; a sender waits while the channel is full and gives up when its client goes away (the future
is dropped); plugin calls are never interrupted; a WAL trigger's channel of 60 makes the WAL flush wait.
"""

from __future__ import annotations

import logging
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from emulator.api import Request
from emulator.engine import Engine
from emulator.processing.engine import REQUEST_QUEUE_SIZE, ProcessingEngine, TriggerRecord
from tests.emulator.test_processing_triggers import PLUGINS, body_for, create, logs_of, texts, wait_for
from tests.support import start_server

#: Blocks until the file named by the trigger argument ``release`` exists, logging each call.
GATED = """
    import os, time
    def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
        influxdb3_local.info("gated call")
        while not os.path.exists(args["release"]):
            time.sleep(0.02)
        return "released"
    def process_writes(influxdb3_local, table_batches, args=None):
        influxdb3_local.info("gated wal call")
        while not os.path.exists(args["release"]):
            time.sleep(0.02)
    """


def write_plugins(plugin_dir: Path) -> None:
    plugin_dir.mkdir()
    (plugin_dir / "gated.py").write_text(textwrap.dedent(GATED))
    (plugin_dir / "echo.py").write_text(textwrap.dedent(PLUGINS["echo.py"]))


def start_callers(url: str, n: int, timeout_s: float, out: list) -> list[threading.Thread]:
    def call() -> None:
        try:
            out.append(requests.get(url, timeout=timeout_s).status_code)
        except requests.RequestException:
            out.append("gave up")

    callers = [threading.Thread(target=call, daemon=True) for _ in range(n)]
    for caller in callers:
        caller.start()
    return callers


# ------------------------------------------------------------------------------------------ over HTTP
def test_processing_stuck_request_trigger_delays_only_itself_and_dropped_clients_never_run(tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugins"
    write_plugins(plugin_dir)
    release = tmp_path / "release"
    with start_server(tmp_path / "s", plugin_dir=plugin_dir) as server:
        server.session.post(f"{server.url}/api/v3/configure/database", json={"db": "iso"}, timeout=10)
        assert create(server, body_for("iso", "stuck", "request:stuck", plugin="gated.py",
                                       trigger_arguments={"release": str(release)})).status_code == 200
        assert create(server, body_for("iso", "echo", "request:echo")).status_code == 200
        outcomes: list = []
        # 70 calls: one runs, 60 wait in the trigger's queue, 9 wait for room; all clients give up after 3 s
        callers = start_callers(f"{server.url}/api/v3/engine/stuck", 70, 3.0, outcomes)
        wait_for(lambda: "gated call" in texts(logs_of(server, "iso", "stuck")))
        time.sleep(0.5)  # let every caller reach the server
        for _ in range(3):  # another request trigger answers at once, again and again
            started = time.monotonic()
            r = server.session.post(f"{server.url}/api/v3/engine/echo", params={"a": "1"}, timeout=5)
            assert r.status_code == 200 and r.json()["query"] == {"a": "1"}
            assert time.monotonic() - started < 1.0
        for caller in callers:
            caller.join(10)
        assert outcomes == ["gave up"] * 70
        time.sleep(0.5)  # the server notices the closed connections (it looks every 50 ms)
        release.write_text("go")
        # the running call and the 60 queued ones run (the server's channel keeps them); the 9 whose clients
        # left while waiting for room never do
        wait_for(lambda: sum(t.startswith("finished execution in")
                             for t in texts(logs_of(server, "iso", "stuck"))) == 1 + REQUEST_QUEUE_SIZE,
                 deadline_s=20)
        time.sleep(0.3)
        assert texts(logs_of(server, "iso", "stuck")).count("gated call") == 1 + REQUEST_QUEUE_SIZE
        r = server.session.get(f"{server.url}/api/v3/engine/stuck", timeout=5)
        assert (r.status_code, r.text) == (200, "released")


def test_processing_clean_stop_after_requests_logs_no_stuck_thread_warning(tmp_path: Path) -> None:
    """Idle HTTP and plugin pool workers end at shutdown: they are not reported as plugin calls still running."""
    plugin_dir = tmp_path / "plugins"
    write_plugins(plugin_dir)
    server = start_server(tmp_path / "s", plugin_dir=plugin_dir)
    try:
        server.session.post(f"{server.url}/api/v3/configure/database", json={"db": "iso"}, timeout=10)
        assert create(server, body_for("iso", "echo", "request:echo")).status_code == 200
        assert server.session.post(f"{server.url}/api/v3/engine/echo", timeout=10).status_code == 200
        assert server.session.post(f"{server.url}/api/v3/write_lp?db=iso", data="m v=1", timeout=10).ok
        assert server.session.get(f"{server.url}/api/v3/query_sql", params={"db": "iso", "q": "SELECT 1"},
                                  timeout=10).status_code == 200
    finally:
        code = server.stop()
    log = server.log_path.read_text()
    assert code == 0 and "stopped" in log, log
    assert "still running at shutdown" not in log, log


@pytest.mark.parametrize("runs_for_s, stuck", [(0.3, False), (30.0, True)])
def test_processing_exit_waits_briefly_for_ending_threads_and_names_stuck_ones(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, runs_for_s: float, stuck: bool) -> None:
    # a pool worker told to stop ends within moments (not stuck); a plugin call that keeps running is
    from emulator.http import server as http_server

    exits: list[int] = []
    monkeypatch.setattr(http_server.os, "_exit", exits.append)
    monkeypatch.setattr(http_server, "STUCK_THREAD_GRACE_S", 1.0, raising=False)
    done = threading.Event()
    worker = threading.Thread(target=done.wait, args=(runs_for_s,), name="plugin-demo_0")
    worker.start()
    try:
        with caplog.at_level(logging.WARNING, logger="emulator.server"):
            code = http_server._exit_past_stuck_threads(0)
    finally:
        done.set()
        worker.join()
    warnings = [r.getMessage() for r in caplog.records if "still running at shutdown" in r.getMessage()]
    if stuck:
        assert exits == [0]
        assert warnings == ["1 plugin thread(s) still running at shutdown (plugin-demo_0); exiting without "
                            "waiting for them"]
    else:
        assert (code, exits, warnings) == (0, [], [])


# ------------------------------------------------------------------------------------------ in process
@pytest.fixture
def pe(tmp_path: Path) -> Iterator[ProcessingEngine]:
    plugin_dir = tmp_path / "plugins"
    write_plugins(plugin_dir)
    engine = Engine(None, wal_flush_interval=0.01)
    engine.open()
    processing = ProcessingEngine(engine, plugin_dir, venv_dir=None, slow_call_warn_s=0.3)
    processing.venv_dir = None  # no venv for these in-process tests
    processing.start()
    engine.create_database("iso")
    yield processing
    (tmp_path / "release").write_text("go")
    processing.stop()
    engine.close()


def add_trigger(pe: ProcessingEngine, tmp_path: Path, name: str, spec: str) -> None:
    pe.create_trigger(TriggerRecord(database="iso", trigger_name=name, plugin_filename="gated.py",
                                    trigger_specification=spec, run_async=False, error_behavior="log",
                                    trigger_arguments={"release": str(tmp_path / "release")}, disabled=False))


def engine_get(path: str) -> Request:
    return Request(method="GET", path=f"/api/v3/engine/{path}", query={}, query_string="", headers={})


def test_processing_request_queue_holds_sixty_behind_the_running_call_and_warns(
    pe: ProcessingEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    add_trigger(pe, tmp_path, "stuck", "request:stuck")
    caplog.set_level(logging.WARNING, logger="emulator.processing")
    futures = [pe.submit_engine_request(engine_get("stuck")) for _ in range(1 + REQUEST_QUEUE_SIZE)]
    assert all(f is not None for f in futures)
    assert pe.submit_engine_request(engine_get("stuck")) is None  # full: the caller waits for room
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("request trigger stuck (database iso) has 60 requests waiting" in w for w in warnings)
    (tmp_path / "release").write_text("go")
    assert [f.result(10).body for f in futures] == [b"released"] * (1 + REQUEST_QUEUE_SIZE)
    assert pe.submit_engine_request(engine_get("stuck")) is not None


def test_processing_requests_waiting_on_a_stopped_trigger_answer_not_found(
    pe: ProcessingEngine, tmp_path: Path
) -> None:
    add_trigger(pe, tmp_path, "stuck", "request:stuck")
    running = pe.submit_engine_request(engine_get("stuck"))
    waiting = pe.submit_engine_request(engine_get("stuck"))
    assert running is not None and waiting is not None
    wait_for(lambda: "gated call" in [e.log_text for e in pe.logs.snapshot()])
    pe.set_disabled("iso", "stuck", True)
    response = waiting.result(5)
    assert (response.status, response.body) == (404, b'{error: "not found"}')


def test_processing_slow_plugin_call_is_logged_naming_its_trigger(
    pe: ProcessingEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    add_trigger(pe, tmp_path, "slow", "request:slow")
    caplog.set_level(logging.WARNING, logger="emulator.processing")
    fut = pe.submit_engine_request(engine_get("slow"))
    assert fut is not None
    wait_for(lambda: [r for r in caplog.records if "trigger slow (database iso) has been running one request "
                      "plugin call" in r.getMessage()], deadline_s=5)
    (tmp_path / "release").write_text("go")
    assert fut.result(5).body == b"released"


def test_processing_stuck_wal_trigger_blocks_writes_after_sixty_flushes_with_a_warning(
    pe: ProcessingEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    add_trigger(pe, tmp_path, "walstuck", "all_tables")
    caplog.set_level(logging.WARNING, logger="emulator.processing")
    engine = pe.engine
    done: list[int] = []

    def writer() -> None:  # one write per flush: 1 taken by the stuck plugin, 60 queued, then the flush waits
        for i in range(70):
            engine.write_lp("iso", f"m v={i}i {i}")
            done.append(i)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    wait_for(lambda: [r for r in caplog.records if "WAL trigger walstuck (database iso) has 60 flushes queued"
                      in r.getMessage()], deadline_s=10)
    count = len(done)
    time.sleep(0.3)
    assert len(done) == count < 70  # writes wait, as on the server
    (tmp_path / "release").write_text("go")
    thread.join(10)
    assert len(done) == 70
