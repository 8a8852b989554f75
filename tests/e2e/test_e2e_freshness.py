"""The provisioning image checks freshness.toml with the matcher of plugins/docs_freshness.py, mounted read-only at
/plugins as compose.yaml mounts it: a bad glob stops it with one error line, a good file gets past the check (to
the server wait). Skipped with the reason where no Docker engine or base image is present."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docker_support import docker_client_or_skip, provision_python_image

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
GOOD = '[[source]]\nkapa_source = "Documentation"\nrepos = ["influxdata/docs-v2@master"]\npaths = ["content/**"]\n'


@pytest.fixture(scope="module")
def provision_image():
    client = docker_client_or_skip()
    base = provision_python_image(client)
    image, _logs = client.images.build(path=str(ROOT / "provisioning"), tag="aichat-stack-provision:e2e", rm=True,
                                       buildargs={"PYTHON_IMAGE": base})
    return client, image


def _run(provision_image, tmp_path: Path, text: str) -> tuple[int, str]:
    client, image = provision_image
    tmp_path.chmod(0o755)  # the container runs as uid 1500
    f = tmp_path / "freshness.toml"
    f.write_text(text)
    f.chmod(0o644)
    container = client.containers.run(
        image.id, ["--freshness-file", "/cfg/freshness.toml"], detach=True,
        environment={"PROVISION_PLUGIN_DIR": "/plugins", "INFLUXDB3_HOST_URL": "http://127.0.0.1:9",
                     "PROVISION_WAIT_SECONDS": "0.5"},
        volumes={str(ROOT / "plugins"): {"bind": "/plugins", "mode": "ro"},
                 str(tmp_path): {"bind": "/cfg", "mode": "ro"}})
    try:
        rc = container.wait(timeout=60)["StatusCode"]
        err = container.logs(stdout=False, stderr=True).decode()
    finally:
        container.remove(force=True)
    return rc, err


def test_e2e_provisioning_image_rejects_a_bad_glob_with_the_plugins_matcher(provision_image, tmp_path):
    rc, err = _run(provision_image, tmp_path, GOOD.replace("content/**", "content/[a-z]*"))
    assert rc == 1
    assert err.splitlines() == [
        "error: /cfg/freshness.toml: source 'Documentation': paths glob 'content/[a-z]*' is not accepted: "
        "'content/[a-z]*' uses [...] ranges, which CODEOWNERS-style globs do not support; use * or ? or list "
        "each path"]


def test_e2e_provisioning_image_accepts_a_good_file(provision_image, tmp_path):
    rc, err = _run(provision_image, tmp_path, GOOD)
    assert rc == 1 and "was not healthy within 0.5s" in err and "freshness" not in err
