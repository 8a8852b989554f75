"""Trigger API and trigger behaviour over HTTP (http reference §8-§10, processing reference §1-§6, §9).

Runs against a subprocess server with a temporary plugin dir (tests/support.py). Timing tests poll
``system.processing_engine_logs`` with a deadline; they never sleep for readiness.
"""

from __future__ import annotations

import json
import re
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.emulator.conftest import unique_name
from tests.support import ServerProcess, start_server

TRIGGER = "/api/v3/configure/processing_engine_trigger"

PLUGINS = {
    "echo.py": """
        def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
            return {"query": query_parameters, "headers": request_headers,
                    "body": request_body.decode(), "args": args}
        """,
    "tick.py": """
        def process_scheduled_call(influxdb3_local, call_time, args=None):
            influxdb3_local.info("tick", call_time.isoformat())
        """,
    "seen.py": """
        def process_writes(influxdb3_local, table_batches, args=None):
            for batch in table_batches:
                influxdb3_local.info("seen", batch["table_name"], len(batch["rows"]))
            if not table_batches:
                influxdb3_local.info("seen nothing")
        """,
    "flaky.py": """
        def process_writes(influxdb3_local, table_batches, args=None):
            n = influxdb3_local.cache.get("n", 0) + 1
            influxdb3_local.cache.put("n", n)
            if n < 3:
                raise RuntimeError(f"attempt {n}")
            influxdb3_local.info("succeeded on attempt", n)
        """,
    "boom.py": """
        def process_writes(influxdb3_local, table_batches, args=None):
            influxdb3_local.info("boom called")
            raise ValueError("kaboom")
        """,
    "hang.py": """
        import time
        def process_writes(influxdb3_local, table_batches, args=None):
            influxdb3_local.info("hanging")
            while True:
                time.sleep(0.05)
        """,
    "env.py": """
        import os, shutil, sys
        def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
            return {"VIRTUAL_ENV": os.environ.get("VIRTUAL_ENV"), "path0": os.environ["PATH"].split(os.pathsep)[0],
                    "PYTHONHOME": os.environ.get("PYTHONHOME"), "prefix": sys.prefix,
                    "exec_prefix": sys.exec_prefix, "python": shutil.which("python")}
        """,
    "garbage.py": """
        class Raw:
            def build(self):
                return "this is not line protocol"
        def process_writes(influxdb3_local, table_batches, args=None):
            influxdb3_local.write(Raw())
        """,
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("pe")
    plugin_dir = root / "plugins"
    plugin_dir.mkdir()
    for name, body in PLUGINS.items():
        (plugin_dir / name).write_text(textwrap.dedent(body))
    with start_server(root / "server", auth=True, plugin_dir=plugin_dir,
                      extra_args=["--virtual-env-location", str(root / "venv")]) as server:
        yield server


@pytest.fixture
def db(srv: ServerProcess) -> Iterator[str]:
    name = unique_name("pe")
    r = srv.session.post(f"{srv.url}/api/v3/configure/database", json={"db": name}, timeout=10)
    assert r.status_code == 200, r.text
    yield name
    for row in sql(srv, name, "SELECT trigger_name FROM system.processing_engine_triggers"):
        srv.session.delete(f"{srv.url}{TRIGGER}", params={"db": name, "trigger_name": row["trigger_name"],
                                                           "force": "true"}, timeout=10)
    srv.session.delete(f"{srv.url}/api/v3/configure/database", params={"db": name}, timeout=10)


def body_for(db: str, name: str, spec: Any, plugin: str = "echo.py", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "db": db,
        "plugin_filename": plugin,
        "trigger_name": name,
        "trigger_settings": {"run_async": False, "error_behavior": "log"},
        "trigger_specification": spec,
        "trigger_arguments": None,
        "disabled": False,
    }
    body.update(changes)
    return body


def create(srv: ServerProcess, body: dict[str, Any] | str) -> Any:
    data = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    return srv.session.post(f"{srv.url}{TRIGGER}", data=data, headers={"Content-Type": "application/json"},
                            timeout=10)


def sql(srv: ServerProcess, db: str, q: str) -> list[dict[str, Any]]:
    r = srv.session.get(f"{srv.url}/api/v3/query_sql", params={"db": db, "q": q, "format": "json"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def logs_of(srv: ServerProcess, db: str, trigger: str) -> list[dict[str, Any]]:
    return sql(srv, db, "SELECT event_time, log_level, log_text FROM system.processing_engine_logs "
                        f"WHERE trigger_name = '{trigger}' ORDER BY event_time")


def wait_for(check: Callable[[], Any], deadline_s: float = 10.0, interval_s: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy or the deadline passes (then fail)."""
    end = time.monotonic() + deadline_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"condition not met within {deadline_s}s; last value {value!r}")
        time.sleep(interval_s)


def texts(rows: list[dict[str, Any]]) -> list[str]:
    return [r["log_text"] for r in rows]


# ------------------------------------------------------------------------------------------ create: checks
def test_processing_trigger_seed_every_10s_is_accepted_and_listed(srv: ServerProcess, db: str) -> None:
    r = create(srv, body_for(db, "every10", "every:10s", plugin="tick.py",
                             trigger_arguments={"k": "v", "b": "x=y"}))
    assert (r.status_code, r.text) == (200, "")
    assert sql(srv, db, "SELECT * FROM system.processing_engine_triggers") == [{
        "disabled": False, "error_behavior": "log", "plugin_filename": "tick.py",
        "trigger_name": "every10", "trigger_specification": '{"every":{"duration":{"secs":10,"nanos":0}}}'}]
    args = sql(srv, db, "SELECT argument_key, argument_value FROM system.processing_engine_trigger_arguments "
                        "ORDER BY argument_key")
    assert args == [{"argument_key": "b", "argument_value": "x=y"}, {"argument_key": "k", "argument_value": "v"}]


@pytest.mark.parametrize("spec", [{"every": {"duration": {"secs": 10, "nanos": 0}}},
                                  {"schedule": [{"every": "10s"}]}])
def test_processing_trigger_object_spec_is_400(srv: ServerProcess, db: str, spec: Any) -> None:
    text = json.dumps(body_for(db, "obj", spec), separators=(",", ":"))
    column = text.index('"trigger_specification":') + len('"trigger_specification":')
    r = create(srv, text)
    assert r.status_code == 400
    assert r.text == f"serde json error: invalid type: map, expected a string at line 1 column {column}"


def test_processing_trigger_missing_field_is_400_with_position(srv: ServerProcess, db: str) -> None:
    body = body_for(db, "nosettings", "every:10s")
    del body["trigger_settings"]
    text = json.dumps(body, separators=(",", ":"))
    r = create(srv, text)
    assert (r.status_code, r.text) == (
        400, f"serde json error: missing field `trigger_settings` at line 1 column {len(text)}")


def test_processing_trigger_bad_error_behavior_is_400(srv: ServerProcess, db: str) -> None:
    text = json.dumps(body_for(db, "eb", "every:10s", trigger_settings={"run_async": False,
                                                                         "error_behavior": "Log"}),
                      separators=(",", ":"))
    column = text.index('"Log"') + len('"Log"')
    r = create(srv, text)
    assert (r.status_code, r.text) == (
        400, "serde json error: unknown variant `Log`, expected one of `log`, `retry`, `disable` "
             f"at line 1 column {column}")


def test_processing_trigger_five_field_cron_is_500(srv: ServerProcess, db: str) -> None:
    r = create(srv, body_for(db, "cron5", "cron:0 0 * * *", plugin="tick.py"))
    assert (r.status_code, r.text) == (500, "failed to parse trigger from cron:0 0 * * *")


def test_processing_trigger_unknown_database_is_404(srv: ServerProcess) -> None:
    r = create(srv, body_for("no_such_db_pe", "t", "every:10s", plugin="tick.py"))
    assert (r.status_code, r.text) == (404, "Database not found no_such_db_pe")


def test_processing_trigger_internal_db_is_500(srv: ServerProcess) -> None:
    r = create(srv, body_for("_internal", "t", "every:10s", plugin="tick.py"))
    assert (r.status_code, r.text) == (500, "cannot modify internal db")


def test_processing_trigger_plugin_errors_come_first(srv: ServerProcess, db: str) -> None:
    plugin_dir = srv.plugin_dir
    assert plugin_dir is not None
    r = create(srv, body_for("no_such_db_pe", "t", "bogus", plugin="absent.py"))
    assert (r.status_code, r.text) == (
        500, f"Plugin error: reading plugin file: Plugin not found: {plugin_dir}/absent.py")
    for bad in ("../etc/passwd", "/etc/passwd"):
        r = create(srv, body_for(db, "t", "every:10s", plugin=bad))
        assert (r.status_code, r.text) == (
            500, f"Plugin error: Path traversal detected: plugin filename '{bad}' attempts to access files "
                 "outside the plugin directory")
    # the spec is checked before the database
    r = create(srv, body_for("no_such_db_pe", "t", "every:", plugin="tick.py"))
    assert (r.status_code, r.text) == (500, "failed to parse trigger from every:: couldn't parse to duration")


def test_processing_trigger_duplicate_is_409(srv: ServerProcess, db: str) -> None:
    assert create(srv, body_for(db, "dup", "every:10s", plugin="tick.py")).status_code == 200
    r = create(srv, body_for(db, "dup", "every:20s", plugin="tick.py"))
    assert (r.status_code, r.text) == (409, "attempted to create a resource that already exists")


def test_processing_trigger_delete_rules(srv: ServerProcess, db: str) -> None:
    assert create(srv, body_for(db, "del", "every:10s", plugin="tick.py")).status_code == 200
    url = f"{srv.url}{TRIGGER}"
    r = srv.session.delete(url, params={"db": db, "trigger_name": "del"}, timeout=10)
    assert (r.status_code, r.text) == (500, "Cannot delete running plugin del. Disable it first or use --force.")
    r = srv.session.delete(url, params={"db": db, "trigger_name": "nope"}, timeout=10)
    assert (r.status_code, r.text) == (404, "the requested resource was not found: nope")
    r = srv.session.delete(url, json={"db": db, "trigger_name": "del", "force": True}, timeout=10)
    assert (r.status_code, r.text) == (200, "")
    assert sql(srv, db, "SELECT trigger_name FROM system.processing_engine_triggers") == []


def test_processing_trigger_enable_disable_from_query_only(srv: ServerProcess, db: str) -> None:
    assert create(srv, body_for(db, "tog", "request:tog_path")).status_code == 200
    base = f"{srv.url}{TRIGGER}"
    r = srv.session.post(f"{base}/disable", json={"db": db, "trigger_name": "tog"}, timeout=10)
    assert (r.status_code, r.text) == (400, "serde error: missing field `db`")
    for _ in range(2):  # idempotent
        r = srv.session.post(f"{base}/disable", params={"db": db, "trigger_name": "tog"}, timeout=10)
        assert (r.status_code, r.text) == (200, "")
    assert srv.session.get(f"{srv.url}/api/v3/engine/tog_path", timeout=10).status_code == 404
    assert sql(srv, db, "SELECT disabled FROM system.processing_engine_triggers") == [{"disabled": True}]
    # a disabled trigger may be deleted without force
    r = srv.session.post(f"{base}/enable", params={"db": db, "trigger_name": "tog"}, timeout=10)
    assert (r.status_code, r.text) == (200, "")
    assert srv.session.get(f"{srv.url}/api/v3/engine/tog_path", timeout=10).status_code == 200
    r = srv.session.post(f"{base}/enable", params={"db": db, "trigger_name": "zzz"}, timeout=10)
    assert (r.status_code, r.text) == (404, "the requested resource was not found: zzz")
    r = srv.session.post(f"{base}/enable", params={"db": "no_such_db_pe", "trigger_name": "tog"}, timeout=10)
    assert (r.status_code, r.text) == (404, "Database not found no_such_db_pe")


# ------------------------------------------------------------------------------------------ request triggers
def test_processing_trigger_request_round_trip(srv: ServerProcess, db: str) -> None:
    assert create(srv, body_for(db, "echo", "request:echo/deep", trigger_arguments={"a": "1"})).status_code == 200
    r = srv.session.post(f"{srv.url}/api/v3/engine/echo/deep?x=1&x=2&y=a+b", data=b"payload",
                         headers={"X-Custom": "Yes", "Content-Type": "text/plain"}, timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert body["query"] == {"x": "2", "y": "a b"}
    assert body["body"] == "payload" and body["args"] == {"a": "1"}
    assert body["headers"]["x-custom"] == "Yes"
    assert "authorization" not in body["headers"]
    assert all(name == name.lower() for name in body["headers"])
    got = srv.session.get(f"{srv.url}/api/v3/engine/echo/deep", timeout=10)
    assert got.status_code == 200 and got.json()["body"] == ""
    missing = srv.session.get(f"{srv.url}/api/v3/engine/echo", timeout=10)
    assert (missing.status_code, missing.content) == (404, b'{error: "not found"}')
    put = srv.session.put(f"{srv.url}/api/v3/engine/echo/deep", timeout=10)
    assert (put.status_code, put.text) == (404, "Not found")
    anonymous = requests.post(f"{srv.url}/api/v3/engine/echo/deep", timeout=10)
    assert anonymous.status_code == 401


# ------------------------------------------------------------------------------------------ WAL triggers
def test_processing_trigger_table_trigger_sees_rows_of_its_table(srv: ServerProcess, db: str) -> None:
    assert create(srv, body_for(db, "seen_cpu", "table:cpu", plugin="seen.py")).status_code == 200
    assert create(srv, body_for(db, "seen_all", "all_tables", plugin="seen.py")).status_code == 200
    r = srv.session.post(f"{srv.url}/api/v3/write_lp", params={"db": db},
                         data="cpu,host=a u=1i 1\ncpu,host=b u=2i 2\nmem f=1.0 3", timeout=10)
    assert r.status_code == 204
    cpu = wait_for(lambda: [t for t in texts(logs_of(srv, db, "seen_cpu")) if t.startswith("seen")])
    assert cpu == ["seen cpu 2"]
    every = wait_for(lambda: [t for t in texts(logs_of(srv, db, "seen_all")) if t.startswith("seen")])
    assert sorted(every) == ["seen cpu 2", "seen mem 1"]
    # a flush without cpu rows still calls the table trigger, with no batches (reference §5, inferred)
    srv.session.post(f"{srv.url}/api/v3/write_lp", params={"db": db}, data="mem f=2.0 4", timeout=10)
    assert wait_for(lambda: "seen nothing" in texts(logs_of(srv, db, "seen_cpu")))


def test_processing_trigger_retry_reruns_until_success(srv: ServerProcess, db: str) -> None:
    settings = {"run_async": False, "error_behavior": "retry"}
    assert create(srv, body_for(db, "flaky", "table:f", plugin="flaky.py",
                                trigger_settings=settings)).status_code == 200
    srv.session.post(f"{srv.url}/api/v3/write_lp", params={"db": db}, data="f v=1i 1", timeout=10)
    wait_for(lambda: "succeeded on attempt 3" in texts(logs_of(srv, db, "flaky")))
    errors = [r["log_text"] for r in logs_of(srv, db, "flaky") if r["log_level"] == "ERROR"]
    assert errors == ["error executing wal plugin: RuntimeError: attempt 1",
                      "error executing wal plugin: RuntimeError: attempt 2"]


def test_processing_trigger_disable_behaviour_stops_the_task(srv: ServerProcess, db: str) -> None:
    settings = {"run_async": False, "error_behavior": "disable"}
    assert create(srv, body_for(db, "boom", "table:b", plugin="boom.py",
                                trigger_settings=settings)).status_code == 200
    srv.session.post(f"{srv.url}/api/v3/write_lp", params={"db": db}, data="b v=1i 1", timeout=10)
    wait_for(lambda: "boom called" in texts(logs_of(srv, db, "boom")))
    srv.session.post(f"{srv.url}/api/v3/write_lp", params={"db": db}, data="b v=2i 2", timeout=10)
    srv.session.post(f"{srv.url}/api/v3/write_lp", params={"db": db}, data="other v=2i 2", timeout=10)
    rows = logs_of(srv, db, "boom")
    assert texts(rows).count("boom called") == 1
    assert [r for r in rows if r["log_level"] == "ERROR"] == []  # server log only (reference §6)
    assert sql(srv, db, "SELECT disabled FROM system.processing_engine_triggers") == [{"disabled": False}]


def test_processing_trigger_failures_leave_the_server_serving(srv: ServerProcess, db: str) -> None:
    assert create(srv, body_for(db, "hang", "table:h", plugin="hang.py")).status_code == 200
    assert create(srv, body_for(db, "boom_log", "table:b", plugin="boom.py")).status_code == 200
    assert create(srv, body_for(db, "garbage", "table:g", plugin="garbage.py")).status_code == 200
    assert create(srv, body_for(db, "ok", "table:ok", plugin="seen.py")).status_code == 200
    for table in ("h", "b", "g"):
        r = srv.session.post(f"{srv.url}/api/v3/write_lp", params={"db": db}, data=f"{table} v=1i 1", timeout=10)
        assert r.status_code == 204
    wait_for(lambda: "hanging" in texts(logs_of(srv, db, "hang")))
    started = time.monotonic()
    r = srv.session.post(f"{srv.url}/api/v3/write_lp", params={"db": db}, data="ok v=1i 1", timeout=10)
    assert r.status_code == 204 and time.monotonic() - started < 2.0
    assert wait_for(lambda: "seen ok 1" in texts(logs_of(srv, db, "ok")))
    assert sql(srv, db, "SELECT v FROM ok") == [{"v": 1}]
    assert "error executing wal plugin: ValueError: kaboom" in texts(logs_of(srv, db, "boom_log"))
    garbage = wait_for(lambda: [t for t in texts(logs_of(srv, db, "garbage"))
                                if t.startswith(f"error running wal plugin: error writing back lines to {db}: ")])
    assert len(garbage) >= 1
    srv.session.post(f"{srv.url}{TRIGGER}/disable", params={"db": db, "trigger_name": "hang"}, timeout=10)


# ------------------------------------------------------------------------------------------ schedules
def test_processing_trigger_every_fires_at_aligned_times(srv: ServerProcess, db: str) -> None:
    created = time.time()
    assert create(srv, body_for(db, "tick2", "every:2s", plugin="tick.py")).status_code == 200

    def starts() -> list[str]:
        return [t for t in texts(logs_of(srv, db, "tick2")) if t.startswith("starting execution with ")]

    first_two = wait_for(lambda: starts()[:2] if len(starts()) >= 2 else None, deadline_s=8)
    times = []
    for text in first_two:
        m = re.fullmatch(r"starting execution with scheduled time (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", text)
        assert m, text
        times.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp())
    assert [int(t) % 2 for t in times] == [0, 0]
    assert times[1] - times[0] == 2
    assert times[0] > created  # no immediate first run


# ------------------------------------------------------------------------------------------ dry runs
def test_processing_trigger_dry_run_wal_captures_writes(srv: ServerProcess, db: str) -> None:
    plugin_dir = srv.plugin_dir
    assert plugin_dir is not None
    (plugin_dir / "dry.py").write_text(textwrap.dedent("""
        def process_writes(influxdb3_local, table_batches, args=None):
            influxdb3_local.info("rows", sum(len(b["rows"]) for b in table_batches), args)
            influxdb3_local.write(LineBuilder("dry_out").int64_field("n", 1))
            influxdb3_local.write_sync(LineBuilder("dry_sync").int64_field("n", 2), False)
            influxdb3_local.warn("cached", influxdb3_local.cache.get("x", "none"))
            influxdb3_local.cache.put("x", "set")
        """))
    payload = {"filename": "dry.py", "database": db, "input_lp": "cpu v=1i\nmem v=2i",
               "input_arguments": {"k": "v"}}
    r = srv.session.post(f"{srv.url}/api/v3/plugin_test/wal", json=payload, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["errors"] == []
    assert body["database_writes"] == {db: ["dry_sync n=2i", "dry_out n=1i"]}
    assert body["log_lines"][0] == "INFO: starting execution of wal plugin."
    assert body["log_lines"][1:3] == ["INFO: rows 2 {'k': 'v'}", "WARN: cached none"]
    again = srv.session.post(f"{srv.url}/api/v3/plugin_test/wal", json=payload, timeout=10).json()
    assert again["log_lines"][2] == "WARN: cached set"
    r = srv.session.get(f"{srv.url}/api/v3/query_sql", params={"db": db, "q": "SELECT * FROM dry_out"}, timeout=10)
    assert r.status_code == 400  # writes were captured, not applied


def test_processing_trigger_dry_run_schedule_and_errors(srv: ServerProcess, db: str) -> None:
    r = srv.session.post(f"{srv.url}/api/v3/plugin_test/schedule",
                         json={"filename": "tick.py", "database": db, "schedule": "0 0 8 * * *"}, timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT08:00:00Z", body["trigger_time"])
    assert body["errors"] == [] and body["database_writes"] == {}
    assert body["log_lines"][0].startswith("INFO: starting execution with scheduled time ")
    r = srv.session.post(f"{srv.url}/api/v3/plugin_test/schedule",
                         json={"filename": "tick.py", "database": "no_such_db_pe"}, timeout=10)
    assert r.status_code == 200 and r.json()["errors"] == ["couldn't find db"]
    r = srv.session.post(f"{srv.url}/api/v3/plugin_test/wal",
                         json={"filename": "boom.py", "database": db, "input_lp": "b v=1i"}, timeout=10)
    assert r.json() == {"log_lines": [], "database_writes": {}, "errors": ["error executing plugin: ValueError: kaboom"]}
    r = srv.session.post(f"{srv.url}/api/v3/plugin_test/wal",
                         json={"filename": "absent.py", "database": db, "input_lp": "b v=1i"}, timeout=10)
    assert r.status_code == 500


# ------------------------------------------------------------------------------------------ plugin files, pip
def test_processing_trigger_plugin_files_upload_and_replace(srv: ServerProcess, db: str) -> None:
    r = srv.session.post(f"{srv.url}/api/v3/plugins/files", params={"db": db},
                         json={"plugin_name": "uploaded/up.py",
                               "content": "def process_request(a, b, c, d, e=None):\n    return 'v1'\n"},
                         timeout=10)
    assert (r.status_code, r.text) == (200, "")
    assert create(srv, body_for(db, "up", "request:up", plugin="uploaded/up.py")).status_code == 200
    assert srv.session.get(f"{srv.url}/api/v3/engine/up", timeout=10).text == "v1"
    r = srv.session.put(f"{srv.url}/api/v3/plugins/files",
                        json={"plugin_name": "up", "content": "def process_request(a, b, c, d, e=None):\n"
                                                              "    return 'v2'\n"}, timeout=10)
    assert (r.status_code, r.text) == (200, "")
    assert wait_for(lambda: srv.session.get(f"{srv.url}/api/v3/engine/up", timeout=10).text == "v2")
    r = srv.session.put(f"{srv.url}/api/v3/plugins/files", json={"plugin_name": "nope", "content": ""},
                        timeout=10)
    assert (r.status_code, r.text) == (500, "Processing engine error: plugin error: Plugin not found: nope")


def test_processing_trigger_plugin_runs_in_the_activated_venv(srv: ServerProcess, db: str) -> None:
    """influxdb3_processing_engine virtualenv.rs: the server sources the venv's activate script into its own
    environment and sets sys.prefix/exec_prefix to the venv (here --virtual-env-location)."""
    assert create(srv, body_for(db, "env", "request:env", plugin="env.py")).status_code == 200
    venv = str(srv.data_dir.parent.parent / "venv")
    got = srv.session.get(f"{srv.url}/api/v3/engine/env", timeout=10).json()
    assert got == {"VIRTUAL_ENV": venv, "path0": f"{venv}/bin", "PYTHONHOME": None, "prefix": venv,
                   "exec_prefix": venv, "python": f"{venv}/bin/python"}


def test_processing_trigger_default_venv_is_the_plugin_dirs(tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "env.py").write_text(textwrap.dedent(PLUGINS["env.py"]))
    with start_server(tmp_path / "s", plugin_dir=plugin_dir, env={"PYTHONHOME": ""}) as server:
        server.session.post(f"{server.url}/api/v3/configure/database", json={"db": "v"}, timeout=10)
        assert create(server, body_for("v", "env", "request:env", plugin="env.py")).status_code == 200
        got = server.session.get(f"{server.url}/api/v3/engine/env", timeout=10).json()
    venv = str(plugin_dir / ".venv")
    assert (got["VIRTUAL_ENV"], got["path0"], got["PYTHONHOME"]) == (venv, f"{venv}/bin", None)


def test_processing_trigger_plugin_files_table_only_in_internal(srv: ServerProcess, db: str) -> None:
    """influxdb3_system_tables AllSystemSchemaTablesProvider::new registers plugin_files for _internal only."""
    assert create(srv, body_for(db, "pf", "request:pf", plugin="echo.py")).status_code == 200
    r = srv.session.get(f"{srv.url}/api/v3/query_sql", timeout=10,
                        params={"db": db, "q": "SELECT * FROM system.plugin_files", "format": "json"})
    assert r.status_code == 400
    assert "table 'public.system.plugin_files' not found" in r.text
    r = srv.session.get(f"{srv.url}/api/v3/query_sql", timeout=10,
                        params={"db": db, "q": "SHOW TABLES", "format": "json"})
    assert "plugin_files" not in {row["table_name"] for row in r.json()}
    rows = sql(srv, "_internal", "SELECT plugin_name, file_name, size_bytes FROM system.plugin_files "
                                 "WHERE plugin_name = 'pf'")
    size = len(textwrap.dedent(PLUGINS["echo.py"]).encode())
    assert rows == [{"plugin_name": "pf", "file_name": "echo.py", "size_bytes": size}]
    r = srv.session.get(f"{srv.url}/api/v3/query_sql", timeout=10,
                        params={"db": "_internal", "q": "SHOW TABLES", "format": "json"})
    assert "plugin_files" in {row["table_name"] for row in r.json()}


def test_processing_trigger_pip_failure_is_500_with_pip_text(srv: ServerProcess) -> None:
    r = srv.session.post(f"{srv.url}/api/v3/configure/plugin_environment/install_packages",
                         json={"packages": ["/nonexistent/pe-test-package"]}, timeout=120)
    assert r.status_code == 500
    assert r.text.startswith("Processing engine error: error installing python packages: ")
    assert "pe-test-package" in r.text
    r = srv.session.post(f"{srv.url}/api/v3/configure/plugin_environment/install_packages",
                         json={"packages": "notalist"}, timeout=10)
    assert r.status_code == 400
    assert r.text.startswith('serde json error: invalid type: string "notalist", expected a sequence')


def test_processing_trigger_without_plugin_dir(tmp_path: Path) -> None:
    with start_server(tmp_path) as bare:
        bare.session.post(f"{bare.url}/api/v3/configure/database", json={"db": "x"}, timeout=10)
        r = create(bare, body_for("x", "t", "every:10s", plugin="tick.py"))
        assert (r.status_code, r.text) == (500, "Plugin error: Node not configured with plugin directory")
        r = bare.session.post(f"{bare.url}/api/v3/configure/plugin_environment/install_packages",
                              json={"packages": ["x"]}, timeout=10)
        assert (r.status_code, r.text) == (500, "Processing engine error: error installing python packages: "
                                                "Plugin environment management is disabled")


def test_processing_trigger_restart_keeps_triggers(tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "echo.py").write_text(textwrap.dedent(PLUGINS["echo.py"]))
    with start_server(tmp_path / "s", plugin_dir=plugin_dir) as server:
        server.session.post(f"{server.url}/api/v3/configure/database", json={"db": "keep"}, timeout=10)
        assert create(server, body_for("keep", "kept", "request:kept")).status_code == 200
        assert create(server, body_for("keep", "off", "request:off", disabled=True)).status_code == 200
        server.restart()
        assert server.session.get(f"{server.url}/api/v3/engine/kept", timeout=10).status_code == 200
        assert server.session.get(f"{server.url}/api/v3/engine/off", timeout=10).status_code == 404
        rows = sql(server, "keep", "SELECT trigger_name, disabled FROM system.processing_engine_triggers "
                                   "ORDER BY trigger_name")
        assert rows == [{"trigger_name": "kept", "disabled": False}, {"trigger_name": "off", "disabled": True}]


@pytest.mark.long_running
def test_processing_trigger_table_trigger_latency_at_default_flush(tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "seen.py").write_text(textwrap.dedent(PLUGINS["seen.py"]))
    with start_server(tmp_path / "s", plugin_dir=plugin_dir, wal_flush_interval="1s") as server:
        server.session.post(f"{server.url}/api/v3/configure/database", json={"db": "lat"}, timeout=10)
        assert create(server, body_for("lat", "lat", "table:cpu", plugin="seen.py")).status_code == 200
        r = server.session.post(f"{server.url}/api/v3/write_lp", params={"db": "lat"}, data="cpu v=1i", timeout=10)
        acked = time.time()
        assert r.status_code == 204
        rows = wait_for(lambda: [x for x in logs_of(server, "lat", "lat") if x["log_text"] == "seen cpu 1"],
                        deadline_s=5)
        ran_at = datetime.fromisoformat(rows[0]["event_time"]).replace(tzinfo=UTC).timestamp()
        assert ran_at - acked < 1.5


def test_processing_trigger_cpu_bound_plugin_leaves_the_server_serving(tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "spin.py").write_text(textwrap.dedent("""
        def process_writes(influxdb3_local, table_batches, args=None):
            influxdb3_local.info("spinning")
            while True:
                pass
        """))
    (plugin_dir / "echo.py").write_text(textwrap.dedent(PLUGINS["echo.py"]))
    with start_server(tmp_path / "s", plugin_dir=plugin_dir) as server:
        server.session.post(f"{server.url}/api/v3/configure/database", json={"db": "spin"}, timeout=10)
        assert create(server, body_for("spin", "spin", "table:s", plugin="spin.py")).status_code == 200
        assert create(server, body_for("spin", "echo", "request:echo")).status_code == 200
        server.session.post(f"{server.url}/api/v3/write_lp", params={"db": "spin"}, data="s v=1i 1", timeout=10)
        wait_for(lambda: "spinning" in texts(logs_of(server, "spin", "spin")))
        for i in range(3):
            started = time.monotonic()
            r = server.session.post(f"{server.url}/api/v3/write_lp", params={"db": "spin"}, data=f"x v={i}i {i}",
                                    timeout=10)
            assert r.status_code == 204 and time.monotonic() - started < 1.0
        assert sql(server, "spin", "SELECT count(*) AS n FROM x") == [{"n": 3}]
        assert server.session.post(f"{server.url}/api/v3/engine/echo", timeout=10).status_code == 200


def test_processing_trigger_directory_plugin_and_directory_upload(srv: ServerProcess, db: str) -> None:
    plugin_dir = srv.plugin_dir
    assert plugin_dir is not None
    pkg = plugin_dir / "pe_dir_plugin"
    pkg.mkdir()
    (pkg / "helper.py").write_text("ANSWER = 'from sibling'\n")
    (pkg / "__init__.py").write_text("from .helper import ANSWER\n"
                                     "def process_request(influxdb3_local, q, h, b, args=None):\n"
                                     "    return ANSWER\n")
    assert create(srv, body_for(db, "pkg", "request:pkg", plugin="pe_dir_plugin")).status_code == 200
    assert srv.session.get(f"{srv.url}/api/v3/engine/pkg", timeout=10).text == "from sibling"
    (plugin_dir / "not_a_pkg").mkdir()
    r = create(srv, body_for(db, "nopkg", "request:nopkg", plugin="not_a_pkg"))
    assert (r.status_code, r.text) == (500, "Plugin error: Multi-file plugin directory must contain __init__.py")
    files = [{"relative_path": "__init__.py", "content": "X = 1\n"}, {"relative_path": "sub/more.py", "content": ""}]
    r = srv.session.put(f"{srv.url}/api/v3/plugins/directory", json={"plugin_name": "pkg", "files": files},
                        timeout=10)
    assert (r.status_code, r.text) == (200, "")
    assert sorted(p.relative_to(pkg).as_posix() for p in pkg.rglob("*.py")) == ["__init__.py", "sub/more.py"]


# ------------------------------------------------------------------------------------------ shutdown
def start_with_stuck_request_trigger(tmp_path: Path, db: str, sleep_s: int) -> ServerProcess:
    """A server of its own whose request trigger `stuck` logs "stuck" and then sleeps ``sleep_s``; ``db`` holds
    one row `m v=1i 1`. The caller stops the server."""
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "stuck.py").write_text(textwrap.dedent(f"""
        import time
        def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
            influxdb3_local.info("stuck")
            time.sleep({sleep_s})
        """))
    server = start_server(tmp_path / "srv", plugin_dir=plugin_dir)
    try:
        assert server.session.post(f"{server.url}/api/v3/write_lp", params={"db": db}, data="m v=1i 1",
                                   timeout=10).status_code == 204
        assert create(server, body_for(db, "stuck", "request:stuck", plugin="stuck.py")).status_code == 200
    except BaseException:
        server.stop()
        raise
    return server


def test_processing_sigterm_with_a_plugin_stuck_in_a_request_stops_promptly_and_keeps_writes(
    tmp_path: Path,
) -> None:
    db = "stuckdb"
    server = start_with_stuck_request_trigger(tmp_path, db, sleep_s=300)
    try:
        outcome: list[str] = []

        def call_stuck() -> None:  # the server goes away under this request: that is the point
            try:
                requests.get(f"{server.url}/api/v3/engine/stuck", timeout=30)
                outcome.append("answered")
            except requests.ConnectionError:
                outcome.append("connection closed")

        pending = threading.Thread(target=call_stuck, daemon=True)
        pending.start()
        wait_for(lambda: "stuck" in texts(logs_of(server, db, "stuck")))
        started = time.monotonic()
        code = server.stop()
        assert code == 0 and time.monotonic() - started < 8.0  # bounded grace, not the plugin's 300 s
        pending.join(5)
        assert outcome == ["connection closed"]
        server.start()
        assert sql(server, db, "SELECT v FROM m") == [{"v": 1}]
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------ review: robustness
def test_processing_sys_exit_in_plugins_is_a_logged_failure_not_a_dead_task(tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "quit.py").write_text(textwrap.dedent("""
        import sys
        def process_writes(influxdb3_local, table_batches, args=None):
            influxdb3_local.info("quit called")
            sys.exit(1)
        def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
            sys.exit(1)
        """))
    with start_server(tmp_path / "s", plugin_dir=plugin_dir) as server:
        server.session.post(f"{server.url}/api/v3/configure/database", json={"db": "q"}, timeout=10)
        assert create(server, body_for("q", "wal", "table:q", plugin="quit.py")).status_code == 200
        assert create(server, body_for("q", "req", "request:quit", plugin="quit.py")).status_code == 200
        r = server.session.post(f"{server.url}/api/v3/engine/quit", timeout=10)
        assert (r.status_code, r.json()) == (500, {"error": "Python function call failed: SystemExit: 1"})
        for i in range(2):  # the worker survives the first failure and runs the second event
            r = server.session.post(f"{server.url}/api/v3/write_lp", params={"db": "q"}, data=f"q v={i}i {i}",
                                    timeout=10)
            assert r.status_code == 204
            wait_for(lambda n=i + 1: texts(logs_of(server, "q", "wal")).count("quit called") == n)
        assert texts(logs_of(server, "q", "wal")).count("error executing wal plugin: SystemExit: 1") == 2
        assert server.session.get(f"{server.url}/api/v3/engine/quit", timeout=10).status_code == 500


def test_processing_requests_waiting_on_a_stuck_trigger_end_when_it_is_disabled(tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "stuck.py").write_text(textwrap.dedent("""
        import time
        def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
            influxdb3_local.info("stuck")
            time.sleep(60)
        """))
    with start_server(tmp_path / "s", plugin_dir=plugin_dir) as server:
        server.session.post(f"{server.url}/api/v3/configure/database", json={"db": "w"}, timeout=10)
        assert create(server, body_for("w", "stuck", "request:stuck", plugin="stuck.py")).status_code == 200
        answers: list[Any] = []

        def call() -> None:
            try:
                r = requests.get(f"{server.url}/api/v3/engine/stuck", timeout=15)
                answers.append((r.status_code, r.content))
            except requests.RequestException as exc:
                answers.append(type(exc).__name__)

        first = threading.Thread(target=call, daemon=True)
        first.start()
        wait_for(lambda: "stuck" in texts(logs_of(server, "w", "stuck")))
        waiting = threading.Thread(target=call, daemon=True)  # queued behind the stuck call (run_async false)
        waiting.start()
        time.sleep(0.3)
        assert waiting.is_alive()
        r = server.session.post(f"{server.url}{TRIGGER}/disable", params={"db": "w", "trigger_name": "stuck"},
                                timeout=10)
        assert r.status_code == 200
        waiting.join(5)
        assert not waiting.is_alive()  # the stopped trigger no longer holds a server thread for it
        assert answers == [(404, b'{error: "not found"}')]
        assert texts(logs_of(server, "w", "stuck")).count("stuck") == 1


def test_processing_requests_piled_on_a_stuck_trigger_leave_the_api_serving(tmp_path: Path) -> None:
    db = "piled"
    server = start_with_stuck_request_trigger(tmp_path, db, sleep_s=60)
    try:
        statuses: list[int] = []

        def call() -> None:
            try:
                statuses.append(requests.get(f"{server.url}/api/v3/engine/stuck", timeout=30).status_code)
            except requests.RequestException:
                statuses.append(-1)

        callers = [threading.Thread(target=call, daemon=True) for _ in range(70)]  # more than a pool's threads
        for caller in callers:
            caller.start()
        wait_for(lambda: "starting execution of request plugin." in texts(logs_of(server, db, "stuck")))
        started = time.monotonic()
        assert server.session.post(f"{server.url}/api/v3/write_lp", params={"db": db}, data="m v=2i 2",
                                   timeout=10).status_code == 204
        assert sql(server, db, "SELECT v FROM m ORDER BY time") == [{"v": 1}, {"v": 2}]
        r = server.session.post(f"{server.url}{TRIGGER}/disable", params={"db": db, "trigger_name": "stuck"},
                                timeout=10)
        assert r.status_code == 200 and time.monotonic() - started < 5.0
    finally:
        server.stop()


def test_processing_trigger_dry_run_reports_rejected_writes_as_the_server(srv: ServerProcess, db: str) -> None:
    # influxdb3_processing_engine plugins.rs DryRunWriteHandler: per database, the first line a write with
    # accept_partial=false rejects, as the WriteLineError's Debug (full line, Rust string escapes)
    plugin_dir = srv.plugin_dir
    assert plugin_dir is not None
    assert srv.session.post(f"{srv.url}/api/v3/write_lp", params={"db": db}, data="typed v=1i 1").status_code == 204
    (plugin_dir / "dry_bad.py").write_text(textwrap.dedent("""
        def process_writes(influxdb3_local, table_batches, args=None):
            influxdb3_local.write(LineBuilder("typed").string_field("v", 'say "hi"'))
            influxdb3_local.write(LineBuilder("fine").int64_field("n", 1))
        """))
    r = srv.session.post(f"{srv.url}/api/v3/plugin_test/wal", timeout=10,
                         json={"filename": "dry_bad.py", "database": db, "input_lp": "in v=1i"})
    assert r.status_code == 200, r.text
    # original_line is the server's rendering `typed v=say \"hi\"`, then Debug-escaped once more
    assert r.json()["errors"] == [
        f'line protocol parse error on write to db {db}: WriteLineError {{ original_line: "typed v=say \\\\\\"hi\\\\\\"", '
        "line_number: 1, error_message: \"invalid column type for column 'v', expected "
        'iox::column_type::field::integer, got iox::column_type::field::string" }']
    r = srv.session.get(f"{srv.url}/api/v3/query_sql", params={"db": db, "q": "SELECT * FROM fine"}, timeout=10)
    assert r.status_code == 400  # nothing was written, no table created
