"""Memory (issue 9 item 10): buffered rows are held as Arrow, not as Python objects; the queue of rows
waiting for a flush is bounded; ``serve`` sets allocators that hand freed memory back. The figures (RSS per
million rows) come from ``bench/ingest.py``; these tests pin the behaviours that produce them."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from emulator.engine import FLUSH_EARLY_ROWS, Engine
from tests.support import REPO_ROOT


def bench_lines(n: int, start: int = 0) -> str:
    """Lines of bench/ingest.py's shape: 3 tags, 8 fields."""
    return "\n".join(
        f"bench,host=h{i % 100},region=r{i % 7},dc=d{i % 3} f0={i % 1000}.5,f1={i % 97}.25,f2={i}i,f3={i % 11}i,"
        f'f4={i % 13}.0,f5={i % 17}i,f6="s{i % 5}",f7={"true" if i % 2 else "false"} {1_600_000_000 + i}'
        for i in range(start, start + n))


def test_memory_flushed_rows_are_held_as_arrow_not_python_objects(tmp_path: Path) -> None:
    eng = Engine(tmp_path, wal_flush_interval=0.005)
    eng.open()
    try:
        body = bench_lines(20_000)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            eng.write_lp("db1", body, precision="s")
            eng.flush_now()  # the flusher converts a flush's rows before it takes the next one
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        # as Python values the 240,000 values took about 10 MB; as Arrow they are outside the Python heap
        assert held < 1_500_000, held
        rows = eng.query("db1", "SELECT count(*) AS n, sum(f2) AS s, count(DISTINCT host) AS h FROM bench")
        assert rows.to_pylist() == [{"n": 20_000, "s": sum(range(20_000)), "h": 100}]
    finally:
        eng.close()


def test_memory_a_large_queue_flushes_before_the_interval(tmp_path: Path) -> None:
    # a 60 s flush interval: only the queue bound can make this no_sync write durable within seconds
    eng = Engine(tmp_path, wal_flush_interval=60.0)
    eng.open()
    try:
        eng.write_lp("db1", bench_lines(FLUSH_EARLY_ROWS + 1), precision="s", no_sync=True)
        deadline = time.monotonic() + 20
        while not list((tmp_path / "wal").glob("*.wal")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list((tmp_path / "wal").glob("*.wal"))
    finally:
        eng.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_memory_serve_caps_malloc_arenas() -> None:
    code = "from emulator.memory import configure_process_memory as c; print(c())"
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "malloc arenas 2" in out and "mmap threshold 128 KiB" in out
    env["MALLOC_ARENA_MAX"] = "4"  # the operator's setting wins
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "malloc arenas" not in out
