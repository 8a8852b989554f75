"""make run / make demo as an operator meets them (issue 8 item 6): a taken port stops the run before anything is
provisioned; SIGINT or SIGTERM sent by a script to the whole process group is a clean stop; make demo starts
from its sample data each time, so a restart adds no rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from scripts.run_stack import port_taken
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB3_", "GITHUB_", "KAPA_"))}
    env.update(PROVISION_ENV_FILE=str(tmp_path / "no.env"), PYTHONUNBUFFERED="1")
    return env


def _run_stack(tmp_path: Path, port: int, *extra: str) -> subprocess.Popen:
    """run_stack in a process group of its own, as a script or service manager starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "scripts.run_stack", "--port", str(port), "--secrets-dir", str(tmp_path / "secrets"),
         "--log-file", str(tmp_path / "server.log"), *extra],
        cwd=ROOT, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)


class _Recorder(BaseHTTPRequestHandler):
    """Another server on the port: answers everything 200 and records what it was asked."""

    seen: list[str] = []

    def _answer(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        body = b"OK"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


def test_run_stack_taken_port_stops_with_one_line_and_provisions_nothing(tmp_path):
    other = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    port = other.server_address[1]
    try:
        assert port_taken("127.0.0.1", port)
        proc = _run_stack(tmp_path, port, "--data-dir", str(tmp_path / "d"))
        out, _ = proc.communicate(timeout=60)
    finally:
        other.shutdown()
        other.server_close()
    assert proc.returncode == 1, out
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: 127.0.0.1:{port} is taken"), out
    assert f"INFLUXDB3_PORT={port + 1} make run" in lines[0]
    assert _Recorder.seen == []  # the other server was never asked anything, let alone provisioned
    assert not (tmp_path / "d").exists()


def test_run_stack_unreadable_admin_token_file_is_one_line_and_starts_nothing(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "influxdb3_admin_token.json").write_text('{"token": ')  # cut off mid-write
    port = free_port()
    proc = _run_stack(tmp_path, port, "--data-dir", str(tmp_path / "d"))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert "Traceback" not in out, out
    assert out.strip().splitlines()[-1] == (f"error: token file {tmp_path / 'secrets' / 'influxdb3_admin_token.json'} "
                                            "looks like JSON but does not parse (line 1)")
    assert not (tmp_path / "server.log").exists()  # no server was started


@pytest.mark.parametrize("setting", ["abc", "99999", "0"])
def test_run_stack_bad_port_setting_is_one_line_and_starts_nothing(tmp_path, setting):
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.run_stack", "--secrets-dir", str(tmp_path / "secrets"),
         "--data-dir", str(tmp_path / "d"), "--log-file", str(tmp_path / "server.log")],
        cwd=ROOT, env={**_env(tmp_path), "INFLUXDB3_PORT": setting}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert out.strip().splitlines() == [
        f"error: INFLUXDB3_PORT={setting!r} is not a port number; use 1-65535, e.g. INFLUXDB3_PORT=8182"]
    assert not (tmp_path / "d").exists() and not (tmp_path / "server.log").exists()


def test_run_stack_engine_killed_is_one_line_naming_it_and_what_to_do(tmp_path):
    port = free_port()
    proc = _run_stack(tmp_path, port, "--data-dir", str(tmp_path / "d"))
    output, reader = _read_output(proc)
    try:
        h, url = _when_ready(proc, output, tmp_path, port)
        assert requests.post(f"{url}/api/v3/write_lp?db=aichat", data="killed v=1i 1", headers=h, timeout=30).ok
        server_pid = next(int(line.split()[0]) for line in subprocess.run(
            ["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()
            if "emulator serve" in line and f"127.0.0.1:{port}" in line)
        os.kill(server_pid, signal.SIGKILL)  # as the OOM killer does
        assert proc.wait(timeout=30) == 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    reader.join(timeout=5)
    assert output[-1].strip() == ("error: the embedded engine was killed by SIGKILL (see its log); the writes it "
                                  "acknowledged are kept: make run again"), "".join(output)


def _read_output(proc: subprocess.Popen) -> tuple[list[str], threading.Thread]:
    """Collect ``proc``'s stdout lines into a list on a thread of its own."""
    output: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    return output, reader


def _when_ready(proc: subprocess.Popen, output: list[str], tmp_path: Path, port: int) -> tuple[dict, str]:
    """Wait (90 s at most) for the ready line; then the admin headers and the base URL."""
    end = time.monotonic() + 90
    while not any(line.startswith("aichat-stack is ready") for line in list(output)):
        assert proc.poll() is None and time.monotonic() < end, "not ready:\n" + "".join(output)
        time.sleep(0.05)
    token = json.loads((tmp_path / "secrets" / "influxdb3_admin_token.json").read_text())["token"]
    return {"Authorization": f"Bearer {token}"}, f"http://127.0.0.1:{port}"


def _demo_round(tmp_path: Path, port: int, data_dir: Path, stop_signal: signal.Signals) -> int:
    """Start make demo, collect the PRs once, count gh rows, stop it with ``stop_signal`` sent to its whole group."""
    proc = _run_stack(tmp_path, port, "--demo", "--data-dir", str(data_dir))
    output, reader = _read_output(proc)
    try:
        h, url = _when_ready(proc, output, tmp_path, port)
        gh = requests.post(f"{url}/api/v3/engine/github_prs", headers=h, json={"time_period": "week"}, timeout=60)
        assert gh.status_code == 200, gh.text
        r = requests.post(f"{url}/api/v3/query_sql", headers=h, timeout=30,
                          json={"db": "aichat", "q": "SELECT count(*) AS n FROM gh", "format": "json"})
        count = r.json()[0]["n"]
        os.killpg(proc.pid, stop_signal)  # as `kill -TERM -PGID` or a supervisor does: every process gets it
        assert proc.wait(timeout=30) == 0, "".join(output)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    text = "".join(output)
    assert "Traceback" not in text and "error:" not in text, text
    assert f"stopping ({stop_signal.name})" in text, text
    assert not port_taken("127.0.0.1", port)  # the server (its own session) was stopped too
    return count


def test_run_stack_group_signals_stop_cleanly_and_demo_restarts_without_adding_rows(tmp_path):
    port, data_dir = free_port(), tmp_path / "demo"
    first = _demo_round(tmp_path, port, data_dir, signal.SIGTERM)
    assert first > 0
    (data_dir / "left-over").write_text("x")
    second = _demo_round(tmp_path, port, data_dir, signal.SIGINT)
    assert second == first
    assert not (data_dir / "left-over").exists()
    # a closed terminal or SSH session (SIGHUP) stops the children too: _demo_round checks the port is free
    assert _demo_round(tmp_path, port, data_dir, signal.SIGHUP) == first
