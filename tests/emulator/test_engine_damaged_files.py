"""Damaged data files at startup (issue 9 item 7).

A crash before a WAL file's fsync can leave the newest file zero-filled, with a foreign header, cut to its
8-byte header or cut inside its frame: its rows were never acknowledged as durable, so startup skips it
with a warning that counts them. A damaged file with an intact one after it, or a damaged catalog or
snapshot manifest, held acknowledged data: startup stops with one line naming the file and the byte
offset, and ``--repair-damaged-files`` moves it aside, logs the rows lost and starts.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from emulator.engine import Engine
from emulator.errors import DamagedFileError
from emulator.wal import MAGIC
from tests.support import REPO_ROOT, free_port, start_server


def open_engine(data_dir: Path, **kwargs: Any) -> Engine:
    eng = Engine(data_dir, wal_flush_interval=0.005, **kwargs)
    eng.open()
    return eng


def crash(eng: Engine) -> None:
    """Stop the flusher with no final flush or snapshot (kill -9 after the last acknowledged write)."""
    eng._stop.set()
    eng._wake.set()
    assert eng._flusher is not None
    eng._flusher.join()


def three_files(data_dir: Path) -> list[Path]:
    """Three WAL files of one database: m v=1 (2 rows), m v=2 (1 row), m v=3 (1 row); then a crash."""
    eng = open_engine(data_dir)
    eng.write_lp("db1", "m,t=a v=1i 1\nm,t=b v=1i 1", precision="s")
    eng.write_lp("db1", "m,t=a v=2i 2", precision="s")
    eng.write_lp("db1", "m,t=a v=3i 3", precision="s")
    crash(eng)
    files = sorted((data_dir / "wal").glob("*.wal"))
    assert len(files) == 3
    return files


def v_values(eng: Engine) -> list[int]:
    return [r["v"] for r in eng.query("db1", "SELECT v FROM m ORDER BY time, t").to_pylist()]


def set_aside_files(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "damaged").rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data: b"\0" * len(data), "bytes are zero"),
        (lambda data: b"NOTAWAL!" + data[8:], "not a WAL file header"),
        (lambda data: data[:8], "no frame after the header"),
        (lambda data: data[:-5], "frame cut short"),
    ],
    ids=["zero-filled", "bad-magic", "cut-to-header", "cut-in-frame"],
)
def test_damaged_newest_wal_file_is_skipped_with_a_warning(tmp_path: Path, caplog: Any, damage: Any,
                                                          reason: str) -> None:
    files = three_files(tmp_path)
    files[-1].write_bytes(damage(files[-1].read_bytes()))
    with caplog.at_level(logging.WARNING, logger="emulator.wal"):
        eng = open_engine(tmp_path)
    assert v_values(eng) == [1, 1, 2]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert str(files[-1]) in warnings[0] and reason in warnings[0]
    assert "never acknowledged as durable" in warnings[0]
    assert ("(1 row lost)" if reason == "frame cut short" else "(an unknown number of rows lost)") in warnings[0]
    assert set_aside_files(tmp_path) == [files[-1].name]
    eng.write_lp("db1", "m,t=a v=4i 4", precision="s")  # the next file does not make it a middle file
    crash(eng)
    assert len(list((tmp_path / "wal").glob("*.wal"))) == 3
    again = open_engine(tmp_path)
    try:
        assert v_values(again) == [1, 1, 2, 4]
    finally:
        again.close()


def test_damaged_middle_wal_file_stops_then_repair_moves_it_aside(tmp_path: Path, caplog: Any) -> None:
    files = three_files(tmp_path)
    data = bytearray(files[0].read_bytes())
    data[-3] ^= 0xFF  # bit rot in the payload of an acknowledged flush
    files[0].write_bytes(bytes(data))
    with pytest.raises(DamagedFileError) as info:
        open_engine(tmp_path)
    assert str(info.value) == (f"{files[0]} is damaged at byte {len(MAGIC)} (frame checksum mismatch); "
                               "it holds 2 acknowledged rows")
    assert files[0].exists()  # nothing moved without the flag
    with caplog.at_level(logging.ERROR, logger="emulator.wal"):
        eng = open_engine(tmp_path, repair_damaged_files=True)
    try:
        assert v_values(eng) == [2, 3]
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and str(files[0]) in errors[0]
        assert "lost 2 rows acknowledged by the server" in errors[0]
        assert set_aside_files(tmp_path) == [files[0].name]
    finally:
        eng.close()


def test_truncated_catalog_stops_then_repair_starts_empty(tmp_path: Path, caplog: Any) -> None:
    eng = open_engine(tmp_path)
    eng.write_lp("db1", "m,t=a v=1i 1\nm,t=b v=1i 1", precision="s")
    eng.close()  # snapshot: 2 rows in Parquet
    eng = open_engine(tmp_path)
    eng.write_lp("db1", "m,t=a v=2i 2", precision="s")
    crash(eng)  # 1 row in the WAL
    catalog = tmp_path / "catalog.json"
    text = catalog.read_bytes()
    catalog.write_bytes(text[:40])
    with pytest.raises(DamagedFileError) as info:
        Engine(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{catalog} is damaged at byte {info.value.offset} (invalid JSON: ")
    assert 30 <= info.value.offset <= 40 and message.endswith("; the file has 40 bytes)")
    with caplog.at_level(logging.ERROR, logger="emulator.engine"):
        eng = open_engine(tmp_path, repair_damaged_files=True)
    try:
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "2 rows in Parquet files and 1 row in the WAL" in errors[0]
        assert [d["iox::database"] for d in eng.list_databases()] == ["_internal"]
        eng.write_lp("db2", "m,t=a v=7i 1", precision="s")  # new ids never meet the old files
        assert eng.query("db2", "SELECT v FROM m").to_pylist() == [{"v": 7}]
    finally:
        eng.close()
    moved = {p.relative_to(next((tmp_path / "damaged").iterdir())).parts[0]
             for p in (tmp_path / "damaged").rglob("*") if p.is_file()}
    assert moved == {"catalog.json", "snapshots.json", "dbs", "wal"}


def test_damaged_snapshot_manifest_stops_then_repair_replays_the_wal(tmp_path: Path, caplog: Any) -> None:
    eng = open_engine(tmp_path, snapshotted_wal_files_to_keep=5)
    eng.write_lp("db1", "m,t=a v=1i 1", precision="s")
    eng.close()  # Parquet + the covered WAL file kept
    (tmp_path / "snapshots.json").write_text("[]")
    with pytest.raises(DamagedFileError, match=r"snapshots\.json is damaged at byte 0 \(not a JSON object\)"):
        Engine(tmp_path)
    with caplog.at_level(logging.ERROR, logger="emulator.engine"):
        eng = open_engine(tmp_path, repair_damaged_files=True)
    try:
        assert "lost 1 row in them" in caplog.text
        assert v_values(eng) == [1]  # the kept WAL file still had it
    finally:
        eng.close()


def test_failed_wal_append_leaves_no_partial_file(tmp_path: Path, monkeypatch: Any) -> None:
    eng = open_engine(tmp_path)
    eng.write_lp("db1", "m v=1i 1", precision="s")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(Exception, match="No space left on device"):
        eng.write_lp("db1", "m v=2i 2", precision="s")
    monkeypatch.undo()
    eng.write_lp("db1", "m v=3i 3", precision="s")
    crash(eng)
    assert len(list((tmp_path / "wal").glob("*.wal"))) == 2  # the failed flush left nothing behind
    again = open_engine(tmp_path)
    try:
        assert [r["v"] for r in again.query("db1", "SELECT v FROM m ORDER BY time").to_pylist()] == [1, 3]
    finally:
        again.close()


def test_server_damaged_wal_one_line_error_then_repair_flag_starts(tmp_path: Path) -> None:
    with start_server(tmp_path / "first") as srv:
        for i in range(3):
            r = srv.session.post(f"{srv.url}/api/v3/write_lp?db=db1", data=f"m,t=a v={i}i {i}")
            assert r.status_code == 204
        srv.kill9()
    data_dir = tmp_path / "first" / "data"
    files = sorted((data_dir / "wal").glob("*.wal"))
    data = bytearray(files[1].read_bytes())
    data[-1] ^= 0xFF
    files[1].write_bytes(bytes(data))
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB3_")}
    args = [sys.executable, "-m", "emulator", "serve", "--node-id", "t", "--data-dir", str(data_dir),
            "--without-auth", "--http-bind", f"127.0.0.1:{free_port()}"]
    proc = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"{files[1]} is damaged at byte 8 (frame checksum mismatch); it holds 1 acknowledged row" in lines[0]
    assert "--repair-damaged-files" in lines[0]
    with start_server(tmp_path / "first", extra_args=["--repair-damaged-files"]) as srv:
        r = srv.session.get(f"{srv.url}/api/v3/query_sql", params={"db": "db1", "q": "SELECT v FROM m ORDER BY v"})
        assert r.json() == [{"v": 0}, {"v": 2}]
    log_text = (tmp_path / "first" / "server.log").read_text()
    assert "lost 1 row acknowledged by the server" in log_text
