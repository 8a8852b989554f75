"""``make run`` / ``make demo``: the stack on the embedded engine, in the foreground until Ctrl-C.

make run:  secrets -> ``python -m emulator serve`` on 127.0.0.1:${INFLUXDB3_PORT:-8181} with ``plugins/``,
           data in ``.data/influxdb3``, the admin token file from ``secrets/`` -> wait healthy ->
           ``python -m provisioning`` against it -> wait for Ctrl-C -> stop the server cleanly.
make demo: the same with data in ``.data/demo`` (emptied at each start, so the sample data is the same every
           time and a restart adds no rows), plus ``python -m tests.fakes`` (fake GitHub and Kapa serving
           sample data on loopback ports) and trigger arguments pointing at them, so both endpoints return
           rows offline and without tokens.

A port already taken stops the run with one line before anything starts (so another server on it is never
provisioned). SIGINT, SIGTERM and SIGHUP, from a terminal or a script, are a clean stop (status 0): the children run in
a session of their own, so only this process gets the signal and it stops them.

Token files for the plugins are the host's ``secrets/github_token`` etc. (the compose stack uses
``/run/secrets/...`` instead). No token is printed: the curl hints read the token file in your shell.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests

from provisioning.cli import main as provision
from provisioning.errors import ConfigError
from provisioning.settings import load_environment, read_token_file
from scripts.make_secrets import ADMIN_TOKEN_FILE, make_secrets
from tests.fakes.sample import DEMO_BASE, DEMO_PROJECT, DEMO_REPO, DEMO_SOURCE

ROOT = Path(__file__).resolve().parent.parent
START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 15.0
READY_LINE = "aichat-stack is ready"

DEMO_FRESHNESS_FILE = ROOT / "provisioning" / "freshness.demo.toml"
#: a demo data directory holds this file; only such a directory (or the default .data/demo) is emptied
DEMO_MARKER = ".aichat-demo-data"
DEMO_KAPA_KEY = "demo-kapa-key"  # the fake Kapa accepts any non-empty key; not a secret


class StackError(RuntimeError):
    """A child process did not start, or exited while it should be running."""


class StopRequested(BaseException):  # noqa: N818 - a stop, not an error: not caught by `except Exception`
    """SIGINT, SIGTERM or SIGHUP arrived: stop the children and exit 0."""


#: signals that stop the stack cleanly; SIGHUP (terminal closed, SSH session ended) too, else the children,
#: in sessions of their own, would outlive this process and keep the port
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM) + ((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())


def _request_stop(signum: int, _frame: object) -> None:
    """Signal handler: further signals are ignored while the children stop, then a clean return."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise StopRequested(signal.Signals(signum).name)


def port_taken(host: str, port: int) -> bool:
    """True when ``host:port`` cannot be bound (another server listens there), as the server would find it.

    SO_REUSEADDR as asyncio's server sets it on POSIX, so a port in TIME_WAIT is not reported as taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if hasattr(socket, "SO_REUSEADDR") and sys.platform != "win32":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def server_port(text: str, setting: str) -> int:
    """``text`` as a TCP port 1-65535 for the server; ConfigError naming ``setting`` otherwise (0 would let the
    kernel pick a port no curl hint could name)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise ConfigError(f"{setting}={text!r} is not a port number; use 1-65535, e.g. {setting}=8182")
    return port


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, proc: subprocess.Popen, deadline_s: float, what: str) -> None:
    """Poll a TCP connect until it succeeds, the process exits, or the deadline passes."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise StackError(f"{what} exited with status {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise StackError(f"{what} did not listen on {host}:{port} within {deadline_s:g}s")


def wait_healthy(url: str, token: str, proc: subprocess.Popen, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    headers = {"Authorization": f"Bearer {token}"}
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise StackError(f"the embedded engine exited with status {proc.returncode}; see its log")
        try:
            if requests.get(f"{url}/health", headers=headers, timeout=2).status_code == 200:
                if proc.poll() is not None:  # another server answered; ours could not start
                    raise StackError(f"the embedded engine exited with status {proc.returncode}; see its log")
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise StackError(f"the embedded engine was not healthy at {url} within {deadline_s:g}s")


def stop(proc: subprocess.Popen | None) -> None:
    """SIGTERM, wait with a deadline, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_DEADLINE_S)


