"""Declared triggers (``triggers.toml``), live triggers (system tables) and the plan that makes them equal.

``triggers.toml`` shape::

    [defaults]                     # optional; applies to every trigger
    error_behavior = "log"
    run_async = false

    [triggers.github_pr_endpoint]
    plugin = "github_prs.py"
    spec = "request:github_prs"    # string, or a seed object form (normalised, see specs.py)
    [triggers.github_pr_endpoint.arguments]
    repo = "${GITHUB_REPO}"        # ${VAR}, ${VAR:-default}, ${VAR-default} expand from the environment / .env

Arguments carry token *file* paths only; an argument that looks like a secret is rejected.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from provisioning.errors import ConfigError, TriggerConfigError
from provisioning.specs import SpecError, normalize_spec, spec_key

ERROR_BEHAVIORS = ("log", "retry", "disable")
TRIGGER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")

# The seed documentation's plugin file names and the ones this stack ships instead.
SEED_PLUGIN_NAMES: dict[str, str] = {
    "github_pr_req.py": "github_prs.py",
    "github_pr_sched.py": "github_prs.py",
    "github_pr_scheduled.py": "github_prs.py",
    "kapa_sources_req.py": "kapa_sources.py",
    "gh_kapa_integration.py": "docs_freshness.py",
    "github_kapa_pr_writes.py": "docs_freshness.py",
}
# Argument keys that would put a secret into the catalog, and the file-path key to use instead.
SECRET_ARGUMENTS: dict[str, str] = {
    "github_token": "github_token_file=/run/secrets/github_token",
    "kapa_token": "kapa_token_file=/run/secrets/kapa_token",
    "notify_url": "notify_url_file=/run/secrets/notify_url",
    "token": "a *_token_file argument naming a file under /run/secrets",
    "api_key": "a *_token_file argument naming a file under /run/secrets",
    "password": "a *_file argument naming a file under /run/secrets",
}
_SECRET_VALUE = re.compile(r"^(apiv3_|ghp_|gho_|ghu_|ghs_|ghr_|github_pat_|xox[abpr]-)")
_KNOWN_KEYS = {"plugin", "spec", "arguments", "error_behavior", "run_async", "disabled"}


@dataclass(frozen=True)
class TriggerDecl:
    """One trigger as it should be on the server."""

    name: str
    plugin: str
    spec: str
    arguments: dict[str, str] = field(default_factory=dict)
    error_behavior: str = "log"
    run_async: bool = False
    disabled: bool = False


@dataclass(frozen=True)
class LiveTrigger:
    """One trigger as the server shows it. ``arguments`` is None when the server cannot list them."""

    name: str
    plugin: str
    spec: Any
    disabled: bool
    error_behavior: str | None
    arguments: dict[str, str] | None


def expand(value: str, env: Mapping[str, str], trigger: str, key: str) -> str:
    """Expand as the shell does: ``${VAR}``, ``${VAR:-default}`` (default when unset or empty) and
    ``${VAR-default}`` (default only when unset, so ``VAR=`` yields "" and the argument is left out).
    An unset variable without a default is a config error."""

    def repl(match: re.Match[str]) -> str:
        var, op, default = match.group(1), match.group(2), match.group(3)
        got = env.get(var)
        if got is not None and (got != "" or op == "-"):
            return got
        if op is not None:
            return default
        raise TriggerConfigError(trigger, f"argument {key} uses ${{{var}}}, which is not set", f"set {var} in .env")

    return _VAR.sub(repl, value)


def _argument_value(raw: Any, env: Mapping[str, str], trigger: str, key: str) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int | float):
        return str(raw)
    if isinstance(raw, str):
        return expand(raw, env, trigger, key)
    raise TriggerConfigError(trigger, f"argument {key} is a {type(raw).__name__}", "give it a string or number value")


def check_secret_argument(trigger: str, key: str, value: str) -> None:
    """Reject arguments that would store a secret in the server's catalog."""
    lowered = key.lower()
    if lowered in SECRET_ARGUMENTS or (
        (lowered.endswith("_token") or lowered.endswith("_key") or lowered.endswith("_password"))
        and not lowered.endswith("_file")
    ):
        fix = SECRET_ARGUMENTS.get(lowered, "pass a *_file argument naming a file under /run/secrets")
        raise TriggerConfigError(trigger, f"argument {key} would store a secret in the catalog", f"use {fix}")
    if _SECRET_VALUE.match(value):
        raise TriggerConfigError(
            trigger, f"argument {key} looks like a token", "put the token in a file and pass its path in *_file"
        )


