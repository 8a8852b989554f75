"""Measure the storage core in-process: write/flush rates and GROUP BY latency over 1M rows.

Usage: ``.venv/bin/python bench/query_groupby.py [--rows 1000000] [--batch 10000] [--data-dir DIR]``

Prints:
* validate+queue rate (``Engine.write_lp`` with ``no_sync=True``: parse, schema check, queue),
* flush apply rate (WAL write + fsync + buffer append, measured on the flusher),
* first-query materialisation time (Arrow build + dedup check),
* p50/p95 of ``SELECT host, avg(usage_user) FROM cpu GROUP BY host`` over the rows (cached tables).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from emulator.engine import Engine

BASE_NS = 1_700_000_000_000_000_000


def make_batch(start: int, count: int) -> str:
    """``count`` lines of 3 tags and 8 fields, one per series per second (no duplicates)."""
    lines = []
    for i in range(start, start + count):
        host = f"host{i % 100}"
        region = f"region{i % 7}"
        ts = BASE_NS + (i // 100) * 1_000_000_000
        lines.append(
            f"cpu,host={host},region={region},dc=dc{i % 3} usage_user={i % 97 * 0.5},usage_system={i % 13 * 0.25},"
            f"usage_idle=80.5,usage_iowait=0.5,usage_irq=0.1,usage_nice=0.0,count={i}i,ok=true {ts}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--data-dir", type=Path, default=None)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp)
        engine = Engine(data_dir, wal_flush_interval=0.1, snapshot_rows=args.rows + 1)
        engine.open()
        bodies = [make_batch(s, min(args.batch, args.rows - s)) for s in range(0, args.rows, args.batch)]

        flush_times: list[float] = []
        original = engine._flush_once

        def timed_flush() -> None:
            t = time.perf_counter()
            original()
            flush_times.append(time.perf_counter() - t)

        engine._flush_once = timed_flush  # type: ignore[method-assign]

        t0 = time.perf_counter()
        for body in bodies:
            engine.write_lp("bench", body, no_sync=True)
        t_write = time.perf_counter() - t0
        engine.flush_now()
        engine.flush_now()
        print(f"write_lp (parse+validate+queue): {args.rows / t_write:,.0f} lines/s ({t_write:.2f} s)")
        busy = sum(flush_times)
        print(f"flush apply (WAL+fsync+append): {args.rows / busy:,.0f} rows/s ({busy:.2f} s in "
              f"{len(flush_times)} flushes)")

        sql = "SELECT host, avg(usage_user) FROM cpu GROUP BY host"
        t0 = time.perf_counter()
        first = engine.query("bench", sql)
        print(f"first query (materialise {args.rows:,} rows): {(time.perf_counter() - t0) * 1000:.0f} ms, "
              f"{first.num_rows} groups")
        samples = []
        for _ in range(args.queries):
            t0 = time.perf_counter()
            engine.query("bench", sql)
            samples.append((time.perf_counter() - t0) * 1000)
        samples.sort()
        p95 = samples[int(len(samples) * 0.95) - 1]
        print(f"GROUP BY over {args.rows:,} rows: p50 {statistics.median(samples):.1f} ms, p95 {p95:.1f} ms")
        engine.close()


if __name__ == "__main__":
    main()
