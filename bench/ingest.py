"""Ingest and GROUP BY benchmark for the embedded engine (issue 2 item 11). Prints figures; not a test.

    .venv/bin/python bench/ingest.py [--writers 16] [--seconds 10] [--flush 1s] [--rows 1000000]

Starts ``python -m emulator serve`` (file object store, temp dir) on a loopback port, then:
1. N concurrent writers POST 10,000-line batches (3 tags, 8 fields) for ``--seconds`` with no_sync=false,
   then again with no_sync=true, and prints lines/s for each;
2. loads ``--rows`` rows (no_sync=true, then one synced write) and prints p50/p95 latency of a GROUP BY over them;
3. prints the server's RSS per million rows held (issue 9 item 10: under 400 MiB), a restart's time;
4. an overwrite run on a fresh server (``--overwrite-seconds``, 100 ms flush): one writer rewrites the same
   series and time, and the WAL files left show that count-based snapshots truncate the WAL (issue 9 item 8).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support import start_server  # noqa: E402

BATCH = 10_000
HOSTS = 100


TABLE = "bench"


def make_batch(seed: int, base_ns: int) -> bytes:
    """10,000 lines, tags host/region/dc, 8 fields, distinct timestamps per batch."""
    lines = []
    for i in range(BATCH):
        n = seed * BATCH + i
        lines.append(
            f"bench,host=h{n % HOSTS},region=r{n % 7},dc=d{n % 3} "
            f"f0={n % 1000}.5,f1={n % 97}.25,f2={n}i,f3={n % 11}i,f4={n % 13}.0,f5={n % 17}i,"
            f'f6="s{n % 5}",f7={"true" if n % 2 else "false"} {base_ns + n}'
        )
    return ("\n".join(lines) + "\n").encode()


def ingest(url: str, db: str, writers: int, seconds: float, no_sync: bool, seed0: int) -> tuple[int, float]:
    """Run writers for ``seconds``; returns (lines acknowledged, elapsed)."""
    counter = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    failures: list[str] = []

    def work(w: int) -> None:
        s = requests.Session()
        k = 0
        while time.monotonic() < stop:
            body = make_batch(seed0 + w * 10_000 + k, 1_700_000_000_000_000_000)
            r = s.post(f"{url}/api/v3/write_lp?db={db}&no_sync={'true' if no_sync else 'false'}", data=body, timeout=120)
            if r.status_code != 204:
                failures.append(f"{r.status_code} {r.text[:200]}")
                return
            with lock:
                counter[0] += BATCH
            k += 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit(f"write failed: {failures[0]}")
    return counter[0], time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--writers", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--flush", default="1s", help="--wal-flush-interval for the server (default 1s)")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--overwrite-seconds", type=float, default=15.0)
    ap.add_argument("--overwrite-snapshot-size", type=int, default=20,
                    help="--wal-snapshot-size for the overwrite run (the server's 600 needs 3 minutes at 100 ms)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp, start_server(Path(tmp), wal_flush_interval=args.flush) as srv:
        print(f"server {srv.url} flush={args.flush} writers={args.writers} batch={BATCH} lines")
        empty_rss, _ = server_memory_mib(srv.pid)
        for no_sync, db in ((False, "bench_sync"), (True, "bench_nosync")):
            lines, elapsed = ingest(srv.url, db, args.writers, args.seconds, no_sync, seed0=0)
            print(f"ingest no_sync={str(no_sync).lower():5}: {lines:>9,} lines in {elapsed:5.1f}s = "
                  f"{lines / elapsed:>10,.0f} lines/s")

        # Load exactly --rows rows into a fresh db, then query.
        db = "bench_q"
        s = requests.Session()
        t0 = time.monotonic()
        batches = args.rows // BATCH
        done = [0]
        lock = threading.Lock()

        def load(w: int) -> None:
            sess = requests.Session()
            while True:
                with lock:
                    k = done[0]
                    if k >= batches:
                        return
                    done[0] += 1
                r = sess.post(f"{srv.url}/api/v3/write_lp?db={db}&no_sync=true", data=make_batch(k, 1_600_000_000_000_000_000),
                              timeout=120)
                if r.status_code != 204:
                    raise SystemExit(f"load failed: {r.status_code} {r.text[:200]}")

        threads = [threading.Thread(target=load, args=(w,)) for w in range(args.writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        s.post(f"{srv.url}/api/v3/write_lp?db={db}", data="bench_marker f=1i 1")  # synced: all earlier data applied
        print(f"loaded {batches * BATCH:,} rows in {time.monotonic() - t0:.1f}s")
        sql = "SELECT host, avg(f0) AS a, max(f2) AS m, count(*) AS n FROM bench GROUP BY host ORDER BY host"
        r = s.get(f"{srv.url}/api/v3/query_sql", params={"db": db, "q": "SELECT count(*) AS n FROM bench"})
        print(f"count(*) = {r.json()[0]['n']:,}")
        lat = []
        for _ in range(args.queries):
            q0 = time.perf_counter()
            r = s.get(f"{srv.url}/api/v3/query_sql", params={"db": db, "q": sql})
            lat.append((time.perf_counter() - q0) * 1000)
            assert r.status_code == 200 and len(r.json()) == HOSTS, r.text[:200]
        lat.sort()
        p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
        print(f"GROUP BY over {batches * BATCH:,} rows: p50 {statistics.median(lat):.1f} ms, p95 {p95:.1f} ms "
              f"({args.queries} queries)")
        total_rows = s.get(f"{srv.url}/api/v3/query_sql",
                                params={"db": db, "q": f"SELECT count(*) AS n FROM {TABLE}"}).json()[0]["n"]
        held = sum(s.get(f"{srv.url}/api/v3/query_sql", params={"db": d, "q": f"SELECT count(*) AS n FROM {TABLE}"}
                         ).json()[0]["n"] for d in ("bench_sync", "bench_nosync", db))
        time.sleep(3)  # freed pages go back to the system after a short decay (emulator/memory.py)
        rss, peak = server_memory_mib(srv.pid)
        disk = sum(f.stat().st_size for f in Path(srv.data_dir).rglob("*") if f.is_file()) / 2**20
        print(f"server memory with {total_rows:,} rows in {TABLE}: RSS {rss:.0f} MiB, peak {peak:.0f} MiB; "
              f"data dir {disk:.0f} MiB")
        print(f"RSS per million rows held ({held:,} in all databases): {rss / (held / 1e6):.0f} MiB "
              f"(peak {peak / (held / 1e6):.0f}); above the empty server's {empty_rss:.0f} MiB: "
              f"{(rss - empty_rss) / (held / 1e6):.0f} MiB")
        t0 = time.monotonic()
        srv.restart()
        restart_s = time.monotonic() - t0
        q0 = time.perf_counter()
        r0 = s.get(f"{srv.url}/api/v3/query_sql", params={"db": db, "q": f"SELECT count(*) AS n FROM {TABLE}"})
        first_ms = (time.perf_counter() - q0) * 1000
        assert r0.status_code == 200 and r0.json()[0]["n"] == total_rows, r0.text[:200]
        rss, _ = server_memory_mib(srv.pid)
        print(f"restart (stop with final flush + start until /health): {restart_s:.1f}s; "
              f"first count(*) after restart {first_ms:.0f} ms, all {total_rows:,} rows back; RSS {rss:.0f} MiB")
    overwrite_run(args.overwrite_seconds, args.overwrite_snapshot_size)


def overwrite_run(seconds: float, snapshot_size: int) -> None:
    """One synced writer rewrites the same series and time for ``seconds`` at a 100 ms flush; prints the WAL
    files written and left. The buffer never grows, so only the snapshot tracker's count can truncate the WAL."""
    keep = snapshot_size // 2
    flags = ["--wal-snapshot-size", str(snapshot_size), "--snapshotted-wal-files-to-keep", str(keep)]
    with tempfile.TemporaryDirectory() as tmp, start_server(Path(tmp), wal_flush_interval="100ms",
                                                           extra_args=flags) as srv:
        s = requests.Session()
        writes = 0
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            r = s.post(f"{srv.url}/api/v3/write_lp?db=overwrite", data=f"m,host=a v={writes}i 1000000000")
            if r.status_code != 204:
                raise SystemExit(f"overwrite write failed: {r.status_code} {r.text[:200]}")
            writes += 1
        wal = sorted(int(p.stem) for p in (Path(srv.data_dir) / "wal").glob("*.wal"))
        written = wal[-1] if wal else 0
        print(f"overwrite run: {writes:,} synced writes of one row over {seconds:.0f}s, 100ms flush, "
              f"{' '.join(flags)}: {written:,} WAL files written, {len(wal):,} left "
              f"(bound {3 * snapshot_size + keep}: 3 x snapshot size + files kept)")


def server_memory_mib(pid: int | None) -> tuple[float, float]:
    """(VmRSS, VmHWM) of the server process in MiB, from /proc (Linux)."""
    fields = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return int(fields["VmRSS"][0]) / 1024, int(fields["VmHWM"][0]) / 1024


if __name__ == "__main__":
    main()
