"""Engine durability in-process: WAL replay after a crash, torn WAL tails, Parquet snapshots."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from emulator.engine import Engine
from emulator.errors import ApiError
from emulator.wal import MAGIC


def open_engine(data_dir: Path, **kwargs: Any) -> Engine:
    eng = Engine(data_dir, wal_flush_interval=0.01, **kwargs)
    eng.open()
    return eng


def crash(eng: Engine) -> None:
    """Stop the flusher without the orderly close (no final flush, no snapshot): like kill -9
    after the last acknowledged write."""
    eng._stop.set()
    eng._wake.set()
    assert eng._flusher is not None
    eng._flusher.join()


def values(eng: Engine, db: str, sql: str) -> list[dict[str, Any]]:
    table = eng.query(db, sql)
    if "time" in table.column_names:
        idx = table.column_names.index("time")
        table = table.set_column(idx, "time", table.column("time").cast(pa.int64()))
    return table.to_pylist()


def test_engine_durability_acknowledged_write_survives_crash(tmp_path: Path) -> None:
    eng = open_engine(tmp_path)
    eng.write_lp("db1", "cpu,host=a usage=1.5 1\ncpu,host=b usage=2.5 1", precision="s")
    eng.write_lp("db1", "cpu,host=a usage=9.0 1", precision="s")
    crash(eng)
    again = open_engine(tmp_path)
    try:
        assert values(again, "db1", "SELECT host, usage FROM cpu ORDER BY host") == [
            {"host": "a", "usage": 9.0},
            {"host": "b", "usage": 2.5},
        ]
    finally:
        again.close()


def test_engine_durability_torn_wal_tail_is_ignored(tmp_path: Path) -> None:
    eng = open_engine(tmp_path)
    eng.write_lp("db1", "m f=1i 1", precision="s")
    eng.write_lp("db1", "m f=2i 2", precision="s")
    crash(eng)
    wal_files = sorted((tmp_path / "wal").iterdir())
    assert len(wal_files) == 2
    last = wal_files[-1]
    last.write_bytes(last.read_bytes()[:-3])  # crash in the middle of the last frame
    (tmp_path / "wal" / "99999999999999999999.wal").write_bytes(MAGIC[:5])  # crash inside the header
    again = open_engine(tmp_path)
    try:
        assert values(again, "db1", "SELECT f FROM m") == [{"f": 1}]
        again.write_lp("db1", "m f=3i 3", precision="s")  # and it keeps working
        assert values(again, "db1", "SELECT f FROM m ORDER BY f") == [{"f": 1}, {"f": 3}]
    finally:
        again.close()


def test_engine_durability_snapshot_restart_same_result(tmp_path: Path) -> None:
    eng = open_engine(tmp_path, snapshot_rows=50)
    body = "\n".join(f"m,host=h{i % 5} v={i}i {i}" for i in range(40))
    eng.write_lp("db1", body, precision="s")
    eng.write_lp("db1", "\n".join(f"m,host=h{i % 5} v={i}i,w=1.0 {i}" for i in range(30, 60)), precision="s")
    eng.flush_now()
    eng.flush_now()  # the flush after the threshold snapshots
    files = list((tmp_path / "dbs").rglob("*.parquet"))
    assert len(files) == 1
    assert list((tmp_path / "wal").iterdir()) == []
    sql = "SELECT count(*) AS n, sum(v) AS s, count(w) AS w FROM m"
    before = values(eng, "db1", sql)
    assert before == [{"n": 60, "s": sum(range(60)), "w": 30}]
    eng.write_lp("db1", "m,host=h0 v=1000i 0", precision="s")  # overlaps the snapshot: dedup across both
    assert values(eng, "db1", "SELECT v FROM m WHERE time = '1970-01-01T00:00:00'") == [{"v": 1000}]
    crash(eng)
    again = open_engine(tmp_path, snapshot_rows=50)
    try:
        assert values(again, "db1", "SELECT v FROM m WHERE time = '1970-01-01T00:00:00'") == [{"v": 1000}]
        assert values(again, "db1", sql) == [{"n": 60, "s": sum(range(60)) + 1000, "w": 30}]
    finally:
        again.close()
    reopened = open_engine(tmp_path)  # close() snapshotted again: nothing left in the WAL
    try:
        assert list((tmp_path / "wal").iterdir()) == []
        assert values(reopened, "db1", sql) == [{"n": 60, "s": sum(range(60)) + 1000, "w": 30}]
    finally:
        reopened.close()


def test_engine_durability_catalog_survives_restart(tmp_path: Path) -> None:
    eng = open_engine(tmp_path)
    eng.create_database("keep", retention_period=None)
    eng.create_table("keep", "t", ["a"], [{"name": "f", "type": "uint64"}])
    eng.catalog.put_trigger("keep", "trig", {"plugin_filename": "p.py", "disabled": False})
    eng.catalog.put_token({"name": "_admin", "hash": "ab" * 64})
    crash(eng)
    again = open_engine(tmp_path)
    try:
        assert again.catalog.table_schema("keep", "t") == {"tags": ["a"], "fields": {"f": "uint64"}}
        assert again.catalog.list_triggers("keep") == [
            ("keep", "trig", {"plugin_filename": "p.py", "disabled": False})]
        assert again.catalog.get_token_by_hash("ab" * 64) == {"name": "_admin", "hash": "ab" * 64}
        assert values(again, "keep", "SELECT * FROM t") == []
    finally:
        again.close()


def test_engine_durability_memory_only_writes_no_files(tmp_path: Path) -> None:
    eng = Engine(None, wal_flush_interval=0.01)
    eng.open()
    try:
        eng.write_lp("db1", "m f=1i 1", precision="s")
        assert values(eng, "db1", "SELECT f FROM m") == [{"f": 1}]
    finally:
        eng.close()
    assert list(tmp_path.iterdir()) == []


def test_engine_durability_replays_both_wal_formats(tmp_path: Path) -> None:
    """Format 2 holds column entries (one-shape bodies) and row entries; format 1 files (row entries
    only) written before it are still replayed."""
    import marshal

    from emulator.wal import MAGIC_V1, entry_rows, read_wal_file

    eng = open_engine(tmp_path)
    eng.write_lp("db1", "cpu,host=a u=1.5,n=1i 1\ncpu,host=b u=2.5,n=2i 2", precision="s")  # one shape
    eng.write_lp("db1", "cpu,host=c u=3.5 3\ncpu,host=d n=4i 4", precision="s")  # two shapes
    crash(eng)
    files = sorted((tmp_path / "wal").iterdir())
    first = read_wal_file(files[0], 1)
    assert [len(e) for e in first.entries] == [5]  # a column entry
    assert [len(e) for e in read_wal_file(files[1], 2).entries] == [4, 4]
    # rewrite the first file in format 1 (row entries)
    v1 = [(e[0], e[1], e[2], list(entry_rows(e))) for e in first.entries]
    payload = marshal.dumps(v1, 4)
    files[0].write_bytes(MAGIC_V1 + struct.pack(">II", len(payload), zlib.crc32(payload)) + payload)
    again = open_engine(tmp_path)
    try:
        assert values(again, "db1", "SELECT host, n, u, time FROM cpu ORDER BY host") == [
            {"host": "a", "n": 1, "u": 1.5, "time": 1_000_000_000},
            {"host": "b", "n": 2, "u": 2.5, "time": 2_000_000_000},
            {"host": "c", "n": None, "u": 3.5, "time": 3_000_000_000},
            {"host": "d", "n": 4, "u": None, "time": 4_000_000_000},
        ]
    finally:
        again.close()


def test_engine_durability_snapshot_and_newer_rows_in_its_time_range(tmp_path: Path) -> None:
    """Rows written after a snapshot, inside its time range: a row with the same tags and time replaces
    the file's fields one by one; the others are kept (the storage checks only the common time range)."""
    eng = open_engine(tmp_path)
    try:
        eng.write_lp("db1", "m,h=a f=1i,g=1i 10\nm,h=b f=2i 20\nm,h=a f=3i 30", precision="ns")
        eng._snapshot()
        assert eng.storage.buffered_rows == 0
        eng.write_lp("db1", "m,h=c f=4i 20\nm,h=a f=5i 25\nm,h=z f=9i 99", precision="ns")  # no clash
        assert values(eng, "db1", "SELECT h, f, g, time FROM m ORDER BY time, h") == [
            {"h": "a", "f": 1, "g": 1, "time": 10}, {"h": "b", "f": 2, "g": None, "time": 20},
            {"h": "c", "f": 4, "g": None, "time": 20}, {"h": "a", "f": 5, "g": None, "time": 25},
            {"h": "a", "f": 3, "g": None, "time": 30}, {"h": "z", "f": 9, "g": None, "time": 99},
        ]
        eng.write_lp("db1", "m,h=a f=7i 10", precision="ns")  # same tags and time as a file row
        assert values(eng, "db1", "SELECT h, f, g, time FROM m ORDER BY time, h")[0] == {
            "h": "a", "f": 7, "g": 1, "time": 10}
        assert values(eng, "db1", "SELECT count(*) AS n FROM m") == [{"n": 6}]
    finally:
        eng.close()


