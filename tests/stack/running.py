"""make run's parts on loopback for the stack tests: the fake GitHub and Kapa with the demo data, an engine with
auth and the project's plugins, and the provisioning environment that points at them."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from provisioning.cli import main as provision
from tests.fakes.github import FakeGitHub
from tests.fakes.kapa import FakeKapa
from tests.fakes.sample import DEMO_PROJECT, populate_github, populate_kapa
from tests.support import ServerProcess, start_server

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 30.0


@dataclass
class Stack:
    """One running stack: the engine, the provisioning environment and the two fakes."""

    server: ServerProcess
    env: dict[str, str]
    github: FakeGitHub
    kapa: FakeKapa

    def provision(self, *args: str, **overrides: str) -> tuple[int, str, str]:
        """Run provisioning in-process; returns (exit status, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        rc = provision(list(args), out=out, err=err, environ={**self.env, **overrides})
        return rc, out.getvalue(), err.getvalue()

    def sql(self, q: str) -> list[dict]:
        """Rows of ``q`` on database aichat (JSON format); asserts a 200."""
        r = self.server.session.post(f"{self.server.url}/api/v3/query_sql",
                                     json={"db": "aichat", "q": q, "format": "json"}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def call(self, path: str, body: dict) -> requests.Response:
        """POST ``body`` to the request trigger at /api/v3/engine/<path>."""
        return self.server.session.post(f"{self.server.url}/api/v3/engine/{path}", json=body, timeout=60)


def poll(check: Callable[[], object], what: str, deadline_s: float = DEADLINE_S) -> object:
    """Re-run ``check`` until it returns a truthy value; fail with ``what`` at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s}s waiting for {what}")
        time.sleep(0.05)


@contextmanager
def running_stack(tmp: Path, **settings: str) -> Iterator[Stack]:
    """Start the fakes (with the demo data as of now) and an engine under ``tmp``; ``settings`` add to or
    override the provisioning environment (e.g. PROVISION_FRESHNESS_FILE). Nothing is provisioned yet."""
    now = datetime.now(UTC)
    github = FakeGitHub(accept_any_token=True).start()
    kapa = FakeKapa(accept_any_key=True).start()
    populate_github(github, now)
    populate_kapa(kapa, now)
    key = tmp / "kapa_key"
    key.write_text("stack-test-key")
    try:
        with start_server(tmp / "server", auth=True, plugin_dir=ROOT / "plugins", wal_flush_interval="100ms",
                          extra_args=["--virtual-env-location", str(tmp / "venv")]) as srv:
            env = {
                "PROVISION_ENV_FILE": str(tmp / "no.env"),
                "INFLUXDB3_HOST_URL": srv.url,
                "INFLUXDB3_AUTH_TOKEN_FILE": str(tmp / "server" / "admin-token.json"),
                "INFLUXDB3_PLUGIN_PACKAGES": "",
                "PROVISION_WAIT_SECONDS": "20",
                "GITHUB_API_URL": github.url,
                "GITHUB_TOKEN_FILE": "",
                "KAPA_API_URL": kapa.url,
                "KAPA_PROJECT_ID": DEMO_PROJECT,
                "KAPA_TOKEN_FILE": str(key),
                "NOTIFY_URL_FILE": "",
                **settings,
            }
            yield Stack(srv, env, github, kapa)
    finally:
        github.stop()
        kapa.stop()
