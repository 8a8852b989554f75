"""Plugin runtime behaviour, in-process (processing reference §1-§4, §7): influxdb3_local, LineBuilder,
the Flask-style response rules, loading rules, the cache."""

from __future__ import annotations

import json
import os
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from emulator.harness import PluginHarness
from emulator.processing.runtime import (
    MISSING_FUNCTION_TEXT,
    CacheStore,
    format_chrono_utc,
)
from emulator.processing.specs import format_duration

EXPECTED_LOCAL_NAMES = ["cache", "error", "info", "query", "warn", "write", "write_sync", "write_sync_to_db",
                        "write_to_db"]


def plugin(tmp_path: Path, body: str, name: str = "plugin.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture
def make(tmp_path: Path) -> Iterator:
    made: list[PluginHarness] = []

    def _make(body: str, args: dict[str, str] | None = None, name: str = "plugin.py") -> PluginHarness:
        h = PluginHarness(plugin(tmp_path, body, name), args=args)
        made.append(h)
        return h

    yield _make
    for h in made:
        h.close()


def request_returning(expr: str) -> str:
    return f"""
        def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
            return {expr}
        """


# ------------------------------------------------------------------------------------------ influxdb3_local
def test_processing_runtime_local_has_exactly_the_server_names(make) -> None:
    h = make(request_returning("sorted(n for n in dir(influxdb3_local) if not n.startswith('__'))"))
    assert h.request().json() == EXPECTED_LOCAL_NAMES


def test_processing_runtime_cache_object_has_only_put_get_delete(make) -> None:
    h = make(request_returning("sorted(n for n in dir(influxdb3_local.cache) if not n.startswith('__'))"))
    assert h.request().json() == ["delete", "get", "put"]


def test_processing_runtime_log_args_are_str_joined_and_kwargs_rejected(make) -> None:
    h = make("""
        def process_request(influxdb3_local, q, h, b, args=None):
            influxdb3_local.info("a", 1, None, [2])
            influxdb3_local.warn("w")
            influxdb3_local.error("e", 1.5)
            try:
                influxdb3_local.info("x", sep="-")
            except TypeError:
                return "kwargs rejected"
            return "kwargs accepted"
        """)
    r = h.request()
    assert r.text == "kwargs rejected"
    assert r.logs[0] == ("INFO", "starting execution of request plugin.")
    assert r.logs[1:4] == [("INFO", "a 1 None [2]"), ("WARN", "w"), ("ERROR", "e 1.5")]
    assert r.logs[4][0] == "INFO" and r.logs[4][1].startswith("finished execution in ")


def test_processing_runtime_query_converts_types_and_requires_str_params(make) -> None:
    h = make("""
        def process_request(influxdb3_local, q, h, b, args=None):
            rows = influxdb3_local.query("SELECT host, v, s, ok, time FROM cpu WHERE host = $h", {"h": "a"})
            try:
                influxdb3_local.query("SELECT 1", {"h": 1})
                typed = "accepted"
            except TypeError:
                typed = "TypeError"
            return {"rows": rows, "typed": typed, "types": [type(v).__name__ for v in rows[0].values()]}
        """)
    h.write_lp('cpu,host=a v=1.5,s="x",ok=true 1700000000123456789\ncpu,host=b v=2.0 1700000000000000000')
    body = h.request().json()
    assert body["rows"] == [{"host": "a", "v": 1.5, "s": "x", "ok": True, "time": 1700000000123456789}]
    assert body["types"] == ["str", "float", "str", "bool", "int"]
    assert body["typed"] == "TypeError"


QUERY_PROBE = """
    def process_request(influxdb3_local, q, h, b, args=None):
        out = {}
        for name, sql in q.items():
            try:
                out[name] = {"rows": influxdb3_local.query(sql)}
            except BaseException as exc:  # PanicException is a BaseException, as pyo3's
                out[name] = {"raised": f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}",
                             "is_exception": isinstance(exc, Exception)}
        return out
    """
UNWRAP_PANIC = "pyo3_runtime.PanicException: called `Option::unwrap()` on a `None` value"


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # converted: Int64, UInt64, Float64, Utf8, Boolean, Timestamp(ns) (with or without a zone), Dictionary
        ("SELECT i, u, v, s, b, host, time FROM cpu WHERE host = 'a'",
         {"rows": [{"i": 3, "u": 4, "v": 1.5, "s": "x", "b": True, "host": "a", "time": 3_600_000_000_000}]}),
        ("SELECT arrow_cast(time, 'Timestamp(Nanosecond, Some(\"UTC\"))') AS t FROM cpu WHERE host = 'a'",
         {"rows": [{"t": 3_600_000_000_000}]}),
        # a null cell is None whatever its type, so an Int32 column of nulls converts
        ("SELECT CAST(i AS INT) AS x FROM cpu WHERE host = 'b'", {"rows": [{"x": None}]}),
        # not converted by the server: ValueError with arrow-rs's Debug of the type
        ("SELECT extract(hour FROM time) AS h FROM cpu", {"raised": "builtins.ValueError: Unsupported data type: Int32",
                                                          "is_exception": True}),
        ("SELECT CAST(v AS INT) AS x FROM cpu", {"raised": "builtins.ValueError: Unsupported data type: Int32",
                                                 "is_exception": True}),
        ("SELECT CAST(v AS REAL) AS x FROM cpu", {"raised": "builtins.ValueError: Unsupported data type: Float32",
                                                  "is_exception": True}),
        ("SELECT NULL AS n", {"raised": "builtins.ValueError: Unsupported data type: Null", "is_exception": True}),
        ("SELECT arrow_cast(s, 'LargeUtf8') AS s FROM cpu WHERE host = 'a'",
         {"raised": "builtins.ValueError: Unsupported data type: LargeUtf8", "is_exception": True}),
        ("SELECT arrow_cast(s, 'Utf8View') AS s FROM cpu WHERE host = 'a'",
         {"raised": "builtins.ValueError: Unsupported data type: Utf8View", "is_exception": True}),
        ("SELECT CAST(time AS DATE) AS d FROM cpu", {"raised": "builtins.ValueError: Unsupported data type: Date32",
                                                     "is_exception": True}),
        # the first offending cell in row-major order names the type: row 0 of b (Int32) before row 1 of a
        ("SELECT CASE WHEN host = 'b' THEN CAST(v AS REAL) END AS a, CAST(v AS INT) AS b FROM cpu ORDER BY host",
         {"raised": "builtins.ValueError: Unsupported data type: Int32", "is_exception": True}),
        # timestamps are read as nanoseconds by downcast + unwrap: any other unit panics in the server
        ("SELECT to_timestamp_millis(time) AS t FROM cpu", {"raised": UNWRAP_PANIC, "is_exception": False}),
        ("SELECT to_timestamp_seconds(time) AS t FROM cpu", {"raised": UNWRAP_PANIC, "is_exception": False}),
        # dictionaries other than Int32 keys over Utf8 values fail the server's expect("unexpected datatype")
        ("SELECT arrow_cast(s, 'Dictionary(Int8, Utf8)') AS d FROM cpu WHERE host = 'a'",
         {"raised": "pyo3_runtime.PanicException: unexpected datatype", "is_exception": False}),
    ],
)
def test_processing_runtime_query_converts_exactly_the_server_types(make, sql: str, expected: dict) -> None:
    """influxdb3_py_api/src/system_py.rs PyPluginCallApi::query: the match on array.data_type()."""
    h = make(QUERY_PROBE)
    h.write_lp('cpu,host=a v=1.5,i=3i,u=4u,s="x",b=true 3600000000000\ncpu,host=b v=2.5 7200000000000',
               precision="ns")
    assert h.request(query={"q": sql}).json()["q"] == expected


