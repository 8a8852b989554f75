"""Engine write path in-process: types, dedup, partial writes, schema errors, limits, flush fan-out."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from emulator.engine import Engine
from emulator.errors import ApiError

TAG = pa.dictionary(pa.int32(), pa.string())


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = Engine(tmp_path / "data", wal_flush_interval=0.01)
    eng.open()
    yield eng
    eng.close()


def rows(engine: Engine, db: str, sql: str) -> list[dict[str, Any]]:
    table = engine.query(db, sql)
    if "time" in table.column_names:
        idx = table.column_names.index("time")
        table = table.set_column(idx, "time", table.column("time").cast(pa.int64()))
    return table.to_pylist()


def test_engine_write_column_types(engine: Engine) -> None:
    out = engine.write_lp("db1", 'm,host=a f=1.5,i=-3i,u=7u,s="x",b=true 1700000000000000000', precision="ns")
    assert (out.lines_written, out.errors) == (1, [])
    schema = engine.query("db1", "SELECT * FROM m").schema
    assert [(f.name, f.type) for f in schema] == [
        ("b", pa.bool_()),
        ("f", pa.float64()),
        ("host", TAG),
        ("i", pa.int64()),
        ("s", pa.string()),
        ("time", pa.timestamp("ns")),
        ("u", pa.uint64()),
    ]
    assert rows(engine, "db1", "SELECT * FROM m") == [
        {"b": True, "f": 1.5, "host": "a", "i": -3, "s": "x", "time": 1700000000000000000, "u": 7}
    ]


def test_engine_write_missing_columns_are_null(engine: Engine) -> None:
    engine.write_lp("db1", "m,host=a x=1i 1\nm,region=eu y=2i 2", precision="s")
    assert rows(engine, "db1", "SELECT * FROM m ORDER BY time") == [
        {"host": "a", "region": None, "time": 1_000_000_000, "x": 1, "y": None},
        {"host": None, "region": "eu", "time": 2_000_000_000, "x": None, "y": 2},
    ]


def test_engine_write_dedup_merges_field_by_field(engine: Engine) -> None:
    # reference §7a: the later write replaces its fields; fields only in the earlier row stay
    engine.write_lp("db1", "web,host=h2 a=24.0,b=7.0 100", precision="s")
    engine.write_lp("db1", "web,host=h2 a=15.0 100", precision="s")
    engine.write_lp("db1", "web,host=h3 a=1.0 100", precision="s")
    assert rows(engine, "db1", "SELECT host, a, b FROM web ORDER BY host") == [
        {"host": "h2", "a": 15.0, "b": 7.0},
        {"host": "h3", "a": 1.0, "b": None},
    ]


def test_engine_write_dedup_within_one_request_keeps_order(engine: Engine) -> None:
    body = "web,host=h a=1.0 5\nweb,host=h a=2.0,b=1.0 5\nweb,host=h a=3.0 5"
    engine.write_lp("db1", body, precision="s")
    assert rows(engine, "db1", "SELECT a, b FROM web") == [{"a": 3.0, "b": 1.0}]


def test_engine_write_dedup_after_query_cache(engine: Engine) -> None:
    engine.write_lp("db1", "web,host=h a=1.0 5\nweb,host=h a=1.0 6", precision="s")
    assert len(rows(engine, "db1", "SELECT * FROM web")) == 2  # cached now
    engine.write_lp("db1", "web,host=h a=9.0 5\nweb,host=h a=4.0 7", precision="s")
    assert rows(engine, "db1", "SELECT a, time FROM web ORDER BY time") == [
        {"a": 9.0, "time": 5_000_000_000},
        {"a": 1.0, "time": 6_000_000_000},
        {"a": 4.0, "time": 7_000_000_000},
    ]


def test_engine_write_partial_keeps_valid_lines(engine: Engine) -> None:
    out = engine.write_lp("db1", "cpu,host=a val=1 1\ncpu,host=a val= 123\ncpu,host=b val=2 2", precision="s")
    assert out.lines_written == 2
    assert [e.to_json() for e in out.errors] == [
        {"error_message": "No fields were provided", "line_number": 2, "original_line": "cpu,host=a val= 123"}
    ]
    assert rows(engine, "db1", "SELECT host FROM cpu ORDER BY host") == [{"host": "a"}, {"host": "b"}]


def test_engine_write_type_conflict_exact_text(engine: Engine) -> None:
    engine.write_lp("db1", "cpu,host=a usage=1.5 1", precision="s")
    out = engine.write_lp("db1", "cpu,host=a usage=2i 2\ncpu,host=b usage=2.5 3", precision="s")
    assert out.lines_written == 1
    assert [e.to_json() for e in out.errors] == [{
        "error_message": "invalid column type for column 'usage', expected iox::column_type::field::float, "
                         "got iox::column_type::field::integer",
        "line_number": 1,
        "original_line": "cpu,host=a usage=2i ",
    }]


def test_engine_write_later_lines_see_new_columns(engine: Engine) -> None:
    out = engine.write_lp("db1", "m,t=1 x=1i 1\nm,t=2 x=1.0 2\nm,x=a y=1u 3", precision="s")
    assert out.lines_written == 1
    assert [e.error_message for e in out.errors] == [
        "invalid column type for column 'x', expected iox::column_type::field::integer, "
        "got iox::column_type::field::float",
        "invalid column type for column 'x', expected iox::column_type::field::integer, "
        "got iox::column_type::tag",
    ]
    assert engine.catalog.table_schema("db1", "m") == {"tags": ["t"], "fields": {"x": "int64"}}


def test_engine_write_tag_field_clash_in_new_table(engine: Engine) -> None:
    out = engine.write_lp("db1", "zz,t=1 t=3,a=1", precision="s")
    assert out.lines_written == 0
    assert [e.error_message for e in out.errors] == [
        "invalid column type for column 't', expected iox::column_type::tag, got iox::column_type::field::float"
    ]
    assert not engine.catalog.db_exists("db1")  # nothing valid: the db is not created


def test_engine_write_accept_partial_false_writes_nothing(engine: Engine) -> None:
    engine.write_lp("db1", "cpu,host=a usage=1.5 1", precision="s")
    out = engine.write_lp("db1", "cpu,host=z usage=1.0 9\ncpu usage=1i 2\nbad", precision="s",
                          accept_partial=False)
    assert out.lines_written == 0
    assert [(e.line_number, e.original_line) for e in out.errors] == [(2, "cpu usage=1i 2")]
    out = engine.write_lp("db1", "cpu,host=z new=1.0 9\nbad line\ncpu usage=1i 2", precision="s", accept_partial=False)
    assert [(e.line_number, e.error_message) for e in out.errors] == [(2, "No fields were provided")]
    assert rows(engine, "db1", "SELECT host FROM cpu") == [{"host": "a"}]
    assert engine.catalog.table_schema("db1", "cpu") == {"tags": ["host"], "fields": {"usage": "float64"}}


def test_engine_write_empty_body(engine: Engine) -> None:
    with pytest.raises(ApiError) as info:
        engine.write_lp("db1", b"")
    assert (info.value.status, info.value.text) == (400, "incoming write was empty")


@pytest.mark.parametrize(("name", "message"), [
    ("_x", "db name did not start with a number or letter"),
    ("a.b", "invalid character in database or rp name: must be ASCII, containing only letters, numbers, "
            "underscores, or hyphens"),
    ("x/", "db name with invalid retention policy, if providing a retention policy name, must be of form "
           "'<db_name>/<rp_name>'"),
    ("a/b/c", "db name with invalid retention policy, if providing a retention policy name, must be of form "
              "'<db_name>/<rp_name>'"),
])
def test_engine_write_bad_db_name(engine: Engine, name: str, message: str) -> None:
    with pytest.raises(ApiError) as info:
        engine.write_lp(name, "m f=1")
    assert (info.value.status, info.value.text) == (400, f'{{"error":"{message}"}}')


def test_engine_write_database_limit(engine: Engine) -> None:
    for i in range(5):
        engine.write_lp(f"db{i}", "m f=1")
    with pytest.raises(ApiError) as info:
        engine.write_lp("db5", "m f=1")
    assert (info.value.status, info.value.text) == (
        422, '{"error":"Adding a new database would exceed limit of 5 databases"}')
    with pytest.raises(ApiError) as info:
        engine.create_database("db5")
    assert info.value.status == 422
    engine.write_lp("db4", "m f=2")  # existing databases still take writes


def test_engine_write_column_limit(engine: Engine) -> None:
    fields = ",".join(f"f{i}=1i" for i in range(499))
    out = engine.write_lp("db1", f"wide,t=a {fields} 1", precision="s")  # 1 tag + 499 fields = 500 (time not counted)
    assert (out.lines_written, out.errors) == (1, [])
    out = engine.write_lp("db1", "wide,t=a extra=1i 2", precision="s")
    assert out.lines_written == 0
    assert [e.error_message for e in out.errors] == [
        "Update to schema would exceed number of columns per table limit of 500 columns"
    ]


def test_engine_write_table_limit_on_both_write_paths(engine: Engine) -> None:
    body = "\n".join(f"t{i} f=1i 1" for i in range(1999))  # mixed shapes: the exact path
    assert engine.write_lp("db1", body, precision="s").lines_written == 1999
    limit_text = ("Update to schema would exceed number of tables limit: attempted to create table but already "
                  "have 2000 table(s) (limit: 2000)")
    # the 2000th table in one request with a line for an existing table: partial write, exact per-line error
    out = engine.write_lp("db1", "t0 f=2i 2\nnew1 f=1i 2\nnew2 f=1i 2", precision="s")
    assert out.lines_written == 2
    assert [(e.line_number, e.error_message) for e in out.errors] == [(3, limit_text)]
    # a one-shape body (the columnar path) for one table too many is refused line by line the same way
    out = engine.write_lp("db1", "over f=1i 1\nover f=2i 2", precision="s")
    assert out.lines_written == 0
    assert [(e.line_number, e.error_message) for e in out.errors] == [(1, limit_text), (2, limit_text)]
    assert engine.write_lp("db1", "new1 f=3i 3", precision="s").lines_written == 1  # existing tables still write
    # the limit is catalog-wide (influxdb3/tests/server/limits.rs): another database cannot add one either
    out = engine.write_lp("db2", "other f=1i 1", precision="s")
    assert [e.error_message for e in out.errors] == [limit_text]
    engine.delete_table("db1", "t0")  # soft-deleted tables do not count
    assert engine.write_lp("db2", "other f=1i 1", precision="s").lines_written == 1


def test_engine_write_no_sync_false_waits_for_flush(tmp_path: Path) -> None:
    eng = Engine(tmp_path, wal_flush_interval=0.3)
    eng.open()
    try:
        t0 = time.monotonic()
        eng.write_lp("db1", "m f=1", no_sync=True)
        assert time.monotonic() - t0 < 0.2
        t0 = time.monotonic()
        eng.write_lp("db1", "m f=2")
        waited = time.monotonic() - t0
        assert 0.0 < waited <= 1.0
        assert len(list((tmp_path / "wal").iterdir())) >= 1
    finally:
        eng.close()


def test_engine_flush_listener_batches(engine: Engine) -> None:
    seen: list[tuple[str, list[dict[str, Any]]]] = []
    released = threading.Event()

    def listener(db: str, batches: list[dict[str, Any]]) -> None:
        assert not released.is_set()  # called before the writer is released
        seen.append((db, batches))

    engine.add_flush_listener(listener)
    engine.write_lp("db1", "cpu,host=B user=43.1 120\ncpu,host=C,dc=x n=5u 121\nmem free=1i 122", precision="ns")
    released.set()
    assert seen == [("db1", [
        {"table_name": "cpu", "rows": [{"host": "B", "user": 43.1, "time": 120},
                                       {"host": "C", "dc": "x", "n": 5, "time": 121}]},
        {"table_name": "mem", "rows": [{"free": 1, "time": 122}]},
    ])]
    assert type(seen[0][1][0]["rows"][1]["n"]) is int


def test_engine_flush_listener_errors_and_reentrant_writes(engine: Engine) -> None:
    calls: list[str] = []

    def broken(db: str, batches: list[dict[str, Any]]) -> None:
        raise RuntimeError("boom")

    def plugin(db: str, batches: list[dict[str, Any]]) -> None:
        calls.append(db)
        if db == "db1":
            engine.write_lp("db2", "derived v=1i 1", precision="s")  # re-enters from the flusher thread

    engine.add_flush_listener(broken)
    engine.add_flush_listener(plugin)
    engine.write_lp("db1", "m f=1 1", precision="s")
    engine.flush_now()
    engine.flush_now()
    assert calls == ["db1", "db2"]
    assert rows(engine, "db2", "SELECT v FROM derived") == [{"v": 1}]


def test_engine_flush_listener_once_per_database(tmp_path: Path) -> None:
    eng = Engine(tmp_path, wal_flush_interval=30)  # only flush_now() flushes
    eng.open()
    try:
        seen: list[tuple[str, list[str]]] = []
        eng.add_flush_listener(lambda db, batches: seen.append((db, [b["table_name"] for b in batches])))
        eng.write_lp("a", "m f=1", no_sync=True)
        eng.write_lp("b", "m f=1", no_sync=True)
        eng.write_lp("a", "n f=1", no_sync=True)
        assert seen == []
        eng.flush_now()
        assert sorted(seen) == [("a", ["m", "n"]), ("b", ["m"])]
        assert len(list((tmp_path / "wal").iterdir())) == 1  # one WAL file per flush
    finally:
        eng.close()


def test_engine_flush_listener_wants_predicate(tmp_path: Path) -> None:
    eng = Engine(tmp_path, wal_flush_interval=30)  # only flush_now() flushes
    eng.open()
    try:
        seen: list[tuple[str, list[dict[str, Any]]]] = []
        asked: list[str] = []

        def wants(db: str) -> bool:
            asked.append(db)
            return db == "a"

        eng.add_flush_listener(lambda db, batches: seen.append((db, batches)), wants=wants)
        eng.write_lp("a", "m,t=x f=1i 1\nm,t=y f=2i 2", precision="ns", no_sync=True)
        eng.write_lp("b", "m f=1i 1", precision="ns", no_sync=True)
        eng.flush_now()
        assert sorted(asked) == ["a", "b"]
        assert seen == [("a", [{"table_name": "m", "rows": [{"t": "x", "f": 1, "time": 1},
                                                            {"t": "y", "f": 2, "time": 2}]}])]
    finally:
        eng.close()


def test_engine_one_shape_body_rejected_by_catalog_reports_each_line(engine: Engine) -> None:
    # a body of one shape takes the columnar path; a catalog conflict gives the exact per-line errors
    engine.write_lp("db1", "m,t=a f=1i 1", precision="s")
    body = "m,t=a f=1.5 2\nm,t=b f=2.5 3\n"
    out = engine.write_lp("db1", body, precision="s")
    message = "invalid column type for column 'f', expected iox::column_type::field::integer, " \
              "got iox::column_type::field::float"
    assert out.lines_written == 0
    assert [(e.line_number, e.original_line, e.error_message) for e in out.errors] == [
        (1, "m,t=a f=1.5 2", message), (2, "m,t=b f=2.5 3", message)]
    out = engine.write_lp("db1", body, precision="s", accept_partial=False)
    assert [(e.line_number, e.error_message) for e in out.errors] == [(1, message)]
    out = engine.write_lp("db1", "m,t=a f=5i 2\nm,t=b f=6i 3\n", precision="s")
    assert (out.lines_written, out.errors) == (2, [])
    assert rows(engine, "db1", "SELECT t, f FROM m ORDER BY time") == [
        {"t": "a", "f": 1}, {"t": "a", "f": 5}, {"t": "b", "f": 6}]


def test_engine_close_flushes_a_listener_write_made_during_the_final_flush(tmp_path: Path) -> None:
    # close() runs the last flush on the closing thread: a listener that writes there (acknowledged,
    # no_sync=False) must neither wait on itself forever nor have its rows dropped
    data = tmp_path / "data"
    eng = Engine(data, wal_flush_interval=30)  # only flush_now() and close() flush
    eng.open()

    def plugin(db: str, batches: list[dict[str, Any]]) -> None:
        if db == "db1":
            eng.write_lp("db2", "derived v=1i 1", precision="s")

    eng.add_flush_listener(plugin)
    eng.write_lp("db1", "m f=1 1", precision="s", no_sync=True)
    closer = threading.Thread(target=eng.close, daemon=True)
    closer.start()
    closer.join(10)
    assert not closer.is_alive(), "close() deadlocked on a listener's write"
    again = Engine(data, wal_flush_interval=0.01)
    again.open()
    try:
        assert rows(again, "db2", "SELECT v FROM derived") == [{"v": 1}]
    finally:
        again.close()


def test_engine_write_racing_close_is_flushed_or_refused(tmp_path: Path) -> None:
    # a write that passed the open check while close() ran its final flush must not wait forever
    eng = Engine(tmp_path / "data", wal_flush_interval=30)
    eng.open()
    eng.write_lp("db1", "m f=1 1", precision="s", no_sync=True)
    real_flush = eng._flush_once
    outcome: list[Any] = []

    def flush_then_write() -> None:
        real_flush()
        if not outcome:
            def late() -> None:
                try:
                    outcome.append(eng.write_lp("db1", "m f=2 2", precision="s"))
                except Exception as exc:  # EngineClosed is an acceptable answer
                    outcome.append(exc)
            t = threading.Thread(target=late, daemon=True)
            t.start()
            t.join(0.5)  # the write is queued (or refused) before close() goes on

    eng._flush_once = flush_then_write  # type: ignore[method-assign]
    eng.close()
    deadline = time.monotonic() + 5
    while not outcome and time.monotonic() < deadline:
        time.sleep(0.01)
    assert outcome, "a write racing close() never returned"
