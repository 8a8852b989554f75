"""Issue 9 items 1-5 in-process: inputs the engine once accepted and then crashed on, or that made a table
unqueryable, or that let SQL reach the host. Each input of the issue is a test here; a property test
interleaves random writes and queries against a model of the server's deduplication (reference §7a)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.engine import Engine
from emulator.errors import QueryError
from emulator.harness import PluginHarness
from emulator.storage import TAG_TYPE, dedup
from tests.support import REPO_ROOT

#: the writes of issue 9 item 1 (1-based): 4, 11, 12 and 14 mix tag sets; the others are fillers
_ISSUE_WRITES = {4: "m,t=a f0=0i 1000", 11: "m,t=1 v=1i -9223372036854775808\nm,t=1 v=1i 0",
                 12: "m,u=b v=1i 0", 14: "m,t=1 v=1i 0"}


def _issue_write(i: int) -> str:
    return _ISSUE_WRITES.get(i, f"m filler=1i {10**15 + i}")


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows with ``time`` as int ns (i64::MIN has no datetime) and nulls left out."""
    if "time" in table.column_names:
        i = table.column_names.index("time")
        table = table.set_column(i, "time", table.column(i).cast(pa.int64()))
    return [{k: v for k, v in row.items() if v is not None} for row in table.to_pylist()]


@pytest.fixture
def engine(tmp_path: Path):
    eng = Engine(tmp_path / "data", wal_flush_interval=0.01)
    eng.open()
    yield eng
    eng.close()


def _reopen(engine: Engine) -> Engine:
    engine.close()
    again = Engine(engine.data_dir, wal_flush_interval=0.01)
    again.open()
    return again