def test_processing_runtime_unsupported_type_fails_the_call_with_the_server_text(make) -> None:
    h = make(request_returning('influxdb3_local.query("SELECT to_timestamp_millis(0) AS t")'))
    r = h.request()
    assert r.status == 500
    assert r.json() == {"error": "Python function call failed: PanicException: "
                                 "called `Option::unwrap()` on a `None` value"}


def test_processing_runtime_query_error_text_and_other_database(make) -> None:
    h = make("""
        def process_request(influxdb3_local, q, h, b, args=None):
            out = {"other": influxdb3_local.query("SELECT x FROM t", database="other")}
            try:
                influxdb3_local.query("SELECT * FROM nope")
            except Exception as exc:
                out["error"] = [type(exc).__name__, str(exc)]
            return out
        """)
    h.write_lp("t x=7i 1", database="other")
    body = h.request().json()
    assert body["other"] == [{"x": 7}]
    assert body["error"][0] == "QueryError"
    assert body["error"][1].startswith("error: ")
    assert body["error"][1].endswith(" executing query on aichat: SELECT * FROM nope")
    assert "table 'public.iox.nope' not found" in body["error"][1]


def test_processing_runtime_writes_flush_only_after_normal_return(make) -> None:
    h = make("""
        def process_request(influxdb3_local, q, h, b, args=None):
            influxdb3_local.write(LineBuilder("out").tag("k", "a b").int64_field("n", 1).time_ns(5))
            influxdb3_local.write_to_db("second", LineBuilder("out").float64_field("f", 2).time_ns(6))
            seen = influxdb3_local.query("SELECT count(*) AS c FROM out") if q.get("check") else None
            if q.get("fail"):
                raise RuntimeError("nope")
            return {"seen": seen}
        """)
    failed = h.request(query={"fail": "1"})
    assert failed.status == 500
    assert failed.json() == {"error": "Python function call failed: RuntimeError: nope"}
    assert failed.writes == []
    ok = h.request()
    assert ok.status == 200
    assert ok.writes_by_db == {"aichat": ["out,k=a\\ b n=1i 5"], "second": ["out f=2.0 6"]}
    assert h.query("SELECT k, n, time FROM out") == [{"k": "a b", "n": 1, "time": 5}]
    assert h.query("SELECT f FROM out", database="second") == [{"f": 2.0}]