def parse_declaration(name: str, raw: Mapping[str, Any], defaults: Mapping[str, Any], env: Mapping[str, str]) -> TriggerDecl:
    """Validate one ``[triggers.<name>]`` table. Raises TriggerConfigError naming the trigger and the fix."""
    if not TRIGGER_NAME.match(name):
        raise TriggerConfigError(name, "the name has characters the server rejects", "use letters, digits, _ and -")
    unknown = sorted(set(raw) - _KNOWN_KEYS)
    if unknown:
        raise TriggerConfigError(name, f"unknown key {unknown[0]}", f"use only {', '.join(sorted(_KNOWN_KEYS))}")
    merged = {**defaults, **raw}
    plugin = merged.get("plugin")
    if not isinstance(plugin, str) or not plugin.strip():
        raise TriggerConfigError(name, "no plugin", 'add plugin = "<file>.py" (a file in plugins/)')
    plugin = plugin.strip()
    if plugin in SEED_PLUGIN_NAMES:
        raise TriggerConfigError(
            name, f"plugin {plugin} is the seed documentation's name", f'use plugin = "{SEED_PLUGIN_NAMES[plugin]}"'
        )
    if plugin.startswith("/") or ".." in Path(plugin).parts:
        raise TriggerConfigError(name, f"plugin {plugin} leaves the plugin directory", "give a path relative to plugins/")
    if "spec" not in merged:
        raise TriggerConfigError(name, "no spec", 'add spec = "every:1h" (or table:, cron:, request:, all_tables)')
    try:
        spec = normalize_spec(merged["spec"])
    except SpecError as exc:
        raise TriggerConfigError(name, exc.problem, exc.fix) from exc
    behavior = merged.get("error_behavior", "log")
    if behavior not in ERROR_BEHAVIORS:
        raise TriggerConfigError(name, f"error_behavior {behavior!r} is unknown", "use log, retry or disable")
    for flag in ("run_async", "disabled"):
        if not isinstance(merged.get(flag, False), bool):
            raise TriggerConfigError(name, f"{flag} is not true/false", f"write {flag} = false")
    raw_args = merged.get("arguments", {})
    if not isinstance(raw_args, Mapping):
        raise TriggerConfigError(name, "arguments is not a table", f"write [triggers.{name}.arguments]")
    arguments: dict[str, str] = {}
    for key, raw_value in raw_args.items():
        value = _argument_value(raw_value, env, name, key)
        check_secret_argument(name, key, value)
        if value == "":
            continue  # unset optional settings are left out rather than sent empty
        arguments[key] = value
    return TriggerDecl(
        name=name,
        plugin=plugin,
        spec=spec,
        arguments=arguments,
        error_behavior=behavior,
        run_async=bool(merged.get("run_async", False)),
        disabled=bool(merged.get("disabled", False)),
    )