def test_engine_durability_writes_after_a_clean_restart_survive_a_crash(tmp_path: Path) -> None:
    # close() snapshots and deletes every WAL file; the next run's WAL files must still be numbered
    # above the sequence the snapshot covers, or replay skips acknowledged writes after a crash
    eng = open_engine(tmp_path)
    for i in range(3):
        eng.write_lp("db1", f"m f={i}i {i}", precision="s")
    eng.close()
    assert not list((tmp_path / "wal").iterdir())
    again = open_engine(tmp_path)
    again.write_lp("db1", "m f=10i 10", precision="s")
    crash(again)
    third = open_engine(tmp_path)
    try:
        assert values(third, "db1", "SELECT f FROM m ORDER BY f") == [{"f": 0}, {"f": 1}, {"f": 2}, {"f": 10}]
    finally:
        third.close()


def test_engine_durability_snapshot_after_restart_keeps_later_wal(tmp_path: Path) -> None:
    # a snapshot taken in the second run covers its own WAL files; rows written after it survive a crash
    eng = open_engine(tmp_path)
    for i in range(5):
        eng.write_lp("db1", f"m f={i}i {i}", precision="s")  # one WAL file each
    eng.close()
    again = open_engine(tmp_path, snapshot_rows=3)
    again.write_lp("db1", "\n".join(f"m f={i}i {i}" for i in range(5, 10)), precision="s")
    again.flush_now()  # the flush after the threshold snapshots
    again.write_lp("db1", "m f=100i 100", precision="s")
    crash(again)
    third = open_engine(tmp_path)
    try:
        assert [r["f"] for r in values(third, "db1", "SELECT f FROM m ORDER BY f")] == [*range(10), 100]
    finally:
        third.close()