def test_processing_runtime_build_errors_raise_at_the_call_site(make) -> None:
    h = make("""
        def process_request(influxdb3_local, q, h, b, args=None):
            try:
                influxdb3_local.write(LineBuilder("m"))
            except Exception as exc:
                return [type(exc).__name__, str(exc)]
            return "queued"
        """)
    assert h.request().json() == ["InvalidLineError", "At least one field is required: m"]


def test_processing_runtime_write_sync_requires_no_sync_and_writes_at_once(make) -> None:
    h = make("""
        def process_request(influxdb3_local, q, h, b, args=None):
            try:
                influxdb3_local.write_sync(LineBuilder("s").int64_field("v", 1))
                missing = "accepted"
            except TypeError:
                missing = "TypeError"
            influxdb3_local.write_sync(LineBuilder("s").int64_field("v", 2).time_ns(9), False)
            rows = influxdb3_local.query("SELECT v, time FROM s")
            try:
                influxdb3_local.write_sync(LineBuilder("s").string_field("v", "clash"), False)
                clash = "accepted"
            except Exception as exc:
                clash = str(exc)
            return {"missing": missing, "rows": rows, "clash": clash}
        """)
    body = h.request().json()
    assert body["missing"] == "TypeError"
    assert body["rows"] == [{"v": 2, "time": 9}]
    assert body["clash"].startswith("error writing line protocol to aichat: ")


def test_processing_runtime_flush_failure_is_logged_not_raised(make) -> None:
    h = make("""
        def process_request(influxdb3_local, q, h, b, args=None):
            influxdb3_local.write(LineBuilder("m").string_field("v", "text"))
            return "ok"
        """)
    h.write_lp("m v=1i 1")
    r = h.request()
    assert r.status == 200 and r.text == "ok"
    errors = [text for level, text in r.logs if level == "ERROR"]
    assert len(errors) == 1
    assert errors[0].startswith("error running request plugin: error writing back lines to aichat: ")


# ------------------------------------------------------------------------------------------ call shapes
def test_processing_runtime_args_none_without_trigger_arguments(make) -> None:
    assert make(request_returning("repr(args)")).request().text == "None"
    assert make(request_returning("args"), args={"k": "v=1"}, name="p2.py").request().json() == {"k": "v=1"}