def load_triggers(path: Path, env: Mapping[str, str]) -> tuple[list[TriggerDecl], list[TriggerConfigError]]:
    """Read ``path``; return the valid declarations and one error per trigger that cannot work.

    A file that cannot be read or parsed at all raises ConfigError.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"triggers file {path} does not exist (PROVISION_TRIGGERS_FILE)") from exc
    except OSError as exc:  # a directory, no permission
        raise ConfigError(f"triggers file {path} cannot be read ({exc.strerror or type(exc).__name__}); "
                          "fix its permissions or set PROVISION_TRIGGERS_FILE") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"triggers file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"triggers file {path} is not valid TOML: {exc}") from exc
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"triggers file {path}: defaults is not a table; write [defaults] with keys such as "
                          'error_behavior = "log"')
    table = data.get("triggers")
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"triggers file {path} declares no [triggers.<name>] tables")
    decls: list[TriggerDecl] = []
    errors: list[TriggerConfigError] = []
    for name, raw in table.items():
        if not isinstance(raw, dict):
            errors.append(TriggerConfigError(name, "is not a table", f"write [triggers.{name}] with plugin and spec"))
            continue
        try:
            decls.append(parse_declaration(name, raw, defaults, env))
        except TriggerConfigError as exc:
            errors.append(exc)
    return decls, errors


# -- live state --------------------------------------------------------------------------------------------
TRIGGERS_SQL = (
    "SELECT trigger_name, plugin_filename, trigger_specification, disabled, error_behavior "
    "FROM system.processing_engine_triggers ORDER BY trigger_name"
)
ARGUMENTS_SQL = (
    "SELECT trigger_name, argument_key, argument_value FROM system.processing_engine_trigger_arguments "
    "ORDER BY trigger_name, argument_key"
)


def live_from_rows(trigger_rows: list[dict[str, Any]], argument_rows: list[dict[str, Any]] | None) -> list[LiveTrigger]:
    """Build LiveTrigger objects from the two system tables' JSON rows."""
    args: dict[str, dict[str, str]] | None = None
    if argument_rows is not None:
        args = {}
        for row in argument_rows:
            args.setdefault(row["trigger_name"], {})[row["argument_key"]] = row.get("argument_value", "")
    out = []
    for row in trigger_rows:
        name = row["trigger_name"]
        out.append(
            LiveTrigger(
                name=name,
                plugin=row.get("plugin_filename", ""),
                spec=row.get("trigger_specification"),
                disabled=bool(row.get("disabled", False)),
                error_behavior=row.get("error_behavior"),
                arguments=None if args is None else args.get(name, {}),
            )
        )
    return out


def differences(decl: TriggerDecl, live: LiveTrigger) -> list[str]:
    """What differs between the declaration and the live trigger (empty when equal)."""
    diffs: list[str] = []
    if decl.plugin != live.plugin:
        diffs.append(f"plugin {live.plugin} -> {decl.plugin}")
    try:
        live_key = spec_key(live.spec)
    except SpecError:
        live_key = ("?", str(live.spec))
    if spec_key(decl.spec) != live_key:
        diffs.append(f"spec {live.spec} -> {decl.spec}")
    if decl.disabled != live.disabled:
        diffs.append(f"disabled {str(live.disabled).lower()} -> {str(decl.disabled).lower()}")
    if live.error_behavior is not None and decl.error_behavior != str(live.error_behavior).lower():
        diffs.append(f"error_behavior {live.error_behavior} -> {decl.error_behavior}")
    if live.arguments is not None and decl.arguments != live.arguments:
        changed = sorted(set(decl.arguments) ^ set(live.arguments) | {
            k for k in set(decl.arguments) & set(live.arguments) if decl.arguments[k] != live.arguments[k]
        })
        diffs.append("arguments " + ", ".join(changed))  # keys only: values are never printed
    return diffs


class Action(Enum):
    CREATE = "create"
    REPLACE = "replace"
    KEEP = "unchanged"
    DELETE = "delete"
    UNDECLARED = "undeclared"


@dataclass(frozen=True)
class Step:
    action: Action
    name: str
    decl: TriggerDecl | None = None
    detail: str = ""


def plan(decls: list[TriggerDecl], live: list[LiveTrigger], *, prune: bool) -> list[Step]:
    """Steps that make the live triggers equal to ``decls``; undeclared ones are deleted only with prune."""
    live_by_name = {t.name: t for t in live}
    steps: list[Step] = []
    for decl in decls:
        current = live_by_name.get(decl.name)
        if current is None:
            steps.append(Step(Action.CREATE, decl.name, decl, f"{decl.spec} -> {decl.plugin}"))
            continue
        diffs = differences(decl, current)
        steps.append(Step(Action.REPLACE, decl.name, decl, "; ".join(diffs)) if diffs else Step(Action.KEEP, decl.name, decl))
    declared = {d.name for d in decls}
    for t in live:
        if t.name not in declared:
            if prune:
                steps.append(Step(Action.DELETE, t.name, None, "not declared"))
            else:
                steps.append(Step(Action.UNDECLARED, t.name, None, "not declared; kept (--prune removes it)"))
    return steps