def test_engine_durability_query_racing_a_snapshot_merge(tmp_path: Path) -> None:
    # a query that listed a table's Parquet files just before a snapshot merged them into a new file
    # (and removed the old ones) must still answer, not fail on the removed file
    eng = open_engine(tmp_path)
    try:
        eng.write_lp("db1", "m,t=a f=1i 1\nm,t=a f=2i 3", precision="s")
        eng._snapshot()  # file 1 holds times 1..3
        eng.write_lp("db1", "m,t=a g=5i 2", precision="s")  # overlaps file 1: the next snapshot merges
        real = eng.storage._with_files
        raced: list[bool] = []

        def snapshot_first(*args: Any, **kwargs: Any) -> pa.Table:
            if not raced:
                raced.append(True)
                eng._snapshot()  # merges file 1 away and deletes it
            return real(*args, **kwargs)

        eng.storage._with_files = snapshot_first  # type: ignore[method-assign]
        got = values(eng, "db1", "SELECT f, g, time FROM m ORDER BY time")
        assert raced
        assert got == [{"f": 1, "g": None, "time": 1_000_000_000}, {"f": None, "g": 5, "time": 2_000_000_000},
                       {"f": 2, "g": None, "time": 3_000_000_000}]
    finally:
        eng.close()


def test_engine_durability_snapshot_concurrent_with_writes_adding_columns(tmp_path: Path, caplog: Any) -> None:
    import logging
    import sys
    import threading

    eng = open_engine(tmp_path, snapshot_rows=0)  # every flush snapshots
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with caplog.at_level(logging.ERROR, logger="emulator.engine"):
            eng.write_lp("db1", "m " + ",".join(f"f{i}=1i" for i in range(100)) + " 1", precision="s")

            def writer(offset: int) -> None:
                for i in range(offset, offset + 150, 2):
                    eng.write_lp("db1", f"m f{i}=1i {i}", precision="s", no_sync=True)

            threads = [threading.Thread(target=writer, args=(100 + k,)) for k in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            eng.flush_now()
        assert [r.getMessage() for r in caplog.records] == []
    finally:
        sys.setswitchinterval(old)
        eng.close()


def test_engine_durability_batch_that_failed_to_apply_is_replayed_not_snapshotted_away(tmp_path: Path) -> None:
    eng = Engine(tmp_path, wal_flush_interval=0.01)
    eng.open()
    eng.write_lp("db1", "m f=1i 1", precision="s")
    real_apply = eng.storage.apply
    failures = []

    def apply_failing_once(*entry: Any) -> Any:
        if not failures:
            failures.append(entry)
            raise RuntimeError("out of memory while applying")
        return real_apply(*entry)

    eng.storage.apply = apply_failing_once  # the WAL file is durable; applying it in memory fails
    with pytest.raises(ApiError) as err:
        eng.write_lp("db1", "m f=2i 2", precision="s")
    assert err.value.status == 500
    eng.storage.apply = real_apply
    eng.write_lp("db1", "m f=3i 3", precision="s")
    eng.close()  # the final snapshot must not cover (and delete) the WAL file that was never applied
    again = Engine(tmp_path, wal_flush_interval=0.01)
    again.open()
    try:
        assert again.query("db1", "SELECT f FROM m ORDER BY time").to_pylist() == [{"f": 1}, {"f": 2}, {"f": 3}]
    finally:
        again.close()