# ---------------------------------------------------------------------------------------------- item 1
def test_engine_chunk_merge_of_issue_writes_does_not_crash() -> None:
    """The 18 writes and queries of the issue killed the process (SIGSEGV) on the 18th query; run them in a
    child process so a crash fails this test instead of the whole run."""
    script = textwrap.dedent("""
        from emulator.engine import Engine
        from tests.emulator.test_engine_robustness import _issue_write
        e = Engine(None, wal_flush_interval=0.01)
        e.open()
        counts = []
        for i in range(1, 19):
            e.write_lp("db", _issue_write(i))
            counts.append(e.query("db", "SELECT count(*) AS n FROM m").column("n")[0].as_py())
        e.close()
        print(counts)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    # write 11 adds two rows, write 14 overwrites one of them
    assert proc.stdout.strip() == str([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 14, 15, 16, 17, 18])


def test_dedup_leaves_no_undefined_index_under_a_null_tag() -> None:
    """Arrow's hash group_by leaves arbitrary indices under null keys; the merge of chunks transposes every
    index and read far outside its table with one. Deduplicated tables hold index 0 there."""
    table = pa.table({"t": pa.array(["1", None, "1"], TAG_TYPE), "u": pa.array([None, "b", None], TAG_TYPE),
                      "time": pa.array([0, 0, 0], pa.timestamp("ns")), "v": pa.array([1, 1, 2])})
    out = dedup(table)
    assert out.to_pylist() == [{"t": "1", "u": None, "time": out.column("time")[0].as_py(), "v": 2},
                               {"t": None, "u": "b", "time": out.column("time")[1].as_py(), "v": 1}]
    for name in ("t", "u"):
        for chunk in out.column(name).chunks:
            raw = pa.Array.from_buffers(pa.int32(), len(chunk), [None, chunk.indices.buffers()[1]],
                                        offset=chunk.indices.offset)
            assert all(0 <= i < len(chunk.dictionary) or len(chunk.dictionary) == 0 and i == 0
                       for i in raw.to_pylist())


# ---------------------------------------------------------------------------------------------- property
_TABLES = ("m", "M", "a.b")
_TAGS = ("t", "u", ".t")
_FIELDS = {"v": "i", ".v": "f", "v\x00": "i", "f0": "i", "[0]": "f"}
_TIMES = (-9223372036854775808, -1, 0, 1000, 10**15, 10**15 + 1, 9223372036854775806)


def _lp_value(kind: str, n: int) -> str:
    return f"{n}i" if kind == "i" else f"{n}.5"


_line = st.fixed_dictionaries({
    "table": st.sampled_from(_TABLES),
    "tags": st.dictionaries(st.sampled_from(_TAGS), st.sampled_from(("a", "1", "b")), max_size=3),
    "fields": st.dictionaries(st.sampled_from(tuple(_FIELDS)), st.integers(-3, 3), min_size=1, max_size=3),
    "time": st.sampled_from(_TIMES),
})
_op = st.one_of(st.lists(_line, min_size=1, max_size=4).map(lambda lines: ("write", lines)),
                st.sampled_from(_TABLES).map(lambda t: ("query", t)))


def _render(line: dict[str, Any]) -> str:
    name = line["table"]
    tags = "".join(f",{k}={v}" for k, v in sorted(line["tags"].items()))
    fields = ",".join(f"{k}={_lp_value(_FIELDS[k], v)}" for k, v in line["fields"].items())
    return f"{name}{tags} {fields} {line['time']}"


def _model_value(kind: str, n: int) -> Any:
    return n if kind == "i" else float(f"{n}.5")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op, min_size=1, max_size=40))
def test_engine_random_writes_and_queries_match_the_model(ops: list[tuple[str, Any]]) -> None:
    """Writes of mixed tag sets, odd names (``M``, ``a.b``, ``.v``, ``v\\0``, ``[0]``) and extreme times,
    each query compared with a model: rows with the same table, tag set and time are one row, later fields
    replace earlier ones and fields only in the earlier row stay (reference §7a)."""
    _check_against_model(ops, None)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.one_of(_op, st.just(("restart", None))), min_size=1, max_size=25))
def test_engine_random_writes_snapshots_and_restarts_match_the_model(ops: list[tuple[str, Any]]) -> None:
    """The same with a data directory: Parquet snapshots every few rows (merged with older files and with
    the buffer at query time) and restarts (WAL replay) in between."""
    with tempfile.TemporaryDirectory() as tmp:
        _check_against_model(ops, Path(tmp))


def _check_against_model(ops: list[tuple[str, Any]], data_dir: Path | None) -> None:
    model: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {t: {} for t in _TABLES}

    def start() -> Engine:
        eng = Engine(data_dir, wal_flush_interval=0.005, snapshot_rows=3)
        eng.open()
        return eng

    engine = start()
    try:
        for kind, arg in ops:
            if kind == "restart":
                engine.close()
                engine = start()
                continue
            if kind == "write":
                outcome = engine.write_lp("db", "\n".join(_render(line) for line in arg), precision="ns")
                assert outcome.errors == []
                for line in arg:
                    key = (tuple(sorted(line["tags"].items())), line["time"])
                    row = model[line["table"]].setdefault(key, {**line["tags"], "time": line["time"]})
                    row.update({k: _model_value(_FIELDS[k], v) for k, v in line["fields"].items()})
                continue
            if not model[arg]:
                continue
            got = _rows(engine.query("db", f'SELECT * FROM "{arg}"'))
            want = list(model[arg].values())
            key = lambda r: sorted((k, str(v)) for k, v in r.items())  # noqa: E731
            assert sorted(got, key=key) == sorted(want, key=key)
            count = engine.query("db", f'SELECT count(*) AS n FROM "{arg}"').column("n")[0].as_py()
            assert count == len(want)
    finally:
        engine.close()


# ---------------------------------------------------------------------------------------------- item 2
def test_engine_tables_differing_in_case_or_with_a_dot_are_queried_quoted(engine: Engine) -> None:
    engine.write_lp("db", "m v=1 1\nM v=2 1\na.b v=3 1", precision="s")
    for _ in range(2):  # and again after a restart
        assert _rows(engine.query("db", "SELECT v FROM m")) == [{"v": 1.0}]
        assert _rows(engine.query("db", "SELECT v FROM M")) == [{"v": 1.0}]  # unquoted names fold to lower case
        assert _rows(engine.query("db", 'SELECT v FROM "M"')) == [{"v": 2.0}]
        assert _rows(engine.query("db", 'SELECT v FROM "a.b"')) == [{"v": 3.0}]
        assert sorted(engine.query("db", "SELECT table_name FROM information_schema.tables "
                                         "WHERE table_schema = 'iox'").column(0).to_pylist()) == ["M", "a.b", "m"]
        engine = _reopen(engine)
    engine.close()


def test_engine_table_named_like_a_system_path_is_its_own_table(engine: Engine) -> None:
    engine.write_lp("db", 'q"x v=1 1\nsystem v=2 1', precision="s")
    assert _rows(engine.query("db", 'SELECT v FROM "q""x"')) == [{"v": 1.0}]
    assert _rows(engine.query("db", 'SELECT v FROM "system"')) == [{"v": 2.0}]


# ---------------------------------------------------------------------------------------------- item 3
def test_engine_field_dot_v_is_a_name_not_a_path(engine: Engine) -> None:
    engine.write_lp("db", "m,t=1 v=1i 0\nm .v=5 1000\nm,t=1 v=2i 0", precision="ns")
    assert _rows(engine.query("db", "SELECT * FROM m ORDER BY time")) == [
        {"t": "1", "time": 0, "v": 2}, {".v": 5.0, "time": 1000}]


def test_engine_dot_v_with_max_int_queries_snapshots_and_truncates_the_wal(engine: Engine) -> None:
    engine.write_lp("db", "m,t=1 v=1i 0\nm .v=5 1000\nm,t=1 v=9223372036854775807i 0", precision="ns")
    want = [{"t": "1", "time": 0, "v": 9223372036854775807}, {".v": 5.0, "time": 1000}]
    assert _rows(engine.query("db", "SELECT * FROM m ORDER BY time")) == want
    engine = _reopen(engine)  # close() snapshots: it failed, and the WAL was never truncated
    try:
        assert list((engine.data_dir / "wal").glob("*.wal")) == []
        assert list(engine.data_dir.glob("dbs/*/*/*.parquet"))
        assert _rows(engine.query("db", "SELECT * FROM m ORDER BY time")) == want
    finally:
        engine.close()


# ---------------------------------------------------------------------------------------------- item 4
def test_engine_nul_in_keys_is_kept_as_the_servers_parser_does(engine: Engine) -> None:
    """influxdb_line_protocol ``parse_where_nulls_accepted``: NUL may stand in tag keys and values, field
    keys and string values (not in a measurement); 3.10's catalog adds such columns as they are."""
    outcome = engine.write_lp("db", "m v\x00=1.5 0\nm v=2.5 0\nm,t\x00=a v=1 1", precision="ns")
    assert outcome.errors == [] and outcome.lines_written == 3
    assert _rows(engine.query("db", "SELECT * FROM m ORDER BY time")) == [
        {"time": 0, "v": 2.5, "v\x00": 1.5}, {"t\x00": "a", "time": 1, "v": 1.0}]
    assert _rows(engine.query("db", 'SELECT "v\x00" AS x FROM m WHERE "v\x00" > 1')) == [{"x": 1.5}]
    assert "v\x00" in engine.query("db", "SHOW COLUMNS FROM m").column("column_name").to_pylist()
    bad = engine.write_lp("db", "\x00 f=1 1")
    assert [e.error_message for e in bad.errors] == ["Invalid measurement was provided"]


# ---------------------------------------------------------------------------------------------- item 5
#: DataFusion's ``SQLOptions`` verifier texts, with DDL, DML and statements off as the server plans SQL
#: (iox_query ``exec/context.rs`` ``sql_to_logical_plan``); Plan errors answer 400 (influxdb3_server http.rs)
_REFUSED = {
    "COPY m TO '{out}'": "Error during planning: DML not supported: COPY",
    "COPY (SELECT 1) TO '{out}' STORED AS CSV": "Error during planning: DML not supported: COPY",
    "EXPLAIN COPY m TO '{out}'": "Error during planning: DML not supported: COPY",
    "INSERT INTO m VALUES (2, 0)": "Error during planning: DML not supported: Insert Into",
    "DELETE FROM m": "Error during planning: DML not supported: Delete",
    "DROP TABLE m": "Error during planning: DDL not supported: DropTable",
    "CREATE TABLE x (a INT)": "Error during planning: DDL not supported: CreateMemoryTable",
    "CREATE TABLE x AS SELECT 1": "Error during planning: DDL not supported: CreateMemoryTable",
    "CREATE VIEW x AS SELECT 1": "Error during planning: DDL not supported: CreateView",
    "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '{out}'": "Error during planning: DDL not supported: "
                                                               "CreateExternalTable",
    "SET datafusion.execution.batch_size = 1": "Error during planning: Statement not supported: SetVariable",
}


@pytest.mark.parametrize("sql", list(_REFUSED))
def test_engine_refuses_ddl_dml_copy_and_set(engine: Engine, tmp_path: Path, sql: str) -> None:
    engine.write_lp("db", "m v=1 1", precision="s")
    out = tmp_path / "out.csv"
    with pytest.raises(QueryError) as info:
        engine.query("db", sql.format(out=out))
    assert (info.value.message, info.value.kind) == (_REFUSED[sql], "plan")
    assert not out.exists()
    assert _rows(engine.query("db", "SELECT v FROM m")) == [{"v": 1.0}]  # nothing changed either


def test_plugin_query_refuses_copy(tmp_path: Path) -> None:
    out = tmp_path / "plugin.csv"
    plugin = tmp_path / "copy.py"
    plugin.write_text(textwrap.dedent(f"""
        def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
            try:
                influxdb3_local.query("COPY m TO '{out}'")
            except Exception as exc:
                return {{"error": str(exc)}}
            return {{"error": None}}
        """))
    with PluginHarness(plugin, database="aichat") as h:
        h.write_lp("m v=1 1")
        r = h.request()
    assert r.json() == {"error": f"error: error while planning query: Error during planning: DML not supported: COPY executing query on "
                                 f"aichat: COPY m TO '{out}'"}
    assert not out.exists()


def test_engine_table_with_nul_from_the_table_api_is_queryable(engine: Engine) -> None:
    """The table API takes any name (influxdb3_server ``create_table`` checks the database name only)."""
    engine.create_database("db")
    engine.create_table("db", "a\x00b", ["t"], [{"name": "f\x00", "type": "int64"}])
    assert engine.query("db", 'SELECT * FROM "a\x00b"').column_names == ["f\x00", "t", "time"]
    tables = engine.query("db", "SHOW TABLES").to_pylist()
    assert "a\x00b" in [r["table_name"] for r in tables if r["table_schema"] == "iox"]
    with pytest.raises(QueryError) as info:
        engine.query("db", 'SELECT * FROM "x\x00y"')
    assert info.value.message == "Error during planning: table 'public.iox.x\x00y' not found"