def test_processing_runtime_arguments_are_positional(make) -> None:
    h = make("""
        def process_request(a, b, c, d, e):
            return {"q": b, "h": c, "body": d.decode(), "body_type": type(d).__name__, "args": e}
        """)
    r = h.request(query={"x": "1"}, headers={"X-Thing": "y", "Authorization": "Bearer secret"}, body="hi")
    assert r.json() == {"q": {"x": "1"}, "h": {"x-thing": "y"}, "body": "hi", "body_type": "bytes", "args": None}


def test_processing_runtime_scheduled_call_time_is_naive_local_and_logged_in_utc(make) -> None:
    h = make("""
        def process_scheduled_call(influxdb3_local, call_time, args=None):
            influxdb3_local.info(repr(call_time.tzinfo), call_time.isoformat())
        """)
    when = datetime(2026, 3, 4, 8, 0, 0, tzinfo=UTC)
    r = h.scheduled(when)
    expected_local = datetime.fromtimestamp(when.timestamp()).isoformat()
    assert r.logs[0] == ("INFO", "starting execution with scheduled time 2026-03-04 08:00:00 UTC")
    assert r.logs[1] == ("INFO", f"None {expected_local}")
    assert r.error is None


def test_processing_runtime_wal_failure_logs_and_discards(make) -> None:
    h = make("""
        def process_writes(influxdb3_local, table_batches, args=None):
            influxdb3_local.write(LineBuilder("derived").int64_field("n", len(table_batches[0]["rows"])))
            influxdb3_local.info(table_batches)
            raise ValueError("bad batch")
        """)
    r = h.writes("cpu,host=a u=1i 1700000000000000000\ncpu,host=b v=2.5 1700000000000000001")
    assert r.error == "ValueError: bad batch"
    assert r.logs[0] == ("INFO", "starting execution of wal plugin.")
    assert r.logs[1] == ("INFO", str([{"table_name": "cpu", "rows": [
        {"host": "a", "u": 1, "time": 1700000000000000000},
        {"host": "b", "v": 2.5, "time": 1700000000000000001}]}]))
    assert r.logs[2] == ("ERROR", "error executing wal plugin: ValueError: bad batch")
    assert r.writes == []


def test_processing_runtime_missing_entry_point_texts(make) -> None:
    h = make("def unrelated():\n    return 1\n")
    assert h.request().json() == {"error": MISSING_FUNCTION_TEXT["request"]}
    assert h.scheduled().error == (
        "the process_scheduled_call function is not present in the plugin. Should be defined as: "
        "process_scheduled_call(influxdb3_local, call_time, args=None)")
    assert h.writes([]).error == (
        "the process_writes function is not present in the plugin. Should be defined as: "
        "process_writes(influxdb3_local, table_batches, args=None)")


def test_processing_runtime_fresh_globals_each_call_and_mtime_reload(make, tmp_path: Path) -> None:
    h = make("""
        COUNTER = []
        COUNTER.append(1)
        def process_request(influxdb3_local, q, h, b, args=None):
            return {"count": len(COUNTER), "name": __name__, "has_file": "__file__" in globals()}
        """)
    assert h.request().json() == {"count": 1, "name": "builtins", "has_file": False}
    assert h.request().json()["count"] == 1
    path = tmp_path / "plugin.py"
    path.write_text(textwrap.dedent(request_returning("'v2'")))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert h.request().text == "v2"


def test_processing_runtime_directory_plugin_with_sibling_import(tmp_path: Path) -> None:
    pkg = tmp_path / "pe_pkg_sibling"
    pkg.mkdir()
    (pkg / "helper.py").write_text("VALUE = 41\n")
    (pkg / "__init__.py").write_text(
        "from . import helper\n"
        "def process_request(influxdb3_local, q, h, b, args=None):\n"
        "    return {'value': helper.VALUE + 1}\n")
    with PluginHarness(pkg) as h:
        assert h.request().json() == {"value": 42}


def test_processing_runtime_line_builder_is_a_builtin_recreated_per_call(make) -> None:
    h = make(request_returning("[LineBuilder('m').tag('t', 'a,b').string_field('s', 'q\"x').build(), "
                               "id(LineBuilder)]"))
    first, second = h.request().json(), h.request().json()
    assert first[0] == 'm,t=a\\,b s="q\\"x"'
    assert first[1] != second[1]


