"""Test support: start the embedded engine as a subprocess on a loopback port, or target a real server.

Used by the emulator conformance tests, the stack tests and anything else that needs a running server::

    with start_server(tmp_path, auth=True) as srv:
        r = srv.session.post(f"{srv.url}/api/v3/write_lp?db=x", data="m f=1")

"One test, two targets" (STYLE.md): when ``INFLUXDB3_URL`` is set (and ``INFLUXDB3_AUTH_TOKEN`` for a server
with auth), :func:`remote_server` returns a handle to that real server instead; fixtures use it for tests that do
not need to kill or restart the process.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
#: How long a server may take to answer /health after being spawned.
START_DEADLINE_S = 30.0
#: How long SIGTERM may take before the process is killed.
STOP_DEADLINE_S = 20.0
#: Default WAL flush interval for test servers (fast); pass wal_flush_interval="1s" for the real default.
FAST_FLUSH = "10ms"


class ServerStartError(RuntimeError):
    """The server subprocess exited or did not become healthy before the deadline."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_token() -> str:
    """An admin token in the server's format: ``apiv3_`` + url-safe base64 (no padding) of 64 random bytes."""
    return "apiv3_" + base64.urlsafe_b64encode(secrets.token_bytes(64)).decode().rstrip("=")


def make_token_file(path: Path | str) -> str:
    """Write an offline admin token file (``influxdb3 create token --admin --offline`` format); return the token."""
    token = new_token()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"token": token, "name": "_admin"}))
    p.chmod(0o600)
    return token


def remote_target() -> tuple[str, str | None] | None:
    """``(url, token)`` of a real server named by ``INFLUXDB3_URL`` (+ ``INFLUXDB3_AUTH_TOKEN``), else None."""
    url = os.environ.get("INFLUXDB3_URL")
    if not url:
        return None
    return url.rstrip("/"), os.environ.get("INFLUXDB3_AUTH_TOKEN") or None


def _session(token: str | None) -> requests.Session:
    s = requests.Session()
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    return s


class RemoteServer:
    """A real server reached over HTTP (``INFLUXDB3_URL``); it cannot be stopped or restarted."""

    is_remote = True

    def __init__(self, url: str, token: str | None):
        self.url = url
        self.token = token
        self.data_dir: Path | None = None
        self.plugin_dir: Path | None = None
        self.session = _session(token)

    def stop(self) -> None:
        self.session.close()

    def __enter__(self) -> RemoteServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerProcess:
    """``python -m emulator serve`` as a subprocess on ``127.0.0.1:<port>``.

    Attributes: ``url``, ``token`` (None without auth), ``data_dir``, ``plugin_dir``, ``session`` (a
    ``requests.Session`` that sends the token), ``log_path`` (stderr+stdout of the process).
    """

    is_remote = False

    def __init__(
        self,
        args: list[str],
        *,
        port: int,
        data_dir: Path,
        plugin_dir: Path | None,
        token: str | None,
        env: Mapping[str, str],
        log_path: Path,
    ):
        self.args = args
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.data_dir = data_dir
        self.plugin_dir = plugin_dir
        self.token = token
        self.env = dict(env)
        self.log_path = log_path
        self.session = _session(token)
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, deadline_s: float = START_DEADLINE_S) -> ServerProcess:
        """Spawn the process and wait (polling, with a deadline) until /health answers 200."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "emulator", *self.args],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_healthy(deadline_s)
        return self

    def wait_healthy(self, deadline_s: float = START_DEADLINE_S) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise ServerStartError(f"server exited with {rc}:\n{self.log_tail()}")
            try:
                r = self.session.get(f"{self.url}/health", timeout=1)
                if r.status_code == 200 or (r.status_code == 401 and self.token is None):
                    return
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or slow to answer on a busy machine
                pass
            time.sleep(0.02)  # polling interval, not readiness: the loop checks /health
        self.kill9()
        raise ServerStartError(f"server not healthy within {deadline_s}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def kill9(self) -> None:
        """SIGKILL (no flush, no cleanup), as a crash."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def restart(self) -> ServerProcess:
        """Stop (if running) and start again with the same arguments and data dir."""
        self.stop()
        return self.start()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self.session.close()


def server_args(
    *,
    port: int,
    data_dir: Path,
    token_file: Path | None,
    plugin_dir: Path | None,
    wal_flush_interval: str | None,
    auth: bool = True,
    extra_args: Iterable[str] = (),
) -> list[str]:
    """The ``serve`` command line used by :func:`start_server`."""
    args = [
        "serve",
        "--node-id",
        "test",
        "--object-store",
        "file",
        "--data-dir",
        str(data_dir),
        "--http-bind",
        f"127.0.0.1:{port}",
        "--wal-flush-interval",
        wal_flush_interval or FAST_FLUSH,
        "--log-filter",
        "info",
    ]
    if token_file is not None:
        args += ["--admin-token-file", str(token_file)]
    if not auth:
        args.append("--without-auth")
    if plugin_dir is not None:
        args += ["--plugin-dir", str(plugin_dir)]
    return args + list(extra_args)


def start_server(
    tmp_path: Path,
    *,
    auth: bool = False,
    plugin_dir: Path | str | None = None,
    extra_args: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    wal_flush_interval: str | None = None,
    token_file: bool = True,
) -> ServerProcess:
    """Start ``python -m emulator serve --node-id test`` on a free loopback port; return once /health is 200.

    Args:
        tmp_path: a per-test directory; ``data/`` (data dir) and ``server.log`` are created in it.
        auth: with True an admin token file is written and passed with ``--admin-token-file``;
            ``.token`` holds it and ``.session`` sends it. With False the server runs ``--without-auth``.
        plugin_dir: passed as ``--plugin-dir`` when given.
        extra_args: appended to the command line.
        env: extra environment variables for the process.
        wal_flush_interval: humantime; None means ``10ms`` (fast tests). Pass ``"1s"`` for the server default.
        token_file: with ``auth=True`` and False, auth is on but no token exists (``.token`` is None; create
            one with POST /api/v3/configure/token/admin). Readiness then accepts /health's 401.
    """
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    data_dir = tmp_path / "data"
    token = None
    auth_on = auth
    token_path: Path | None = None
    if auth and token_file:
        token_path = tmp_path / "admin-token.json"
        token = make_token_file(token_path)
    pdir = Path(plugin_dir) if plugin_dir is not None else None
    # The server must not inherit an activated venv as its plugin venv (VIRTUAL_ENV is --virtual-env-location).
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB3_") and k != "VIRTUAL_ENV"
    }
    full_env["PYTHONUNBUFFERED"] = "1"
    if env:
        full_env.update(env)
    last_error: ServerStartError | None = None
    for _attempt in range(3):  # a free port can be taken between free_port() and bind
        port = free_port()
        args = server_args(
            port=port,
            data_dir=data_dir,
            token_file=token_path,
            auth=auth_on,
            plugin_dir=pdir,
            wal_flush_interval=wal_flush_interval,
            extra_args=extra_args,
        )
        srv = ServerProcess(
            args,
            port=port,
            data_dir=data_dir,
            plugin_dir=pdir,
            token=token,
            env=full_env,
            log_path=tmp_path / "server.log",
        )
        try:
            return srv.start()
        except ServerStartError as exc:
            last_error = exc
            if "address already in use" not in str(exc).lower():
                raise
    assert last_error is not None
    raise last_error


def remote_server() -> RemoteServer | None:
    """A handle to the real server named by ``INFLUXDB3_URL``, or None when it is not set."""
    target = remote_target()
    if target is None:
        return None
    return RemoteServer(*target)
