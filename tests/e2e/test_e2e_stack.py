"""The stack flow against an InfluxDB 3 Core server image via testcontainers (marker ``e2e``).

The image is ``INFLUXDB3_IMAGE`` (default: the pinned real ``influxdb:3.x-core``) when the Docker engine has it,
else the embedded engine's local image from ``make images-local``; the run's closing lines name the one used.
These tests use only what the real image offers (its command, paths, uid 1500, curl), so the same tests pass
against both. Plugins are mounted at /plugins; the fake GitHub and Kapa listen on the host's bridge gateway address and the
container reaches them as host.docker.internal (extra_hosts host-gateway). Without a Docker engine every test
here is skipped with the reason (tests/docker_support.py). The provisioning image is built here as well.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from provisioning.cli import main as provision
from tests.docker_support import (
    docker_client_or_skip,
    host_gateway_ip,
    pick_engine_image,
    provision_python_image,
)
from tests.e2e.conftest import USED_IMAGES
from tests.fakes.github import FakeGitHub
from tests.fakes.kapa import FakeKapa
from tests.fakes.sample import DEMO_PROJECT, DEMO_REPO, DEMO_SOURCE, populate_github, populate_kapa
from tests.support import make_token_file

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def real_server(tmp_path_factory) -> Iterator[tuple[str, str, Path]]:
    image = pick_engine_image(docker_client_or_skip())
    USED_IMAGES.append(f"server image {image.name} ({image.why})")
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import HttpWaitStrategy

    tmp = tmp_path_factory.mktemp("e2e")
    token_file = tmp / "admin-token.json"
    token = make_token_file(token_file)
    token_file.chmod(0o644)  # the container's uid 1500 must read the bind-mounted file
    kapa_key = tmp / "kapa_token"
    kapa_key.write_text("e2e-key")
    kapa_key.chmod(0o644)
    container = (
        DockerContainer(image.name)
        .with_exposed_ports(8181)
        .with_volume_mapping(str(ROOT / "plugins"), "/plugins", "ro")
        .with_volume_mapping(str(token_file), "/run/secrets/influxdb3_admin_token", "ro")
        .with_volume_mapping(str(kapa_key), "/run/secrets/kapa_token", "ro")
        .with_kwargs(extra_hosts={"host.docker.internal": "host-gateway"})
        .with_command(["influxdb3", "serve", "--node-id=e2e", "--object-store=memory", "--plugin-dir=/plugins",
                       "--virtual-env-location=/var/lib/influxdb3/venv",
                       "--admin-token-file=/run/secrets/influxdb3_admin_token",
                       "--disable-authz=health,ping", "--wal-flush-interval=100ms"])
        .waiting_for(HttpWaitStrategy(8181, "/health").for_status_code(200).with_startup_timeout(DEADLINE_S))
    )
    with container:
        url = f"http://{container.get_container_host_ip()}:{container.get_exposed_port(8181)}"
        yield url, token, tmp


def test_e2e_provision_twice_and_alert_once_on_the_real_server(real_server):
    url, token, tmp = real_server
    now = datetime.now(UTC)
    # The fakes listen on the bridge gateway only; the server reaches them as host.docker.internal, and the
    # links they hand out (pagination, PR files) carry the gateway address, which containers reach as well.
    gateway = host_gateway_ip(docker_client_or_skip())
    with FakeGitHub(accept_any_token=True, host=gateway) as github, FakeKapa(accept_any_key=True, host=gateway) as kapa:
        populate_github(github, now)
        populate_kapa(kapa, now)
        env = {
            "PROVISION_ENV_FILE": str(tmp / "no.env"), "INFLUXDB3_HOST_URL": url, "INFLUXDB3_AUTH_TOKEN": token,
            "GITHUB_API_URL": github.url.replace(gateway, "host.docker.internal"),
            "KAPA_API_URL": kapa.url.replace(gateway, "host.docker.internal"),
            "GITHUB_REPO": DEMO_REPO, "KAPA_PROJECT_ID": DEMO_PROJECT, "KAPA_SOURCE_NAME": DEMO_SOURCE,
            "GITHUB_TOKEN_FILE": "", "NOTIFY_URL_FILE": "", "KAPA_TOKEN_FILE": "/run/secrets/kapa_token",
        }
        out, err = io.StringIO(), io.StringIO()
        assert provision([], out=out, err=err, environ=env) == 0, err.getvalue()
        out2 = io.StringIO()
        assert provision([], out=out2, err=err, environ=env) == 0, err.getvalue()
        assert out2.getvalue().splitlines()[-1] == "no change: database, tables and triggers already as declared"
        h = {"Authorization": f"Bearer {token}"}
        assert requests.post(f"{url}/api/v3/engine/kapa_sources", headers=h, timeout=60).status_code == 200
        gh = requests.post(f"{url}/api/v3/engine/github_prs", headers=h, json={"time_period": "week"}, timeout=60)
        assert gh.status_code == 200 and gh.json()["pr_count"] > 0, gh.text
        end = time.monotonic() + DEADLINE_S
        alerts: list = []
        while time.monotonic() < end and not alerts:
            r = requests.post(f"{url}/api/v3/query_sql", headers=h, timeout=30,
                              json={"db": "aichat", "q": "SELECT * FROM documentation_alert", "format": "json"})
            alerts = r.json() if r.status_code == 200 else []
            time.sleep(0.2)
        assert len(alerts) == 1, alerts


def test_e2e_provisioning_image_builds():
    client = docker_client_or_skip()
    base = provision_python_image(client)
    USED_IMAGES.append(f"provisioning image built on {base}")
    image, _logs = client.images.build(path=str(ROOT / "provisioning"), tag="aichat-stack-provision:e2e", rm=True,
                                       buildargs={"PYTHON_IMAGE": base})
    config = client.api.inspect_image(image.id)["Config"]
    assert config["User"] == "1500:1500"
    assert config["Entrypoint"] == ["python", "-m", "provisioning"]
    out = client.containers.run(image.id, ["--help"], remove=True)
    assert b"--dry-run" in out