# ------------------------------------------------------------------------------------------ responses
@pytest.mark.parametrize(
    ("expr", "status", "ctype", "body"),
    [
        ("'<b>hi</b>'", 200, "text/html", b"<b>hi</b>"),
        ("{'status': 'ok'}", 200, "application/json", b'{"status": "ok"}'),
        ("[1, 2]", 200, "application/json", b"[1, 2]"),
        ("({'a': 1}, 201)", 201, "application/json", b'{"a": 1}'),
        ("('made', {'X-A': 'b'})", 200, "text/html", b"made"),
        ("(42, 202, {'Content-Type': 'text/csv'})", 202, "text/csv", b"42"),
        ("(b'raw',)", 200, "text/plain", b"b'raw'"),
        ("('x', 1000)", 500, "text/html", b"x"),
        ("(s for s in ['a', b'b', 3])", 200, "text/html", b"ab"),
        ("b'bytes'", 200, "text/html", b""),
    ],
)
def test_processing_runtime_flask_rules(make, expr: str, status: int, ctype: str, body: bytes) -> None:
    r = make(request_returning(expr)).request()
    assert (r.status, r.headers.get("Content-Type"), r.body) == (status, ctype, body)


def test_processing_runtime_flask_like_object(make) -> None:
    h = make("""
        class Resp:
            status_code = 418
            headers = {"Content-Type": "text/plain", "X-T": "1"}
            def __flask_response__(self):
                return True
            def get_data(self):
                return "teapot"
        def process_request(influxdb3_local, q, h, b, args=None):
            return Resp()
        """)
    r = h.request()
    assert (r.status, r.headers, r.body) == (418, {"Content-Type": "text/plain", "X-T": "1"}, b"teapot")


@pytest.mark.parametrize(
    ("expr", "error"),
    [
        ("None", "Unsupported return type from Python function"),
        ("42", "Unsupported return type from Python function"),
        ("('a', 200, 'not-a-dict')", "expected a dictionary in header item"),
        ("1/0", "Python function call failed: ZeroDivisionError: division by zero"),
    ],
)
def test_processing_runtime_request_failures_are_500_json(make, expr: str, error: str) -> None:
    r = make(request_returning(expr)).request()
    assert r.status == 500
    assert r.body == json.dumps({"error": error}, separators=(",", ":")).encode()
    assert "Content-Type" not in r.headers
    assert r.logs[-1] == ("ERROR", f"error running request plugin: {error}")


# ------------------------------------------------------------------------------------------ cache
def test_processing_runtime_cache_semantics(make) -> None:
    h = make("""
        def process_request(influxdb3_local, q, h, b, args=None):
            c = influxdb3_local.cache
            if q.get("step") == "1":
                obj = {"n": 1}
                c.put("obj", obj)
                c.put("short", "x", ttl=0.05)
                c.put("g", "global", use_global=True)
                errors = []
                for bad in (-1, float("nan")):
                    try:
                        c.put("bad", 1, ttl=bad)
                    except ValueError:
                        errors.append("ValueError")
                return {"same": c.get("obj") is obj, "errors": errors, "local_g": c.get("g", "none")}
            return {"obj": c.get("obj"), "short": c.get("short", "expired"), "g": c.get("g", use_global=True),
                    "deleted": [c.delete("obj"), c.delete("obj")]}
        """)
    assert h.request(query={"step": "1"}).json() == {"same": True, "errors": ["ValueError", "ValueError"],
                                                     "local_g": "none"}
    time.sleep(0.06)  # let the 50 ms ttl pass (this is the behaviour under test, not readiness)
    assert h.request().json() == {"obj": {"n": 1}, "short": "expired", "g": "global", "deleted": [True, False]}


def test_processing_runtime_cache_store_drop_scope() -> None:
    store = CacheStore()
    scope = CacheStore.trigger_scope("db", "t")
    store.put(scope, "k", 1, None)
    store.put(CacheStore.GLOBAL, "k", 2, None)
    store.drop(scope)
    assert store.get(scope, "k", "gone") == "gone"
    assert store.get(CacheStore.GLOBAL, "k", None) == 2


