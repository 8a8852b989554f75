"""compose.yaml: valid against the Compose Specification schema, pinned images, healthchecks, secrets, and no
token in plain text anywhere in the committed stack files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from dotenv import dotenv_values

from tests.docker_support import require_docker_tests

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SCHEMA = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
ENV_EXAMPLE = dotenv_values(ROOT / ".env.example")
_VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


def resolve(text: str, env: dict[str, str | None]) -> str:
    """Expand ${VAR:-default} as Compose does, with ``env`` as the .env file."""
    return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), text)


def test_compose_validates_against_the_compose_spec_schema():
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.Draft7Validator(SCHEMA).validate(COMPOSE)


def test_compose_has_the_three_services_and_one_logging_anchor():
    assert set(COMPOSE["services"]) == {"influxdb3", "provision", "grafana"}
    assert "x-default-logging" in COMPOSE
    for name, svc in COMPOSE["services"].items():
        assert svc["logging"] == COMPOSE["x-default-logging"], name
        assert svc["deploy"]["resources"]["limits"]["memory"], name


@pytest.mark.parametrize("env", [{}, ENV_EXAMPLE], ids=["defaults", "env-example"])
def test_compose_images_are_pinned(env):
    images = {n: resolve(s["image"], env) for n, s in COMPOSE["services"].items()}
    assert images["influxdb3"] == "influxdb:3.11.1-core"
    assert images["grafana"] == "grafana/grafana:12.2.1"
    for name, image in images.items():
        repo, _, tag = image.rpartition(":")
        assert repo and tag, f"{name}: {image} has no tag"
        assert tag != "latest" and not tag.startswith("3-") and re.search(r"\d+\.\d+\.\d+", tag), f"{name}: {image}"
    build_arg = resolve(COMPOSE["services"]["provision"]["build"]["args"]["PYTHON_IMAGE"], env)
    assert build_arg == "python:3.12.11-slim-bookworm"
    dockerfile = (ROOT / "provisioning" / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.12.11-slim-bookworm" in dockerfile
    assert re.search(r"^USER 1500:1500$", dockerfile, re.M)


def test_compose_influxdb3_serves_with_the_issue_flags():
    svc = COMPOSE["services"]["influxdb3"]
    cmd = svc["command"]
    assert cmd[:2] == ["influxdb3", "serve"]
    flags = dict(a.split("=", 1) for a in cmd[2:])
    assert flags == {
        "--node-id": "${INFLUXDB3_NODE_ID:-aichat-node0}",
        "--object-store": "file",
        "--data-dir": "/var/lib/influxdb3/data",
        "--plugin-dir": "/plugins",
        "--virtual-env-location": "/var/lib/influxdb3/venv",
        "--admin-token-file": "/run/secrets/influxdb3_admin_token",
        "--disable-authz": "health,ping",
        "--http-bind": "0.0.0.0:8181",
    }
    assert svc["volumes"] == ["influxdb3-data:/var/lib/influxdb3", "./plugins:/plugins:ro"]
    assert svc["ports"] == ["${INFLUXDB3_BIND_ADDRESS:-127.0.0.1}:${INFLUXDB3_PORT:-8181}:8181"]
    assert set(svc["secrets"]) == {"influxdb3_admin_token", "github_token", "kapa_token", "notify_url"}


def test_compose_services_have_complete_healthchecks_and_provision_waits_for_healthy():
    for name in ("influxdb3", "grafana"):
        hc = COMPOSE["services"][name]["healthcheck"]
        assert set(hc) == {"test", "interval", "timeout", "retries", "start_period"}, name
    assert COMPOSE["services"]["influxdb3"]["healthcheck"]["test"] == [
        "CMD", "curl", "-fsS", "http://127.0.0.1:8181/health"]
    prov = COMPOSE["services"]["provision"]
    assert prov["depends_on"] == {"influxdb3": {"condition": "service_healthy"}}
    assert prov["profiles"] == ["provision"]
    assert prov["build"]["context"] == "./provisioning"
    assert prov["environment"]["INFLUXDB3_AUTH_TOKEN_FILE"] == "/run/secrets/influxdb3_admin_token"
    assert COMPOSE["services"]["grafana"]["depends_on"] == {"influxdb3": {"condition": "service_healthy"}}


def test_compose_secrets_come_from_files_in_secrets_dir():
    assert COMPOSE["secrets"] == {
        "influxdb3_admin_token": {"file": "./secrets/influxdb3_admin_token.json"},
        "github_token": {"file": "./secrets/github_token"},
        "kapa_token": {"file": "./secrets/kapa_token"},
        "notify_url": {"file": "./secrets/notify_url"},
    }
    for svc in COMPOSE["services"].values():
        for key, value in (svc.get("environment") or {}).items():
            assert not (key.endswith("_TOKEN") or key.endswith("_KEY") or key.endswith("PASSWORD")), key
            assert not re.match(r"^(apiv3_|ghp_|github_pat_)", str(value)), key


_TOKEN_TEXT = re.compile(r"apiv3_[A-Za-z0-9_-]{20,}|ghp_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}")
_STACK_FILES = ("compose.yaml", ".env.example", "provisioning/triggers.toml", "provisioning/Dockerfile",
                "grafana/provisioning/datasources/influxdb3.yaml", "grafana/entrypoint.sh", "Makefile",
                ".github/workflows/ci.yml", "README.md")


@pytest.mark.parametrize("rel", _STACK_FILES)
def test_compose_no_token_in_plain_text(rel):
    path = ROOT / rel
    assert path.is_file(), rel
    assert not _TOKEN_TEXT.search(path.read_text()), f"{rel} contains something that looks like a token"


def test_compose_env_example_lists_every_compose_variable_with_a_comment():
    text = (ROOT / "compose.yaml").read_text()
    used = {m.group(1) for m in _VAR.finditer(text)} - {"AICHAT_VERSION"}
    assert used - set(ENV_EXAMPLE) == set()
    lines = (ROOT / ".env.example").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[A-Z0-9_]+=", line):
            assert lines[i - 1].startswith("#"), f"{line} has no comment above it"
    assert not any(k.endswith("_TOKEN") and not k.endswith("_FILE") for k in ENV_EXAMPLE)


def _docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


def _compose_v2_installed() -> bool:
    return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20).returncode == 0


@pytest.mark.skipif(not _docker_engine_answers(), reason="no Docker engine answers `docker info` here")
def test_compose_docker_compose_config_accepts_the_file(tmp_path: Path):
    if not _compose_v2_installed():
        message = "Compose v2 (`docker compose`) is not installed here; make compose-plugin installs it"
        if require_docker_tests():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    r = subprocess.run(["docker", "compose", "--env-file", str(ROOT / ".env.example"), "-f", str(ROOT / "compose.yaml"),
                        "--profile", "provision", "config", "--quiet"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_compose_readme_links_only_design_documents_inside_the_repository():
    """README's design links point into docs/ (issue 8: no document outside the repository)."""
    readme = (ROOT / "README.md").read_text()
    assert "../shared" not in readme and "shared/DESIGN" not in readme
    assert "`docs/design.md`" in readme and (ROOT / "docs" / "design.md").is_file()
    assert "shared/reference" not in (ROOT / "docs" / "design.md").read_text()
