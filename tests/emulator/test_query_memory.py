"""One query cannot eat the engine's memory (issue 9, "no input may crash the engine").

The engine runs DataFusion under a memory pool of ``--exec-mem-pool-bytes`` and materialises a result batch by
batch up to that many Arrow bytes (emulator only: the server streams results), and a query stops at its next
batch once its HTTP client has gone. Servers here run with a small pool so the tests stay fast and light.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from emulator.config import ConfigError, parse_serve_args
from emulator.engine import Engine
from emulator.errors import QueryError
from emulator.query import QueryRunner, default_exec_mem_pool_bytes, total_memory_bytes
from tests.support import start_server

HUGE = "SELECT * FROM generate_series(1, 100000000000)"
MIB = 1024 * 1024


def _status_kib(pid: int, key: str) -> int:
    """``VmRSS`` / ``VmHWM`` (peak RSS) of a process, in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{key} not in /proc/{pid}/status")


def _rows(srv, db: str, sql: str) -> list[dict]:
    r = srv.session.post(f"{srv.url}/api/v3/query_sql", json={"db": db, "q": sql}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_unbounded_result_answers_resources_exhausted_with_bounded_memory(tmp_path: Path) -> None:
    with start_server(tmp_path, extra_args=["--exec-mem-pool-bytes", "64mb"]) as srv:
        assert srv.proc is not None
        pid = srv.proc.pid
        w = srv.session.post(f"{srv.url}/api/v3/write_lp", params={"db": "mem"}, data="m,t=a v=1 1\n", timeout=30)
        assert w.status_code == 204, w.text
        assert _rows(srv, "mem", "SELECT t, v FROM m") == [{"t": "a", "v": 1.0}]
        before_kib = _status_kib(pid, "VmRSS")
        started = time.monotonic()
        r = srv.session.post(f"{srv.url}/api/v3/query_sql", json={"db": "mem", "q": HUGE}, timeout=30)
        elapsed = time.monotonic() - started
        assert r.status_code == 500, r.text[:200]
        assert r.text.startswith("Resources exhausted: query result reached "), r.text[:300]
        assert "64.0 MB" in r.text and "--exec-mem-pool-bytes" in r.text
        assert elapsed < 15, elapsed
        grown_mib = (_status_kib(pid, "VmHWM") - before_kib) / 1024
        assert grown_mib < 512, f"server peak RSS grew {grown_mib:.0f} MiB"
        # the engine still answers, and a result under the bound is whole
        assert _rows(srv, "mem", "SELECT count(*) AS n FROM generate_series(1, 1000000)") == [{"n": 1000000}]
        assert len(_rows(srv, "mem", "SELECT value FROM generate_series(1, 100000)")) == 100000


def test_query_stops_when_the_client_disconnects(tmp_path: Path) -> None:
    """With a 2 GiB bound the query would run for seconds and grow the server past 1 GiB; the client leaves
    after 0.5 s and the query ends (phase ``fail`` in system.queries) with the server's peak well under that."""
    with start_server(tmp_path, extra_args=["--exec-mem-pool-bytes", "2gb"]) as srv:
        assert srv.proc is not None
        pid = srv.proc.pid
        w = srv.session.post(f"{srv.url}/api/v3/write_lp", params={"db": "gone"}, data="m v=1 1\n", timeout=30)
        assert w.status_code == 204, w.text
        before_kib = _status_kib(pid, "VmRSS")
        sql = HUGE + " -- client leaves"
        body = json.dumps({"db": "gone", "q": sql}).encode()
        host, port = srv.url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /api/v3/query_sql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            time.sleep(0.5)
        deadline = time.monotonic() + 10
        phase = None
        while time.monotonic() < deadline:
            rows = _rows(srv, "gone", "SELECT phase, query_text FROM system.queries")
            phases = [r["phase"] for r in rows if r["query_text"] == sql]
            phase = phases[-1] if phases else None
            if phase in ("success", "fail"):
                break
            time.sleep(0.1)
        assert phase == "fail", phase
        grown_mib = (_status_kib(pid, "VmHWM") - before_kib) / 1024
        assert grown_mib < 1024, f"server peak RSS grew {grown_mib:.0f} MiB"


def test_engine_query_cancel_check_stops_at_next_batch() -> None:
    engine = Engine(None, exec_mem_pool_bytes=1024 * MIB)
    engine.open()
    try:
        engine.create_database("db")
        polls = []

        def cancelled() -> bool:
            polls.append(1)
            return len(polls) > 3

        with pytest.raises(QueryError) as err:
            engine.query("db", HUGE, cancelled=cancelled)
        assert err.value.kind == "execution"
        assert "cancelled" in err.value.message
        assert len(polls) == 4
        assert engine.query("db", "SELECT 1 AS one", cancelled=lambda: False).to_pylist() == [{"one": 1}]
    finally:
        engine.close()


def test_engine_bound_counts_every_materialisation_site() -> None:
    """Gap filling materialises twice (aggregate, then the nodes above it): the filled rows (108000 one-second
    bins, about 1.7 MB of Arrow) are bounded too."""
    engine = Engine(None, exec_mem_pool_bytes=1 * MIB)
    engine.open()
    try:
        engine.create_database("db")
        engine.write_lp("db", "m v=1 1\n", precision="second")
        with pytest.raises(QueryError) as err:
            engine.query("db", "SELECT date_bin_gapfill(INTERVAL '1 second', time) AS t, avg(v) FROM m "
                               "WHERE time >= '1970-01-01T00:00:00Z' AND time < '1970-01-02T06:00:00Z' GROUP BY 1")
        assert err.value.message.startswith("Resources exhausted: "), err.value.message
        small = engine.query("db", "SELECT date_bin_gapfill(INTERVAL '1 second', time) AS t, avg(v) AS a FROM m "
                                   "WHERE time >= '1970-01-01T00:00:00Z' AND time < '1970-01-01T00:00:03Z' GROUP BY 1 ORDER BY 1")
        assert small.column("a").to_pylist() == [None, 1.0, None]
    finally:
        engine.close()


def test_default_pool_is_a_fifth_of_memory() -> None:
    assert QueryRunner().exec_mem_pool_bytes == default_exec_mem_pool_bytes() == total_memory_bytes() * 20 // 100
    assert QueryRunner(5).exec_mem_pool_bytes == 5


@pytest.mark.parametrize(("value", "expected"), [
    ("64mb", 64 * MIB), ("1024b", 1024), ("2 GB", 2 * 1024 * MIB), ("1kb", 1024), ("1tb", 1024 ** 4),
    ("100", 100_000_000),
])
def test_exec_mem_pool_bytes_forms(value: str, expected: int) -> None:
    cfg = parse_serve_args(["serve", "--node-id", "n", "--object-store", "memory", "--exec-mem-pool-bytes", value])
    assert cfg.exec_mem_pool_bytes == expected


def test_exec_mem_pool_bytes_percent_env_and_default() -> None:
    base = ["serve", "--node-id", "n", "--object-store", "memory"]
    assert parse_serve_args(base, {}).exec_mem_pool_bytes is None
    cfg = parse_serve_args(base, {"INFLUXDB3_EXEC_MEM_POOL_BYTES": "10%"})
    assert cfg.exec_mem_pool_bytes == round(total_memory_bytes() / 10)
    flag_wins = parse_serve_args([*base, "--exec-mem-pool-bytes", "1mb"], {"INFLUXDB3_EXEC_MEM_POOL_BYTES": "10%"})
    assert flag_wins.exec_mem_pool_bytes == MIB
    for bad, text in (("101%", "must be in [0, 100] but is 101"), ("lots", "failed to parse 'lots'"),
                      ("x%", "as a percentage")):
        with pytest.raises(ConfigError, match="--exec-mem-pool-bytes") as err:
            parse_serve_args([*base, "--exec-mem-pool-bytes", bad])
        assert text in str(err.value)
