"""Docker for the e2e and compose tests: is an engine there, and which images are on it.

Nothing here pulls: the project's machines reach no container registry. Images are either already on the
engine (the real ``influxdb:3.x-core`` on a user's machine) or built here by ``make images-local``, whose
names ``.env.local-images`` holds (the one list of them; read with :func:`local_images`).

Skip policy (STYLE.md "skip cleanly without Docker"): a test skips, with the reason, when no Docker engine
answers. When the engine answers but an image the test needs is absent, it skips too ("run make
images-local"), unless ``AICHAT_REQUIRE_DOCKER_TESTS=1`` (set by ``make test-e2e``, ``make test-compose`` and
``.ci/run`` after they built the images), where a missing image is a failure: those targets must run every
Docker test, never skip one.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_IMAGES_ENV = REPO_ROOT / ".env.local-images"
#: The pinned real image (``.env.example``'s INFLUXDB3_IMAGE); used when it is on the engine.
REAL_IMAGE_DEFAULT = "influxdb:3.11.1-core"


def require_docker_tests() -> bool:
    """True where a missing image must fail instead of skip (``AICHAT_REQUIRE_DOCKER_TESTS=1``)."""
    return os.environ.get("AICHAT_REQUIRE_DOCKER_TESTS", "").strip().lower() in {"1", "true", "yes"}


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a Compose env file (``#`` comments and blank lines ignored; no quoting)."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


def local_images() -> dict[str, str]:
    """The images ``make images-local`` builds, by setting name (``INFLUXDB3_IMAGE``, ``PROVISION_PYTHON_IMAGE``)."""
    return read_env_file(LOCAL_IMAGES_ENV)


def docker_client_or_skip():
    """A docker-py client whose engine answered a ping; else ``pytest.skip`` with the reason.

    docker.from_env() raises DockerException when no engine answers (external-apis.md D).
    """
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        pytest.skip("the docker package is not installed (pip install -e '.[test]')")
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        pytest.skip(f"no Docker engine answers ({type(exc).__name__}: {str(exc)[:120]}); these tests need one")
    return client


def image_present(client, name: str) -> bool:
    """True when the engine has image ``name`` locally (never pulls)."""
    from docker.errors import ImageNotFound

    try:
        client.images.get(name)
    except ImageNotFound:
        return False
    return True


def missing_image(what: str) -> None:
    """Skip (or fail under AICHAT_REQUIRE_DOCKER_TESTS=1) because an image is not on the engine."""
    message = f"{what}; build it with: make images-local"
    if require_docker_tests():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class EngineImage:
    """The server image a Docker test runs, and why that one."""

    name: str
    why: str


def pick_engine_image(client) -> EngineImage:
    """``INFLUXDB3_IMAGE`` (or the pinned real image) when the engine has it, else the local embedded image.

    Skips (or fails, see :func:`missing_image`) when neither is on the engine.
    """
    wanted = os.environ.get("INFLUXDB3_IMAGE", "").strip() or REAL_IMAGE_DEFAULT
    if image_present(client, wanted):
        return EngineImage(wanted, "INFLUXDB3_IMAGE" if os.environ.get("INFLUXDB3_IMAGE") else "the pinned real image")
    local = local_images()["INFLUXDB3_IMAGE"]
    if image_present(client, local):
        why = f"{wanted} is not on this engine; the embedded engine's local image"
        if not local_image_is_current(client, local):
            why += ", built from an older emulator/ (make images-local rebuilds it)"
        return EngineImage(local, why)
    missing_image(f"neither {wanted} nor the local image {local} is on this Docker engine")
    raise AssertionError("unreachable")


def local_image_is_current(client, name: str) -> bool:
    """True when the local engine image was built from this checkout's emulator/ (its source label)."""
    from scripts.images_local import ENGINE_LABEL, engine_source_sha256

    labels = client.images.get(name).labels or {}
    return labels.get(ENGINE_LABEL) == engine_source_sha256(REPO_ROOT)


def provision_python_image(client) -> str:
    """The base image for provisioning/Dockerfile: ``PROVISION_PYTHON_IMAGE`` if present, else the local one."""
    wanted = os.environ.get("PROVISION_PYTHON_IMAGE", "").strip()
    if wanted and image_present(client, wanted):
        return wanted
    local = local_images()["PROVISION_PYTHON_IMAGE"]
    if image_present(client, local):
        return local
    missing_image(f"no Python base image for provisioning/Dockerfile ({wanted or 'PROVISION_PYTHON_IMAGE unset'}, "
                  f"local {local} absent)")
    raise AssertionError("unreachable")


def host_gateway_ip(client) -> str:
    """The address ``host-gateway`` stands for (the default bridge's gateway): where host fakes listen.

    Engines that leave the gateway out of the IPAM config give the bridge its subnet's first address.
    """
    config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
