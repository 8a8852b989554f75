"""The server image's contract, as influxdata-docker's influxdb/3.x-core/Dockerfile sets it (external-apis.md C1,
reference §13): the same assertions hold for the real image and for the local embedded-engine image, which must
stand in for it without compose.yaml knowing which one runs."""

from __future__ import annotations

import pytest

from tests.docker_support import docker_client_or_skip, pick_engine_image
from tests.e2e.conftest import USED_IMAGES

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def image():
    client = docker_client_or_skip()
    picked = pick_engine_image(client)
    USED_IMAGES.append(f"image contract checked on {picked.name} ({picked.why})")
    return client, picked.name


def run(client, name: str, command: list[str], **kwargs) -> str:
    """The output (stdout and stderr) of ``command`` run through the image's entrypoint, whatever its exit status."""
    container = client.containers.create(name, command, network_mode="none", **kwargs)
    try:
        container.start()
        container.wait(timeout=60)
        return container.logs(stdout=True, stderr=True).decode()
    finally:
        container.remove(force=True)


def test_e2e_image_runs_as_influxdb3_uid_1500_owning_data_and_plugins(image):
    client, name = image
    config = client.api.inspect_image(name)["Config"]
    assert config["User"] in ("influxdb3", "1500", "1500:1500")
    assert "8181/tcp" in config["ExposedPorts"]
    assert config["Cmd"] == ["influxdb3", "serve"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["INFLUXDB3_PLUGIN_DIR"] == "/plugins"
    out = run(client, name, ["sh", "-c", "id -u; id -g; stat -c '%u:%g %n' /var/lib/influxdb3 /plugins; command -v curl"])
    assert out.split("\n")[:5] == ["1500", "1500", "1500:1500 /var/lib/influxdb3", "1500:1500 /plugins",
                                   "/usr/bin/curl"], out


def test_e2e_image_entrypoint_prefixes_serve_and_expands_variables(image):
    client, name = image
    # A leading `serve` or `-flag` becomes `influxdb3 serve ...`; --help proves which program answered.
    assert "--node-id" in run(client, name, ["serve", "--help"])
    assert "--node-id" in run(client, name, ["--help"])
    # Each argument of an influxdb3 command goes through envsubst; INFLUXDB3_UNSET_VARS drops variables first.
    out = run(client, name, ["influxdb3", "serve", "--node-id=${NODE}", "--http-bind=bad-${NODE}"],
              environment={"NODE": "n1"})
    assert "bad-n1" in out, out
    out = run(client, name, ["influxdb3", "serve", "--node-id=n", "--http-bind=x${DROPME}y"],
              environment={"DROPME": "-kept-", "INFLUXDB3_UNSET_VARS": "DROPME"})
    assert "'xy'" in out, out
