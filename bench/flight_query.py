"""Benchmark: one simple query over HTTP and over Flight on the same port of the embedded engine.

Prints p50/p95 (ms) of:
* ``GET /api/v3/query_sql`` (JSON) for ``SELECT host, usage FROM cpu WHERE host = 'h1'`` on ``--rows`` rows,
  on a kept-alive connection and on a new connection each time (the listener's first-bytes check);
* the same query with influxdb3-python (Flight DoGet, JSON ticket), client kept open;
* the same with ADBC Flight SQL (GetFlightInfo + DoGet), connection kept open.
Against a checkout without Flight the Flight lines say ``n/a`` (compare HTTP before/after a change).

Run: ``.venv/bin/python bench/flight_query.py [--rows N] [--queries N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from tests.support import start_server  # noqa: E402

SQL = "SELECT host, usage FROM cpu WHERE host = 'h1'"


def timed(fn: Callable[[], object], n: int) -> tuple[float, float]:
    fn()  # warm-up (connection, plan caches)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, start_server(Path(tmp), auth=True) as srv:
        lines = "\n".join(f"cpu,host=h{i % 10} usage={i}.5 {1_700_000_000_000_000_000 + i}" for i in range(args.rows))
        r = srv.session.post(f"{srv.url}/api/v3/write_lp", params={"db": "bench"}, data=lines, timeout=60)
        assert r.status_code == 204, r.text

        def http() -> None:
            resp = srv.session.get(f"{srv.url}/api/v3/query_sql", params={"db": "bench", "q": SQL}, timeout=30)
            assert resp.status_code == 200, resp.text

        p50, p95 = timed(http, args.queries)
        print(f"HTTP query_sql        p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  ({args.queries} queries, {args.rows} rows)")
        headers = {"Authorization": f"Bearer {srv.token}", "Connection": "close"}

        def http_new_connection() -> None:
            resp = requests.get(f"{srv.url}/api/v3/query_sql", params={"db": "bench", "q": SQL}, headers=headers,
                                timeout=30)
            assert resp.status_code == 200, resp.text

        p50, p95 = timed(http_new_connection, args.queries)
        print(f"HTTP, new connection  p50 {p50:6.2f} ms  p95 {p95:6.2f} ms")
        try:
            from influxdb_client_3 import InfluxDBClient3

            client = InfluxDBClient3(host=srv.url, token=srv.token, database="bench")
            client.query(SQL)
        except Exception as exc:  # a checkout without Flight
            print(f"Flight influxdb3-python  n/a ({type(exc).__name__})")
            return 0
        p50, p95 = timed(lambda: client.query(SQL), args.queries)
        print(f"Flight influxdb3-python p50 {p50:6.2f} ms  p95 {p95:6.2f} ms")
        client.close()
        import adbc_driver_flightsql.dbapi as flightsql

        conn = flightsql.connect(f"grpc://127.0.0.1:{srv.port}", db_kwargs={
            "adbc.flight.sql.authorization_header": f"Bearer {srv.token}",
            "adbc.flight.sql.rpc.call_header.database": "bench"}, autocommit=True)
        cur = conn.cursor()

        def adbc() -> None:
            cur.execute(SQL)
            cur.fetch_arrow_table()

        p50, p95 = timed(adbc, args.queries)
        print(f"Flight SQL (ADBC)       p50 {p50:6.2f} ms  p95 {p95:6.2f} ms")
        cur.close()
        conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