# ------------------------------------------------------------------------------------------ formatting
@pytest.mark.parametrize(
    ("ns", "text"),
    [(0, "0s"), (1_500, "1us 500ns"), (2_003_000_000, "2s 3ms"), (3_661_000_000_000, "1h 1m 1s"),
     (86_400_000_000_000 * 2, "2days")],
)
def test_processing_runtime_humantime_format(ns: int, text: str) -> None:
    # the `finished execution in …` text uses the one humantime formatter (emulator.processing.specs)
    assert format_duration(ns) == text


def test_processing_runtime_chrono_utc_format() -> None:
    assert format_chrono_utc(1_767_254_400_000_000_000) == "2026-01-01 08:00:00 UTC"
    assert format_chrono_utc(1_767_254_400_500_000_000) == "2026-01-01 08:00:00.500 UTC"


# ------------------------------------------------------------------------------------------ review: robustness
@pytest.mark.parametrize(
    ("raise_stmt", "text"),
    [
        ("raise SystemExit(3)", "SystemExit: 3"),
        ("raise KeyboardInterrupt('stop')", "KeyboardInterrupt: stop"),
        ("raise GeneratorExit()", "GeneratorExit: "),
    ],
)
def test_processing_runtime_base_exceptions_are_plugin_errors(make, raise_stmt: str, text: str) -> None:
    # pyo3 turns every Python exception into a PyErr: a plugin's sys.exit() is a failed call, nothing more.
    h = make(f"""
        def process_request(influxdb3_local, q, h, b, args=None):
            {raise_stmt}
        def process_writes(influxdb3_local, table_batches, args=None):
            {raise_stmt}
        """)
    r = h.request()
    assert r.status == 500 and r.json() == {"error": f"Python function call failed: {text}"}
    assert h.writes([{"table_name": "t", "rows": []}]).error == text


def test_processing_runtime_base_exception_at_top_level_is_a_plugin_error(make) -> None:
    h = make("import sys\nsys.exit(2)\n")
    assert h.writes([]).error == "SystemExit: 2"


def test_processing_runtime_exception_with_failing_str_is_a_plugin_error(make) -> None:
    # pyo3's PyErr Display writes `<exception str() failed>` when str(exc) raises.
    h = make("""
        class Odd(Exception):
            def __str__(self):
                raise RuntimeError("no str")
        def process_writes(influxdb3_local, table_batches, args=None):
            raise Odd()
        """)
    assert h.writes([]).error == "Odd: <exception str() failed>"


def test_processing_runtime_iterable_response_takes_bytes_not_bytearray(make) -> None:
    # The server extracts `&[u8]` (bytes only); a bytearray item is skipped like any other non-str item.
    r = make(request_returning("iter(['a', bytearray(b'b'), b'c'])")).request()
    assert (r.status, r.body) == (200, b"ac")


def test_processing_runtime_query_args_must_be_a_dict(make) -> None:
    # pyo3 extracts HashMap<String, String> from a dict only; another Mapping is a TypeError there.
    h = make("""
        import types
        def process_request(influxdb3_local, q, h, b, args=None):
            try:
                influxdb3_local.query("SELECT 1 AS one", types.MappingProxyType({"a": "b"}))
            except TypeError:
                return "rejected"
            return "accepted"
        """)
    assert h.request().text == "rejected"


def test_processing_runtime_undecodable_plugin_file_is_a_plugin_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.py"
    path.write_bytes(b"# caf\xe9\ndef process_writes(influxdb3_local, table_batches, args=None):\n    pass\n")
    with PluginHarness(path) as h:
        r = h.writes([])
    assert r.error is not None and r.error.startswith("reading plugin file: ")


def test_processing_runtime_write_sync_checks_no_sync_before_building(make) -> None:
    h = make("""
        class Loud:
            def build(self):
                raise ValueError("built")
        def process_request(influxdb3_local, q, h, b, args=None):
            try:
                influxdb3_local.write_sync(Loud(), "yes")
            except Exception as exc:
                return type(exc).__name__
        """)
    assert h.request().text == "TypeError"
