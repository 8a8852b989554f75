"""Bounded WAL (issue 9 item 8): snapshots by WAL file count and age, as the server's snapshot tracker
decides them (influxdb3_wal/src/snapshot_tracker.rs), so writes that keep overwriting the same rows still
get their WAL truncated; and the ``serve`` flags that set it, with the server's names and defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.config import ConfigError, parse_serve_args
from emulator.engine import Engine
from emulator.wal import SnapshotTracker, WalPeriod

MINUTE = 60 * 1_000_000_000


def wal_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "wal").glob("*.wal"))


def test_wal_bounds_overwriting_the_same_row_still_truncates_the_wal(tmp_path: Path) -> None:
    # 40 synced writes of one row (same series, same time): the buffer never grows, so only the WAL file
    # count can call for a snapshot; with size 2 the tracker forces one at 3 * 2 waiting files
    eng = Engine(tmp_path, wal_flush_interval=0.005, wal_snapshot_size=2, snapshotted_wal_files_to_keep=1)
    eng.open()
    most = 0
    try:
        for i in range(40):
            eng.write_lp("db1", f"m,t=a v={i}i 1000", precision="s")
            most = max(most, len(wal_files(tmp_path)))
        assert most <= 3 * 2 + 1  # waiting files + the one snapshotted file kept
        assert list((tmp_path / "dbs").rglob("*.parquet"))
        assert eng.query("db1", "SELECT v FROM m").to_pylist() == [{"v": 39}]
    finally:
        eng.close()
    again = Engine(tmp_path, wal_flush_interval=0.005)
    again.open()
    try:
        assert again.query("db1", "SELECT v FROM m").to_pylist() == [{"v": 39}]
    finally:
        again.close()


def test_wal_bounds_snapshot_keeps_the_newest_snapshotted_files(tmp_path: Path) -> None:
    eng = Engine(tmp_path, wal_flush_interval=0.005, snapshotted_wal_files_to_keep=3)
    eng.open()
    for i in range(6):
        eng.write_lp("db1", f"m v={i}i {i}", precision="s")
    eng.close()  # snapshots everything; the 3 newest covered files stay, the others go
    assert [int(p.stem) for p in wal_files(tmp_path)] == [4, 5, 6]
    again = Engine(tmp_path, wal_flush_interval=0.005)
    again.open()  # covered files are not replayed (or the count below would be off)
    try:
        assert again.query("db1", "SELECT count(*) AS n FROM m").to_pylist() == [{"n": 6}]
        again.write_lp("db1", "m v=9i 9", precision="s")
        assert int(wal_files(tmp_path)[-1].stem) == 7
    finally:
        again.close()


def period(seq: int, lo_min: float, hi_min: float) -> WalPeriod:
    return WalPeriod(seq, int(lo_min * MINUTE), int(hi_min * MINUTE))


def test_wal_bounds_tracker_waits_for_one_and_a_half_times_the_size() -> None:
    # the server's `snapshot` test case: size 2, gen1 1m
    tracker = SnapshotTracker(2, MINUTE)
    tracker.add(period(1, 0, 1))
    assert not tracker.should_snapshot()
    tracker.add(period(2, 0.0133, 1.998))
    assert not tracker.should_snapshot()  # 2 < 2 + 1
    tracker.add(period(3, 1.01, 2.015))
    assert tracker.should_snapshot()  # file 1 ends before 2m, the newest max time rounded down to 1m


def test_wal_bounds_tracker_age_and_forced_snapshot() -> None:
    tracker = SnapshotTracker(2, 10 * MINUTE)
    for seq in range(1, 6):  # every file holds the same minute: nothing has aged into a closed window
        tracker.add(period(seq, 1, 1))
        assert not tracker.should_snapshot()
    tracker.add(period(6, 1, 1))
    assert tracker.should_snapshot()  # 3 * size files waiting: forced
    tracker.clear()
    tracker.add(period(7, 1, 1))
    assert not tracker.should_snapshot()
    # data older than the newest file's 10m window: snapshot at 1.5 * size files
    aged = SnapshotTracker(2, 10 * MINUTE)
    for seq, (lo, hi) in enumerate([(1, 2), (11, 12), (21, 22)], start=1):
        aged.add(period(seq, lo, hi))
    assert aged.should_snapshot()


def test_wal_bounds_serve_flags_defaults_env_and_errors() -> None:
    cfg = parse_serve_args(["serve", "--node-id", "n"], {})
    assert (cfg.wal_snapshot_size, cfg.gen1_duration_s, cfg.snapshotted_wal_files_to_keep) == (600, 600, 300)
    cfg = parse_serve_args(["serve", "--node-id", "n"], {"INFLUXDB3_WAL_SNAPSHOT_SIZE": "10",
                                                          "INFLUXDB3_GEN1_DURATION": "1m",
                                                          "INFLUXDB3_NUM_WAL_FILES_TO_KEEP": "0"})
    assert (cfg.wal_snapshot_size, cfg.gen1_duration_s, cfg.snapshotted_wal_files_to_keep) == (10, 60, 0)
    cfg = parse_serve_args(["serve", "--node-id", "n", "--wal-snapshot-size", "7", "--gen1-duration", "5m",
                            "--snapshotted-wal-files-to-keep", "2"], {"INFLUXDB3_WAL_SNAPSHOT_SIZE": "10"})
    assert (cfg.wal_snapshot_size, cfg.gen1_duration_s, cfg.snapshotted_wal_files_to_keep) == (7, 300, 2)
    with pytest.raises(ConfigError, match=r"^invalid value '2m' for '--gen1-duration <GEN1_DURATION>': "
                                          r"invalid gen1 duration 2m\. Must be one of 1m, 5m, 10m$"):
        parse_serve_args(["serve", "--node-id", "n", "--gen1-duration", "2m"], {})
    with pytest.raises(ConfigError, match=r"^invalid value '-1' for '--wal-snapshot-size <WAL_SNAPSHOT_SIZE>': "
                                          r"invalid digit found in string$"):
        parse_serve_args(["serve", "--node-id", "n", "--wal-snapshot-size", "-1"], {})
