"""compose.yaml under Docker: health, provisioning (twice), both engine endpoints against the host's fake GitHub
and Kapa, an alert, secrets (read-only, readable by uid 1500, never in `docker inspect` or logs), a wrong token.

The fakes listen on the default bridge's gateway address only (not on every interface) and the server reaches
them as host.docker.internal (compose.test.yaml's host-gateway entry), as a user's stack reaches the real APIs.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
import requests

from tests.compose.conftest import ComposeStack
from tests.fakes.github import FakeGitHub
from tests.fakes.kapa import FakeKapa
from tests.fakes.sample import DEMO_PROJECT, DEMO_REPO, DEMO_SOURCE, populate_github, populate_kapa

pytestmark = pytest.mark.compose
DEADLINE_S = 60.0
NO_CHANGE = "no change: database, tables and triggers already as declared"


@pytest.fixture(scope="module")
def fakes(compose_env) -> Iterator[tuple[FakeGitHub, FakeKapa]]:
    now = datetime.now(UTC)
    gateway = compose_env["GATEWAY"]
    with FakeGitHub(accept_any_token=True, host=gateway) as github, FakeKapa(accept_any_key=True, host=gateway) as kapa:
        populate_github(github, now)
        populate_kapa(kapa, now)
        yield github, kapa


@pytest.fixture(scope="module")
def stack(compose_env, fakes, stack_factory) -> ComposeStack:
    github, kapa = fakes
    env = {k: v for k, v in compose_env.items() if k != "GATEWAY"}
    env.update({
        "GITHUB_API_URL": as_seen_from_containers(github.url),
        "KAPA_API_URL": as_seen_from_containers(kapa.url),
        "GITHUB_REPO": DEMO_REPO, "KAPA_PROJECT_ID": DEMO_PROJECT, "KAPA_SOURCE_NAME": DEMO_SOURCE,
    })
    stack = stack_factory(env)
    stack.up()
    return stack


@pytest.fixture(scope="module")
def first_provision(stack):
    """The first `docker compose run --rm provision` (builds the provision image on the local Python image)."""
    return stack.provision()


def as_seen_from_containers(url: str) -> str:
    """A host fake's URL as the server container reaches it (host.docker.internal, the same port)."""
    return f"http://host.docker.internal:{urlsplit(url).port}"


def admin_token(stack: ComposeStack) -> str:
    return json.loads((stack.directory / "secrets" / "influxdb3_admin_token.json").read_text())["token"]


def test_compose_up_wait_reaches_healthy(stack):
    (server,) = [c for c in stack.inspect() if c["Config"]["Labels"]["com.docker.compose.service"] == "influxdb3"]
    assert server["State"]["Health"]["Status"] == "healthy"
    assert requests.get(f"{stack.url()}/health", timeout=10).status_code == 200


def test_compose_provision_twice_second_run_changes_nothing(stack, first_provision):
    assert first_provision.returncode == 0, first_provision.stdout + first_provision.stderr
    assert "created database aichat" in first_provision.stdout
    second = stack.provision()
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.strip().splitlines()[-1] == NO_CHANGE


def test_compose_endpoints_through_the_published_port_write_an_alert(stack, first_provision, fakes):
    assert first_provision.returncode == 0
    url, h = stack.url(), {"Authorization": f"Bearer {admin_token(stack)}"}
    kapa = requests.post(f"{url}/api/v3/engine/kapa_sources", headers=h, timeout=60)
    assert kapa.status_code == 200, kapa.text
    gh = requests.post(f"{url}/api/v3/engine/github_prs", headers=h, json={"time_period": "week"}, timeout=60)
    assert gh.status_code == 200 and gh.json()["pr_count"] > 0, gh.text
    github, fake_kapa = fakes
    assert github.counts and fake_kapa.counts  # the server really called both fakes through host.docker.internal
    end, alerts = time.monotonic() + DEADLINE_S, []
    while time.monotonic() < end and not alerts:
        r = requests.post(f"{url}/api/v3/query_sql", headers=h, timeout=30,
                          json={"db": "aichat", "q": "SELECT * FROM documentation_alert", "format": "json"})
        alerts = r.json() if r.status_code == 200 else []
        if not alerts:
            time.sleep(0.2)  # polling the server's own answer, not waiting for readiness
    assert len(alerts) == 1 and alerts[0]["source_name"] == DEMO_SOURCE, alerts


def test_compose_secrets_are_read_only_and_readable_by_uid_1500(stack):
    digest = hashlib.sha256((stack.directory / "secrets" / "influxdb3_admin_token.json").read_bytes()).hexdigest()
    uid = stack.exec("influxdb3", ["id", "-u"])
    assert uid.stdout.strip() == "1500"
    read = stack.exec("influxdb3", ["sha256sum", "/run/secrets/influxdb3_admin_token"])
    assert read.returncode == 0 and read.stdout.split()[0] == digest, read.stderr
    for name in ("github_token", "kapa_token", "notify_url"):
        assert stack.exec("influxdb3", ["test", "-r", f"/run/secrets/{name}"]).returncode == 0, name
    write = stack.exec("influxdb3", ["sh", "-c", "echo x >> /run/secrets/kapa_token"], user="0")
    assert write.returncode != 0 and "Read-only file system" in write.stderr, write.stderr
    (server,) = [c for c in stack.inspect() if c["Config"]["Labels"]["com.docker.compose.service"] == "influxdb3"]
    secret_mounts = [m for m in server["Mounts"] if m["Destination"].startswith("/run/secrets/")]
    assert len(secret_mounts) == 4 and not any(m["RW"] for m in secret_mounts), secret_mounts


def test_compose_provision_with_a_wrong_token_fails_with_one_line_and_status_1(stack, first_provision):
    wrong = "apiv3_" + "x" * 86
    proc = stack.run("--profile", "provision", "run", "--rm", "--no-deps", "-e", f"INFLUXDB3_AUTH_TOKEN={wrong}",
                     "provision", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "401" in errors[0], proc.stderr
    assert wrong not in proc.stdout + proc.stderr


def test_compose_admin_token_never_in_docker_inspect_or_logs(stack, first_provision):
    """Last in the module: every container and every output so far is checked."""
    token = admin_token(stack)
    containers = stack.inspect()
    assert containers
    for c in containers:
        config = c["Config"]
        assert token not in json.dumps(config.get("Env") or []), c["Name"]
        assert token not in json.dumps([c.get("Path"), c.get("Args"), config.get("Cmd"), config.get("Entrypoint")])
        assert token not in json.dumps(config.get("Labels") or {})
        assert token not in json.dumps(c), c["Name"]
    logs = stack.logs()
    assert "startup time" in logs  # the logs were really read
    assert token not in logs
    assert all(token not in out for out in stack.outputs)