def exit_message(is_server: bool, returncode: int, demo: bool) -> str:
    """One line for a child that ended while the stack runs: which one, how (status or signal), what next."""
    how = (f"was killed by {signal.Signals(-returncode).name}" if returncode < 0 and -returncode in
           set(signal.Signals) else f"exited with status {returncode}")
    if not is_server:
        return f"the fake GitHub/Kapa process {how}; make demo again"
    if demo:
        return f"the embedded engine {how} (see its log); make demo again (it starts from the sample data)"
    return f"the embedded engine {how} (see its log); the writes it acknowledged are kept: make run again"


def _local_secret(env: Mapping[str, str], var: str, default: Path) -> str:
    """The user's ``*_FILE`` setting when it names an existing file on this host, else the secrets/ file;
    "" (argument left out, the plugin runs without it) when that file is still the empty placeholder."""
    configured = env.get(var, "")
    path = Path(configured) if configured and Path(configured).is_file() else default.resolve()
    return str(path) if path.is_file() and path.stat().st_size > 0 else ""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.run_stack", description=__doc__.splitlines()[0])
    p.add_argument("--demo", action="store_true", help="also run the fake GitHub and Kapa with sample data")
    p.add_argument("--port", type=int, help="server port (default: INFLUXDB3_PORT or 8181)")
    p.add_argument("--data-dir", type=Path, help="default .data/influxdb3 (.data/demo with --demo)")
    p.add_argument("--plugin-dir", type=Path, default=ROOT / "plugins")
    p.add_argument("--secrets-dir", type=Path, default=ROOT / "secrets")
    p.add_argument("--wal-flush-interval", default=None, help="server WAL flush interval (default 1s; demo 100ms)")
    p.add_argument("--triggers-file", help="triggers TOML for provisioning (default: the packaged one)")
    p.add_argument("--log-file", type=Path, help="write the server's output here instead of the terminal")
    return p


