"""Acknowledged writes (no_sync=false) survive kill -9: restart on the same data dir replays them all."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.support import start_server

pytestmark = pytest.mark.long_running


def test_acknowledged_writes_survive_kill9(tmp_path) -> None:
    srv = start_server(tmp_path, wal_flush_interval="20ms")
    acked: list[int] = []
    stop = threading.Event()
    errors: list[str] = []

    def writer(worker: int) -> None:
        session = requests.Session()
        seq = 0
        while not stop.is_set():
            n = worker * 1_000_000 + seq
            body = "\n".join(f"d,w=w{worker} seq={n + k}i,v=\"p{n + k}\" {1_700_000_000_000 + n + k}" for k in range(5))
            try:
                r = session.post(f"{srv.url}/api/v3/write_lp?db=dur&precision=ms", data=body, timeout=10)
            except requests.RequestException:
                return  # the server died mid-request: that write was not acknowledged
            if r.status_code == 204:
                acked.extend(range(n, n + 5))
            else:
                errors.append(f"{r.status_code} {r.text}")
                return
            seq += 5

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 400 and time.monotonic() < deadline and not errors:
        time.sleep(0.01)  # waiting for progress, bounded by the deadline
    srv.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=15)
    assert not errors, errors
    assert len(acked) >= 400, "writers made too little progress before the kill"

    srv.start()
    try:
        r = srv.session.get(
            f"{srv.url}/api/v3/query_sql",
            params={"db": "dur", "q": "SELECT seq, v FROM d", "format": "json"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        rows = r.json()
        stored = {row["seq"]: row["v"] for row in rows}
        missing = [s for s in acked if s not in stored]
        assert missing == []
        assert all(stored[s] == f"p{s}" for s in acked)
        assert len(rows) == len(stored)  # no duplicates after replay
    finally:
        srv.stop()
