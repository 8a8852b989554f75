"""Settings from the environment and ``.env`` (python-dotenv). The environment wins over ``.env``.

Secrets arrive as file paths (``INFLUXDB3_AUTH_TOKEN_FILE``); the token itself is kept in memory only and
never appears in ``repr()``, logs or error messages.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from dotenv import dotenv_values

from provisioning.errors import ConfigError

DEFAULT_HOST_URL = "http://127.0.0.1:8181"
DEFAULT_DATABASE = "aichat"
DEFAULT_WAIT_SECONDS = 60.0
DEFAULT_PACKAGES = ("requests",)
PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_TRIGGERS_FILE = PACKAGE_DIR / "triggers.toml"
DEFAULT_FRESHNESS_FILE = PACKAGE_DIR / "freshness.toml"
DEFAULT_PLUGIN_DIR = PACKAGE_DIR.parent / "plugins"


def load_environment(environ: Mapping[str, str] | None = None, dotenv_path: Path | None = None) -> dict[str, str]:
    """Merge ``.env`` (if present) under the process environment; the environment wins."""
    env = dict(os.environ if environ is None else environ)
    path = dotenv_path if dotenv_path is not None else Path(env.get("PROVISION_ENV_FILE", ".env"))
    merged: dict[str, str] = {}
    if path.is_file():
        merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    merged.update(env)
    return merged


def read_token_file(path: Path) -> str:
    """Read a token file: the server's JSON form ``{"token": "..."}`` or plain text. Never echoes content."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError as exc:
        raise ConfigError(f"token file {path} does not exist; run `make secrets` or set INFLUXDB3_AUTH_TOKEN_FILE") from exc
    except PermissionError as exc:
        raise ConfigError(f"token file {path} is not readable by this user; fix its owner or mode") from exc
    except OSError as exc:  # a directory where the file should be
        raise ConfigError(f"token file {path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"token file {path} is not UTF-8 text; put the admin token in it as the server wrote it, "
                          "or run `make secrets` after moving it away") from None
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"token file {path} looks like JSON but does not parse (line {exc.lineno})") from exc
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise ConfigError(f'token file {path} has no "token" string')
        return token.strip()
    if not text:
        raise ConfigError(f"token file {path} is empty; run `make secrets` or put the admin token in it")
    return text


@dataclass(frozen=True)
class Settings:
    """Everything provisioning needs. ``token`` is excluded from repr so it cannot leak by printing."""

    host_url: str = DEFAULT_HOST_URL
    database: str = DEFAULT_DATABASE
    token: str | None = field(default=None, repr=False)
    wait_seconds: float = DEFAULT_WAIT_SECONDS
    triggers_file: Path = DEFAULT_TRIGGERS_FILE
    packages: tuple[str, ...] = DEFAULT_PACKAGES
    freshness_file: Path = DEFAULT_FRESHNESS_FILE
    plugin_dir: Path = DEFAULT_PLUGIN_DIR
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from a merged environment (see :func:`load_environment`)."""
        host_url = env.get("INFLUXDB3_HOST_URL", "").strip() or DEFAULT_HOST_URL
        parsed = urlparse(host_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"INFLUXDB3_HOST_URL {host_url!r} is not an http(s) URL, e.g. http://127.0.0.1:8181")
        if parsed.username or parsed.password or parsed.query:
            raise ConfigError("INFLUXDB3_HOST_URL must not carry credentials or a query string; use the token file")

        token = env.get("INFLUXDB3_AUTH_TOKEN", "").strip() or None
        token_file = env.get("INFLUXDB3_AUTH_TOKEN_FILE", "").strip()
        if token is None and token_file:
            token = read_token_file(Path(token_file))

        wait_raw = env.get("PROVISION_WAIT_SECONDS", "").strip()
        try:
            wait_seconds = float(wait_raw) if wait_raw else DEFAULT_WAIT_SECONDS
        except ValueError as exc:
            raise ConfigError(f"PROVISION_WAIT_SECONDS {wait_raw!r} is not a number of seconds") from exc
        if not math.isfinite(wait_seconds) or wait_seconds < 0:  # nan/inf would wait for ever
            raise ConfigError(f"PROVISION_WAIT_SECONDS {wait_raw!r} is not a number of seconds (0 or more), e.g. 60")

        packages_raw = env.get("INFLUXDB3_PLUGIN_PACKAGES")
        packages = DEFAULT_PACKAGES if packages_raw is None else tuple(packages_raw.replace(",", " ").split())

        triggers_raw = env.get("PROVISION_TRIGGERS_FILE", "").strip()
        freshness_raw = env.get("PROVISION_FRESHNESS_FILE", "").strip()
        plugin_dir_raw = env.get("PROVISION_PLUGIN_DIR", "").strip()
        return cls(
            host_url=host_url.rstrip("/"),
            database=env.get("INFLUXDB3_DATABASE", "").strip() or DEFAULT_DATABASE,
            token=token,
            wait_seconds=wait_seconds,
            triggers_file=Path(triggers_raw) if triggers_raw else DEFAULT_TRIGGERS_FILE,
            packages=packages,
            freshness_file=Path(freshness_raw) if freshness_raw else DEFAULT_FRESHNESS_FILE,
            plugin_dir=Path(plugin_dir_raw) if plugin_dir_raw else DEFAULT_PLUGIN_DIR,
            env=dict(env),
        )
