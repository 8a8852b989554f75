"""The Compose stack under a real Docker Engine (marker ``compose``; ``make test-compose``).

Each test module gets a compose project of its own (:class:`ComposeStack`): the repository's compose.yaml plus
``compose.test.yaml`` beside this file, run with ``--project-directory`` in a temporary folder that holds what
compose.yaml mounts (plugins/, provisioning/, secrets/) and the ``.env``, so the user's own ``.env`` and
``secrets/`` are never touched. Readiness comes from the healthchecks (``up --wait``), never a sleep; teardown
always runs ``down -v``; a failing test gets the services' logs in its report.

testcontainers' ``DockerCompose`` runs the same commands but takes no project name or project directory, which
these tests need (one project per module, files outside the repository), hence this small class.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.docker_support import (
    REPO_ROOT,
    docker_client_or_skip,
    host_gateway_ip,
    pick_engine_image,
    provision_python_image,
    require_docker_tests,
)
from tests.support import free_port

HERE = Path(__file__).resolve().parent
TEST_OVERRIDE = HERE / "compose.test.yaml"
#: compose commands that start or build things may take this long (the provision image build included)
COMMAND_TIMEOUT_S = 300
#: filled by the stacks: which images the compose tests ran with
USED_IMAGES: list[str] = []


class ComposeError(RuntimeError):
    """A docker compose command failed; carries its output."""


class ComposeStack:
    """One compose project: ``docker compose -p NAME --project-directory DIR -f compose.yaml -f compose.test.yaml``.

    Example::

        stack = ComposeStack("aichat-ct-x", tmp_dir, env={"INFLUXDB3_PORT": "18181"})
        stack.up()              # up -d --wait influxdb3
        r = stack.run("--profile", "provision", "run", "--rm", "provision", check=False)
        stack.down()            # down -v
    """

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory
        #: every output of `run` so far (tests check it for secrets)
        self.outputs: list[str] = []

    @property
    def base(self) -> list[str]:
        return ["docker", "compose", "--project-name", self.name, "--project-directory", str(self.directory),
                "--file", str(REPO_ROOT / "compose.yaml"), "--file", str(TEST_OVERRIDE),
                "--env-file", str(self.directory / ".env")]

    def run(self, *args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess:
        """Run ``docker compose <args>`` for this project; raise ComposeError on failure when ``check``."""
        proc = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=timeout, check=False,
                              env={**os.environ, "COMPOSE_PROGRESS": "plain", "COMPOSE_ANSI": "never"})
        self.outputs.append(proc.stdout + proc.stderr)
        if check and proc.returncode != 0:
            raise ComposeError(f"docker compose {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        return proc

    def up(self) -> None:
        """Start influxdb3 and wait until its healthcheck passes (Grafana has no local image: not started)."""
        self.run("up", "--detach", "--wait", "influxdb3")

    def provision(self, *extra: str) -> subprocess.CompletedProcess:
        """``docker compose --profile provision run --rm provision`` (built on first use); never raises."""
        return self.run("--profile", "provision", "run", "--rm", "--build", *extra, "provision", check=False)

    def down(self, volumes: bool = True) -> None:
        self.run("--profile", "provision", "down", *(["--volumes"] if volumes else []), "--remove-orphans")

    def logs(self) -> str:
        proc = self.run("--profile", "provision", "logs", "--no-color", "--timestamps", check=False, timeout=60)
        return proc.stdout + proc.stderr

    def container_ids(self) -> list[str]:
        """Ids of every container of the project, running or not."""
        proc = self.run("--profile", "provision", "ps", "--all", "--quiet", timeout=60)
        return proc.stdout.split()

    def inspect(self) -> list[dict]:
        ids = self.container_ids()
        if not ids:
            return []
        out = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True, timeout=60)
        return json.loads(out.stdout)

    def exec(self, service: str, command: Sequence[str], *, user: str | None = None) -> subprocess.CompletedProcess:
        args = ["exec", "-T", *(["--user", user] if user else []), service, *command]
        return self.run(*args, check=False, timeout=60)

    def url(self) -> str:
        """http://127.0.0.1:<published port> of influxdb3."""
        port = self.run("port", "influxdb3", "8181", timeout=60).stdout.strip().rsplit(":", 1)[1]
        return f"http://127.0.0.1:{port}"


