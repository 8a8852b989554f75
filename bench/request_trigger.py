"""Benchmark: request-trigger round trip and write-to-WAL-trigger latency on the embedded engine.

Prints:
* p50/p95 of ``POST /api/v3/engine/<path>`` where the plugin returns a dict (target p50 < 5 ms);
* p50/max of the time from a write's acknowledgement to the ``table:`` trigger's run, at the server's
  default 1 s WAL flush interval (target < 1.5 s).

Run: ``.venv/bin/python bench/request_trigger.py [--requests N] [--writes N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import ServerProcess, start_server  # noqa: E402

TRIGGER = "/api/v3/configure/processing_engine_trigger"
REQUEST_PLUGIN = (
    "def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):\n"
    "    return {'status': 'ok', 'n': len(request_body)}\n"
)
WAL_PLUGIN = (
    "def process_writes(influxdb3_local, table_batches, args=None):\n"
    "    for batch in table_batches:\n"
    "        for row in batch['rows']:\n"
    "            influxdb3_local.info('seen', row['seq'])\n"
)


def create_trigger(srv: ServerProcess, db: str, name: str, spec: str, plugin: str) -> None:
    body = {"db": db, "plugin_filename": plugin, "trigger_name": name,
            "trigger_settings": {"run_async": False, "error_behavior": "log"},
            "trigger_specification": spec, "disabled": False}
    r = srv.session.post(f"{srv.url}{TRIGGER}", json=body, timeout=10)
    r.raise_for_status()


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def bench_requests(root: Path, n: int) -> None:
    plugin_dir = root / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "req.py").write_text(REQUEST_PLUGIN)
    with start_server(root / "req", plugin_dir=plugin_dir, auth=True) as srv:
        srv.session.post(f"{srv.url}/api/v3/configure/database", json={"db": "bench"}, timeout=10)
        create_trigger(srv, "bench", "req", "request:bench", "req.py")
        url = f"{srv.url}/api/v3/engine/bench"
        for _ in range(20):  # warm up the connection and the code cache
            srv.session.post(url, data=b"{}", timeout=10)
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            r = srv.session.post(url, data=b'{"x": 1}', timeout=10)
            samples.append((time.perf_counter() - start) * 1000)
            assert r.status_code == 200 and r.json()["status"] == "ok"
    print(f"request trigger round trip over {n} POSTs: p50 {percentile(samples, 50):.2f} ms, "
          f"p95 {percentile(samples, 95):.2f} ms (target p50 < 5 ms)")


def bench_wal(root: Path, n: int) -> None:
    plugin_dir = root / "plugins"
    (plugin_dir / "wal.py").write_text(WAL_PLUGIN)
    with start_server(root / "wal", plugin_dir=plugin_dir, wal_flush_interval="1s") as srv:
        srv.session.post(f"{srv.url}/api/v3/configure/database", json={"db": "bench"}, timeout=10)
        create_trigger(srv, "bench", "wal", "table:cpu", "wal.py")
        latencies = []
        from_send = []
        for seq in range(n):
            sent = time.time()
            r = srv.session.post(f"{srv.url}/api/v3/write_lp", params={"db": "bench"},
                                 data=f"cpu seq={seq}i", timeout=10)
            acked = time.time()
            assert r.status_code == 204
            deadline = time.monotonic() + 5
            while True:
                rows = srv.session.get(f"{srv.url}/api/v3/query_sql", timeout=10, params={
                    "db": "bench", "format": "json",
                    "q": f"SELECT event_time FROM system.processing_engine_logs WHERE log_text = 'seen {seq}'"}).json()
                if rows:
                    ran = datetime.fromisoformat(rows[0]["event_time"]).replace(tzinfo=UTC).timestamp()
                    latencies.append(max(ran - acked, 0.0) * 1000)
                    from_send.append((ran - sent) * 1000)
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"write {seq} never reached the trigger")
                time.sleep(0.01)
    print(f"write ack -> table: trigger run at 1 s flush over {n} writes: p50 {statistics.median(latencies):.1f} ms, "
          f"max {max(latencies):.1f} ms (target < 1500 ms); from sending the write: "
          f"p50 {statistics.median(from_send):.1f} ms, max {max(from_send):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--writes", type=int, default=5)
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pe-") as tmp:
        root = Path(tmp)
        bench_requests(root, ns.requests)
        bench_wal(root, ns.writes)


if __name__ == "__main__":
    main()
