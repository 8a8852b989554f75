"""Fixtures for the plugin unit tests: loopback fakes, plugin harnesses, a clean environment.

Plugins run on the embedded engine's plugin runtime (emulator.harness.PluginHarness); outbound HTTP goes to
the real HTTP servers of tests/fakes on 127.0.0.1. Nothing here patches `requests`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from emulator.harness import PluginHarness
from tests.fakes.github import FakeGitHub
from tests.fakes.kapa import FakeKapa
from tests.fakes.webhook import FakeWebhook

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
GITHUB_TOKEN = "ghp_unitTESTtoken0123456789abcdefXYZ"
KAPA_KEY = "kapa_unitTESTkey9876543210zyxwvuABC"
#: retry settings that keep fault tests fast: tiny backoff, short timeouts, a small budget
FAST = {"timeout_seconds": "0.3", "budget_seconds": "8", "max_retries": "3", "backoff_seconds": "0.01"}

_SETTINGS_ENV = (
    "GITHUB_REPO", "GITHUB_BASE", "GITHUB_API_URL", "GITHUB_TOKEN", "GITHUB_TOKEN_FILE",
    "KAPA_PROJECT_ID", "KAPA_INTEGRATION_ID", "KAPA_API_URL", "KAPA_TOKEN", "KAPA_TOKEN_FILE",
    "KAPA_SOURCE_NAME", "NOTIFY_URL_FILE",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plugins read settings from the environment too: start every test without any."""
    for name in _SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def now() -> datetime:
    """Now, in whole seconds (GitHub's precision)."""
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def github_token() -> str:
    return GITHUB_TOKEN


@pytest.fixture
def kapa_key() -> str:
    return KAPA_KEY


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(token=GITHUB_TOKEN) as fake:
        yield fake


@pytest.fixture
def kapa() -> Iterator[FakeKapa]:
    with FakeKapa(api_key=KAPA_KEY) as fake:
        yield fake


@pytest.fixture
def webhook() -> Iterator[FakeWebhook]:
    with FakeWebhook() as fake:
        yield fake


@pytest.fixture
def make_harness() -> Iterator[Callable[..., PluginHarness]]:
    """make_harness("github_prs.py", args) -> a PluginHarness, closed after the test."""
    made: list[PluginHarness] = []

    def factory(plugin: str, args: dict[str, str] | None = None) -> PluginHarness:
        harness = PluginHarness(PLUGINS / plugin, args=args)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        harness.close()


@pytest.fixture
def fast() -> dict[str, str]:
    """Retry settings that keep fault tests fast (a copy per test)."""
    return dict(FAST)


@pytest.fixture
def exposed() -> Callable[[object, PluginHarness], str]:
    """exposed(result, harness): everything a plugin call exposed (response body, every log line so far,
    every written line), for asserting that a secret appears nowhere."""

    def collect(result: object, harness: PluginHarness) -> str:
        body = getattr(result, "body", b"") or b""
        logs = "\n".join(text for _level, text in harness.logs)
        writes = "\n".join(getattr(result, "writes", []) or [])
        return "\n".join([body.decode("utf-8", "replace"), logs, writes])

    return collect