def compose_v2_or_skip() -> None:
    """Skip (fail under AICHAT_REQUIRE_DOCKER_TESTS=1) when ``docker compose`` (v2) is not installed."""
    if shutil.which("docker") is not None and subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return
    message = "Compose v2 (`docker compose`) is not installed here; make compose-plugin installs it"
    if require_docker_tests():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def make_project_dir(directory: Path, env: Mapping[str, str], *, kapa_key: str) -> None:
    """What compose.yaml mounts, in ``directory``: plugins/, provisioning/ and secrets/ (made and given to uid
    1500 by the same make targets `make up` runs), and ``.env`` (.env.example + ``env``)."""
    shutil.copytree(REPO_ROOT / "plugins", directory / "plugins", ignore=shutil.ignore_patterns("__pycache__", ".venv"))
    shutil.copytree(REPO_ROOT / "provisioning", directory / "provisioning", ignore=shutil.ignore_patterns("__pycache__"))
    secrets = directory / "secrets"
    secrets.mkdir()
    (secrets / "kapa_token").write_text(kapa_key)
    (secrets / "kapa_token").chmod(0o600)
    for target in ("secrets", "secrets-access"):
        proc = subprocess.run(["make", "--no-print-directory", "-C", str(REPO_ROOT), target, f"SECRETS_DIR={secrets}"],
                              capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise ComposeError(f"make {target} failed:\n{proc.stdout}{proc.stderr}")
    lines = [(REPO_ROOT / ".env.example").read_text()]
    lines += [f"{k}={v}" for k, v in env.items()]
    (directory / ".env").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def compose_env(request) -> dict[str, str]:
    """Settings every test project uses: images (real where present, else local), a free port, fakes' URLs."""
    client = docker_client_or_skip()
    compose_v2_or_skip()
    engine = pick_engine_image(client)
    python = provision_python_image(client)
    module = request.module.__name__.rsplit(".", 1)[-1]
    USED_IMAGES.append(f"{module}: influxdb3 {engine.name} ({engine.why}); provision built on {python}")
    return {"INFLUXDB3_IMAGE": engine.name, "PROVISION_PYTHON_IMAGE": python, "INFLUXDB3_PORT": str(free_port()),
            "GATEWAY": host_gateway_ip(client)}


def project_name(request) -> str:
    """One compose project per test module (and per run: parallel runs on one engine do not collide)."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_compose_").replace("_", "-")
    return f"aichat-ct-{module}-{os.getpid()}"


@pytest.fixture(scope="module")
def stack_factory(request, tmp_path_factory) -> Iterator:
    """Make (once per module) a ComposeStack with ``env`` added to .env; always ``down -v`` at the end."""
    stacks: list[ComposeStack] = []

    def make(env: Mapping[str, str], *, kapa_key: str = "compose-kapa-key") -> ComposeStack:
        directory = tmp_path_factory.mktemp("compose-project")
        make_project_dir(directory, env, kapa_key=kapa_key)
        stack = ComposeStack(project_name(request), directory)
        stacks.append(stack)
        request.node.compose_stack = stack  # for the failure logs below
        return stack

    yield make
    for stack in stacks:
        stack.down(volumes=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, add the project's service logs to the test's report."""
    outcome = yield
    report = outcome.get_result()
    stack = getattr(item.parent, "compose_stack", None)
    if report.failed and stack is not None:
        try:
            report.sections.append((f"docker compose logs ({stack.name})", stack.logs()))
        except (ComposeError, subprocess.SubprocessError, OSError) as exc:
            report.sections.append(("docker compose logs", f"could not read them: {exc}"))


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001 - pytest hook signature
    for line in USED_IMAGES:
        terminalreporter.write_line(f"compose: {line}")
