"""Engine queries and catalog operations in-process: column order, params, errors, system tables,
databases and tables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from emulator.engine import Engine
from emulator.errors import ApiError, DatabaseNotFound, QueryError


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = Engine(tmp_path, wal_flush_interval=0.01)
    eng.open()
    eng.write_lp("db1", "cpu,region=eu,host=a usage=1.5,idle=9i 1\ncpu,region=us,host=b usage=2.5,idle=8i 2",
                 precision="s")
    yield eng
    eng.close()


def test_engine_query_select_star_is_alphabetical(engine: Engine) -> None:
    assert engine.query("db1", "SELECT * FROM cpu").column_names == ["host", "idle", "region", "time", "usage"]


def test_engine_query_group_by(engine: Engine) -> None:
    engine.write_lp("db1", "cpu,region=eu,host=c usage=3.5,idle=1i 3", precision="s")
    table = engine.query("db1", "SELECT region, avg(usage) AS u FROM cpu GROUP BY region ORDER BY region")
    assert table.to_pylist() == [{"region": "eu", "u": 2.5}, {"region": "us", "u": 2.5}]


def test_engine_query_params(engine: Engine) -> None:
    sql = "SELECT host FROM cpu WHERE host = $h AND usage > $min"
    assert engine.query("db1", sql, {"h": "b", "min": 2.0}).to_pylist() == [{"host": "b"}]
    assert engine.query("db1", sql, {"h": "b", "min": "2.0"}).to_pylist() == [{"host": "b"}]  # str from plugins


def test_engine_query_missing_table_text(engine: Engine) -> None:
    with pytest.raises(QueryError) as info:
        engine.query("db1", "SELECT * FROM not_here")
    assert (info.value.message, info.value.kind) == ("Error during planning: table 'public.iox.not_here' not found",
                                                     "plan")
    assert info.value.to_api_error().status == 400


def test_engine_query_execution_error_kind(engine: Engine) -> None:
    with pytest.raises(QueryError) as info:
        engine.query("db1", "SELECT idle / 0 FROM cpu")
    assert (info.value.message, info.value.kind) == ("Arrow error: Divide by zero error", "execution")


def test_engine_query_unknown_database(engine: Engine) -> None:
    with pytest.raises(DatabaseNotFound) as info:
        engine.query("nope", "SELECT 1")
    assert info.value.db == "nope"


def test_engine_query_show_tables_and_information_schema(engine: Engine) -> None:
    engine.register_system_table("demo", lambda db: pa.table({"db": [db]}))
    shown = engine.query("db1", "SHOW TABLES").to_pylist()
    assert {(r["table_schema"], r["table_name"]) for r in shown} >= {("iox", "cpu"), ("system", "demo")}
    cols = engine.query("db1", "SELECT column_name, data_type FROM information_schema.columns "
                               "WHERE table_name = 'cpu' ORDER BY column_name").to_pylist()
    assert cols == [
        {"column_name": "host", "data_type": "Dictionary(Int32, Utf8)"},
        {"column_name": "idle", "data_type": "Int64"},
        {"column_name": "region", "data_type": "Dictionary(Int32, Utf8)"},
        {"column_name": "time", "data_type": "Timestamp(ns)"},
        {"column_name": "usage", "data_type": "Float64"},
    ]
    assert engine.query("db1", "SELECT db FROM system.demo").to_pylist() == [{"db": "db1"}]


def test_engine_query_table_created_empty(engine: Engine) -> None:
    engine.create_table("db1", "empty", ["t"], [{"name": "f", "type": "bool"}])
    table = engine.query("db1", "SELECT * FROM empty")
    assert (table.num_rows, table.column_names) == (0, ["f", "t", "time"])
    with pytest.raises(ApiError) as info:
        engine.create_table("db1", "empty", [], [])
    assert (info.value.status, info.value.text) == (409, "attempted to create a resource that already exists")


def test_engine_databases_list_delete_and_reuse(engine: Engine) -> None:
    engine.create_database("other", retention_period="30d")
    assert engine.list_databases() == [{"iox::database": "_internal"}, {"iox::database": "db1"},
                                       {"iox::database": "other"}]
    with pytest.raises(ApiError) as info:
        engine.create_database("other")
    assert (info.value.status, info.value.text) == (409, "attempted to create a resource that already exists")
    engine.delete_database("db1")
    with pytest.raises(DatabaseNotFound):
        engine.query("db1", "SELECT * FROM cpu")
    listed = engine.list_databases(show_deleted=True)
    deleted = [r for r in listed if r["deleted"]]
    assert len(deleted) == 1
    assert deleted[0]["iox::database"].startswith("db1-")
    suffix = deleted[0]["iox::database"][len("db1-"):]
    assert len(suffix) == 15 and suffix[8] == "T" and suffix.replace("T", "").isdigit()
    engine.write_lp("db1", "fresh v=1i 1", precision="s")  # the name is free again, the old rows are gone
    assert engine.query("db1", "SHOW TABLES").filter(pa.compute.equal(
        pa.compute.field("table_schema"), "iox")).column("table_name").to_pylist() == ["fresh"]


def test_engine_databases_delete_errors(engine: Engine) -> None:
    with pytest.raises(ApiError) as info:
        engine.delete_database("missing")
    assert (info.value.status, info.value.text) == (404, "the requested resource was not found: missing")
    with pytest.raises(ApiError) as info:
        engine.delete_database("_internal")
    assert (info.value.status, info.value.text) == (500, "cannot delete internal db")


def test_engine_tables_delete_hides_rows(engine: Engine) -> None:
    engine.delete_table("db1", "cpu")
    with pytest.raises(QueryError):
        engine.query("db1", "SELECT * FROM cpu")
    engine.write_lp("db1", "cpu,host=z usage=1i 5", precision="s")  # new table, new types allowed
    assert engine.query("db1", "SELECT host, usage FROM cpu").to_pylist() == [{"host": "z", "usage": 1}]
    with pytest.raises(ApiError) as info:
        engine.delete_table("db1", "nope")
    assert (info.value.status, info.value.text) == (404, "Table nope not in DB schema for db1")
    with pytest.raises(ApiError) as info:
        engine.delete_table("nodb", "cpu")
    assert (info.value.status, info.value.text) == (404, "Database not found nodb")
    with pytest.raises(ApiError) as info:
        engine.delete_table("_internal", "cpu")
    assert (info.value.status, info.value.text) == (500, "cannot modify internal db")
    gone = engine.query("_internal", "SELECT table_name FROM system.tables WHERE deleted").column(0).to_pylist()[0]
    with pytest.raises(ApiError) as info:
        engine.delete_table("db1", gone)  # the soft-deleted table under its new name (ops/mod.rs active_table)
    assert (info.value.status, info.value.text) == (409, f"attempted to modify resource that was already deleted: {gone}")


def test_engine_retention_update_and_clear(engine: Engine) -> None:
    engine.update_database("db1", "7d")
    assert engine.catalog.get_db("db1").retention_period == "7d"
    engine.clear_retention("db1")
    assert engine.catalog.get_db("db1").retention_period is None


def test_engine_retention_hides_old_rows(engine: Engine) -> None:
    engine.create_database("short", retention_period="1h")
    now_s = __import__("time").time_ns() // 1_000_000_000
    engine.write_lp("short", f"m v=1i 1\nm v=2i {now_s}", precision="s")
    assert engine.query("short", "SELECT v FROM m").to_pylist() == [{"v": 2}]
    with pytest.raises(ApiError) as info:
        engine.create_database("bad", retention_period="soon")
    assert info.value.status == 400


def test_engine_query_column_added_while_the_query_reads_the_schema(engine: Engine,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # a write adding a column lands in the buffer between the query reading the table's schema and
    # reading its rows: the query must not fail (KeyError) nor drop the new column's values
    import emulator.storage as storage_mod

    real = storage_mod.arrow_schema
    raced: list[bool] = []

    def schema_then_write(tdef):  # type: ignore[no-untyped-def]
        schema = real(tdef)
        if not raced:
            raced.append(True)
            engine.write_lp("db1", "cpu,region=eu,host=a extra=7i 5", precision="s")  # flushed (applied)
        return schema

    monkeypatch.setattr(storage_mod, "arrow_schema", schema_then_write)
    first = engine.query("db1", "SELECT count(*) AS n FROM cpu").to_pylist()
    assert raced
    assert first == [{"n": 3}]
    assert engine.query("db1", "SELECT extra FROM cpu WHERE extra IS NOT NULL").to_pylist() == [{"extra": 7}]


def test_engine_query_concurrent_with_writes_adding_columns() -> None:
    import sys
    import threading

    eng = Engine(None, wal_flush_interval=0.001)
    eng.open()
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the threads as finely as possible
    try:
        eng.write_lp("db1", "m " + ",".join(f"f{i}=1i" for i in range(50)) + " 1", precision="s")
        done = threading.Event()
        errors: list[BaseException] = []

        def writer() -> None:
            for i in range(50, 250):
                eng.write_lp("db1", f"m f{i}=1i 1", precision="s", no_sync=True)
            done.set()

        def reader() -> None:
            while not done.is_set():
                try:
                    eng.query("db1", "SELECT count(*) FROM m")
                except BaseException as exc:  # noqa: BLE001 - any failure is the defect
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=writer), threading.Thread(target=reader), threading.Thread(target=reader)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
    finally:
        sys.setswitchinterval(old)
        eng.close()


def test_engine_query_log_finishes_a_query_whose_system_table_provider_fails(engine: Engine) -> None:
    """Any failure ends the query's system.queries entry as ``fail``, not only a QueryError: a system table
    provider that raises used to leave the entry ``running`` for good."""
    def broken(db: str) -> pa.Table:
        raise RuntimeError("provider broke")

    engine.register_system_table("broken_provider", broken)
    with pytest.raises(RuntimeError, match="provider broke"):
        engine.query("db1", "SELECT * FROM system.broken_provider")
    entries = [e for e in engine.query_log.snapshot() if "broken_provider" in e.query_text]
    assert [(e.phase, e.running, e.success) for e in entries] == [("fail", False, False)]