def main(argv: list[str] | None = None) -> int:
    for sig in STOP_SIGNALS:
        signal.signal(sig, _request_stop)
    try:
        return _main(argv)
    except StopRequested:  # before or after the children's lifetime (theirs is handled in _main)
        print("stopped", flush=True)
        return 0
    except ConfigError as exc:  # e.g. an admin token file that does not parse: one line, nothing started
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    env = load_environment()
    if args.port is not None:
        port = server_port(str(args.port), "--port")
    else:
        port = server_port(env.get("INFLUXDB3_PORT", "").strip() or "8181", "INFLUXDB3_PORT")
    if port_taken("127.0.0.1", port):
        print(f"error: 127.0.0.1:{port} is taken (another make run, make demo or make up?); stop that server, or "
              f"pick another port: INFLUXDB3_PORT={port + 1} make {'demo' if args.demo else 'run'}",
              file=sys.stderr, flush=True)
        return 1
    data_dir: Path = args.data_dir or ROOT / ".data" / ("demo" if args.demo else "influxdb3")
    if args.demo and data_dir.exists() and (args.data_dir is None or (data_dir / DEMO_MARKER).exists()):
        shutil.rmtree(data_dir)  # the demo starts from its sample data each time; make run's data is elsewhere
    data_dir.mkdir(parents=True, exist_ok=True)
    if args.demo:
        (data_dir / DEMO_MARKER).write_text("make demo empties this directory at each start\n")
    for line in make_secrets(args.secrets_dir):
        print(line, flush=True)
    admin_file = args.secrets_dir / ADMIN_TOKEN_FILE
    token = read_token_file(admin_file)
    url = f"http://127.0.0.1:{port}"
    log = open(args.log_file, "ab") if args.log_file else None  # noqa: SIM115 (closed in finally)
    children: list[subprocess.Popen] = []
    try:
        prov_env = dict(env)
        prov_env.update(
            INFLUXDB3_HOST_URL=url,
            INFLUXDB3_AUTH_TOKEN_FILE=str(admin_file),
            GITHUB_TOKEN_FILE=_local_secret(env, "GITHUB_TOKEN_FILE", args.secrets_dir / "github_token"),
            KAPA_TOKEN_FILE=_local_secret(env, "KAPA_TOKEN_FILE", args.secrets_dir / "kapa_token"),
            NOTIFY_URL_FILE=_local_secret(env, "NOTIFY_URL_FILE", args.secrets_dir / "notify_url"),
            # Plugins on the embedded engine import from this project's venv, which already has requests.
            INFLUXDB3_PLUGIN_PACKAGES=env.get("INFLUXDB3_PLUGIN_PACKAGES_EMBEDDED", ""),
        )
        if args.triggers_file:
            prov_env["PROVISION_TRIGGERS_FILE"] = args.triggers_file
        if args.demo:
            gh_port, kapa_port = free_port(), free_port()
            fakes = subprocess.Popen(
                [sys.executable, "-m", "tests.fakes", "--github-port", str(gh_port), "--kapa-port", str(kapa_port),
                 "--host", "127.0.0.1"], cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
            children.append(fakes)
            wait_for_port("127.0.0.1", gh_port, fakes, 20, "the fake GitHub")
            wait_for_port("127.0.0.1", kapa_port, fakes, 20, "the fake Kapa")
            demo_key = data_dir / "demo_kapa_key"
            demo_key.write_text(DEMO_KAPA_KEY)
            demo_key.chmod(0o600)
            prov_env.update(
                GITHUB_API_URL=f"http://127.0.0.1:{gh_port}",
                KAPA_API_URL=f"http://127.0.0.1:{kapa_port}",
                GITHUB_REPO=DEMO_REPO,
                GITHUB_BASE=DEMO_BASE,
                KAPA_PROJECT_ID=DEMO_PROJECT,
                KAPA_SOURCE_NAME=DEMO_SOURCE,
                # two Kapa sources over different content paths: one stale, one fresh (tests/fakes/sample.py)
                PROVISION_FRESHNESS_FILE=str(DEMO_FRESHNESS_FILE),
                KAPA_TOKEN_FILE=str(demo_key.resolve()),
                GITHUB_TOKEN_FILE="",  # no token: the plugin uses the fake GitHub's REST API unauthenticated
                NOTIFY_URL_FILE="",
            )
            print(f"fake GitHub on 127.0.0.1:{gh_port}, fake Kapa on 127.0.0.1:{kapa_port}", flush=True)

        flush = args.wal_flush_interval or ("100ms" if args.demo else "1s")
        server = subprocess.Popen(
            [sys.executable, "-m", "emulator", "serve", "--node-id", "aichat-local", "--object-store", "file",
             "--data-dir", str(data_dir / "store"), "--plugin-dir", str(args.plugin_dir),
             "--virtual-env-location", str(data_dir / "venv"),
             "--http-bind", f"127.0.0.1:{port}", "--admin-token-file", str(admin_file),
             "--disable-authz", "health,ping", "--wal-flush-interval", flush],
            cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
        children.append(server)
        wait_healthy(url, token, server, START_DEADLINE_S)
        rc = provision([], environ=prov_env)
        if rc != 0:
            print("provisioning failed (lines above); stopping", file=sys.stderr, flush=True)
            return rc
        print(
            f"{READY_LINE} on {url} (database {prov_env.get('INFLUXDB3_DATABASE') or 'aichat'}); Ctrl-C stops it\n"
            f"  TOKEN=$(python3 -c 'import json;print(json.load(open(\"{admin_file}\"))[\"token\"])')\n"
            f"  curl -s -X POST {url}/api/v3/engine/github_prs -H \"Authorization: Bearer $TOKEN\" "
            "-H 'Content-Type: application/json' -d '{\"time_period\": \"week\"}'\n"
            f"  curl -s -X POST {url}/api/v3/engine/kapa_sources -H \"Authorization: Bearer $TOKEN\"",
            flush=True,
        )
        while True:
            for child in children:
                if child.poll() is not None:
                    raise StackError(exit_message(child is server, child.returncode, args.demo))
            time.sleep(0.2)
    except StopRequested as stop_signal:
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            print(f"stopping ({stop_signal})", flush=True)
        return 0
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        for child in reversed(children):
            stop(child)
        if log:
            log.close()


if __name__ == "__main__":
    sys.exit(main())
