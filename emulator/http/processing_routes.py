"""Processing-engine routes (reference: influxdb3-http-api.md §8, §10, §11): parse and serialise only.

Request bodies are checked the way the server's serde derive does (field order, ``missing field `x` at line L
column C``, ``invalid type: map, expected a string at line L column C``), so error texts match. State and rules
live in :class:`emulator.processing.engine.ProcessingEngine`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emulator.errors import ApiError, text_error
from emulator.http.base import Request, Response, Routes

if TYPE_CHECKING:
    from emulator.processing.engine import ProcessingEngine

TRIGGER = "/api/v3/configure/processing_engine_trigger"
ENV_DISABLED = ("Processing engine error: error installing python packages: "
                "Plugin environment management is disabled")


# ------------------------------------------------------------------------------------------ serde emulation
class SerdeError(Exception):
    """A deserialisation failure with serde_json's message (position already appended)."""


@dataclass
class _Value:
    value: Any
    start: int
    end: int


_WS = " \t\n\r"
_DECODER = json.JSONDecoder()


def _pos(text: str, index: int) -> str:
    line_start = text.rfind("\n", 0, index) + 1
    return f"at line {text.count(chr(10), 0, line_start) + 1} column {index - line_start}"


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _members(text: str, start: int) -> tuple[list[tuple[str, int, _Value]], int]:
    """Members of the JSON object at ``start``: (key, index after key, value span); and the end index."""
    i = _skip(text, start + 1)
    out: list[tuple[str, int, _Value]] = []
    if text[i] == "}":
        return out, i + 1
    while True:
        key, i = _DECODER.raw_decode(text, i)
        key_end = i
        i = _skip(text, i) + 1  # ':'
        i = _skip(text, i)
        value, end = _DECODER.raw_decode(text, i)
        out.append((key, key_end, _Value(value, i, end)))
        i = _skip(text, end)
        if text[i] == "}":
            return out, i + 1
        i = _skip(text, i + 1)  # ','


def _unexpected(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean `{'true' if v else 'false'}`"
    if isinstance(v, int):
        return f"integer `{v}`"
    if isinstance(v, float):
        return f"floating point `{v!r}`"
    if isinstance(v, str):
        return "string " + json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "sequence"
    return "map"


def _type_error(text: str, val: _Value, expected: str) -> SerdeError:
    # serde_json reports containers before they are consumed and scalars after.
    at = val.start if isinstance(val.value, dict | list) else val.end
    return SerdeError(f"invalid type: {_unexpected(val.value)}, expected {expected} {_pos(text, at)}")


#: a field checker gets (text, value span) and returns the converted value or raises SerdeError
Checker = Callable[[str, _Value], Any]


def _string(text: str, val: _Value) -> str:
    if not isinstance(val.value, str):
        raise _type_error(text, val, "a string")
    return val.value


def _bool(text: str, val: _Value) -> bool:
    if not isinstance(val.value, bool):
        raise _type_error(text, val, "a boolean")
    return val.value


def _opt_string(text: str, val: _Value) -> str | None:
    return None if val.value is None else _string(text, val)


def _string_list(text: str, val: _Value) -> list[str]:
    if not isinstance(val.value, list):
        raise _type_error(text, val, "a sequence")
    bad = next((x for x in val.value if not isinstance(x, str)), None)
    if bad is not None or any(not isinstance(x, str) for x in val.value):
        # Locate the offending element for serde's position.
        i = _skip(text, val.start + 1)
        for item in val.value:
            item_val, end = _DECODER.raw_decode(text, i)
            if not isinstance(item, str):
                raise _type_error(text, _Value(item_val, i, end), "a string")
            i = _skip(text, _skip(text, end) + 1)
    return list(val.value)


def _opt_string_map(text: str, val: _Value) -> dict[str, str] | None:
    if val.value is None:
        return None
    if not isinstance(val.value, dict):
        raise _type_error(text, val, "a map")
    out: dict[str, str] = {}
    members, _ = _members(text, val.start)
    for key, _key_end, member in members:
        out[key] = _string(text, member)
    return out


def _enum(variants: tuple[str, ...]) -> Checker:
    def check(text: str, val: _Value) -> str:
        if isinstance(val.value, str):
            if val.value not in variants:
                names = ", ".join(f"`{v}`" for v in variants)
                raise SerdeError(f"unknown variant `{val.value}`, expected one of {names} {_pos(text, val.end)}")
            return val.value
        if isinstance(val.value, dict):
            raise _type_error(text, val, "unit variant")
        raise SerdeError(f"expected value {_pos(text, val.start + 1)}")

    return check


def _struct(name: str, fields: list[tuple[str, Checker, bool]]) -> Checker:
    """A derive(Deserialize) struct: ``fields`` = (name, checker, required) in declaration order."""

    def check(text: str, val: _Value) -> dict[str, Any]:
        if not isinstance(val.value, dict):
            raise _type_error(text, val, f"struct {name}")
        members, end = _members(text, val.start)
        known = {f[0]: f for f in fields}
        seen: dict[str, Any] = {}
        for key, key_end, member in members:
            spec = known.get(key)
            if spec is None:
                continue
            if key in seen:
                raise SerdeError(f"duplicate field `{key}` {_pos(text, key_end)}")
            seen[key] = spec[1](text, member)
        for fname, _checker, required in fields:
            if fname not in seen:
                if required:
                    raise SerdeError(f"missing field `{fname}` {_pos(text, end)}")
                seen[fname] = None
        return seen

    return check


_SETTINGS = _struct("TriggerSettings", [
    ("run_async", _bool, True),
    ("error_behavior", _enum(("log", "retry", "disable")), True),
])
_CREATE = _struct("ProcessingEngineTriggerCreateRequest", [
    ("db", _string, True),
    ("plugin_filename", _string, True),
    ("trigger_name", _string, True),
    ("trigger_settings", _SETTINGS, True),
    ("trigger_specification", _string, True),
    ("trigger_arguments", _opt_string_map, False),
    ("disabled", _bool, True),
])
_DELETE = _struct("ProcessingEngineTriggerDeleteRequest", [
    ("db", _string, True), ("trigger_name", _string, True), ("force", _bool, False)])
_PACKAGES = _struct("ProcessingEngineInstallPackagesRequest", [("packages", _string_list, True)])
_REQUIREMENTS = _struct("ProcessingEngineInstallRequirementsRequest",
                        [("requirements_location", _string, True)])
_FILE = _struct("PluginFileRequest", [("plugin_name", _string, True), ("content", _string, True)])
_WAL_TEST = _struct("WalPluginTestRequest", [
    ("filename", _string, True), ("database", _string, True), ("input_lp", _string, True),
    ("cache_name", _opt_string, False), ("input_arguments", _opt_string_map, False)])
_SCHEDULE_TEST = _struct("SchedulePluginTestRequest", [
    ("filename", _string, True), ("database", _string, True), ("schedule", _opt_string, False),
    ("cache_name", _opt_string, False), ("input_arguments", _opt_string_map, False)])


def _dir_files(text: str, val: _Value) -> list[dict[str, Any]]:
    if not isinstance(val.value, list):
        raise _type_error(text, val, "a sequence")
    entry = _struct("PluginFileEntry", [("relative_path", _string, True), ("content", _string, True)])
    out = []
    i = _skip(text, val.start + 1)
    for _ in val.value:
        item, end = _DECODER.raw_decode(text, i)
        out.append(entry(text, _Value(item, i, end)))
        i = _skip(text, _skip(text, end) + 1)
    return out


_DIRECTORY = _struct("PluginDirectoryRequest", [("plugin_name", _string, True), ("files", _dir_files, True)])


def json_body(req: Request, checker: Checker) -> dict[str, Any]:
    """Body -> fields, with the server's 415 / ``serde json error: …`` answers."""
    req.json()  # content type and syntax, with the server's texts
    text = req.body.decode("utf-8")
    start = _skip(text, 0)
    value, end = _DECODER.raw_decode(text, start)
    try:
        return checker(text, _Value(value, start, end))
    except SerdeError as exc:
        raise text_error(400, f"serde json error: {exc}") from None


def query_fields(req: Request, fields: list[tuple[str, str, bool]]) -> dict[str, Any]:
    """serde_urlencoded into a struct: (name, "str"|"bool", required); 400 ``serde error: …``."""
    out: dict[str, Any] = {}
    for name, kind, required in fields:
        raw = req.query.get(name)
        if raw is None:
            if required:
                raise text_error(400, f"serde error: missing field `{name}`")
            out[name] = None if kind == "str" else False
            continue
        if kind == "bool":
            if raw not in ("true", "false"):
                raise text_error(400, "serde error: provided string was not `true` or `false`")
            out[name] = raw == "true"
        else:
            out[name] = raw
    return out


# ------------------------------------------------------------------------------------------ handlers
def build_routes(pe: ProcessingEngine) -> Routes:
    """Every processing route of reference §2, bound to ``pe``."""
    from emulator.processing.engine import TriggerRecord

    def create_trigger(req: Request) -> Response:
        if req.query_string:
            # serde_urlencoded cannot fill the nested settings struct, so a query string always fails.
            query_fields(req, [("db", "str", True), ("plugin_filename", "str", True), ("trigger_name", "str", True)])
            settings_raw = req.query.get("trigger_settings")
            if settings_raw is None:
                raise text_error(400, "serde error: missing field `trigger_settings`")
            raise text_error(400, f"serde error: invalid type: string {json.dumps(settings_raw)}, "
                                  "expected struct TriggerSettings")
        body = json_body(req, _CREATE)
        settings = body["trigger_settings"]
        record = TriggerRecord(
            database=body["db"],
            trigger_name=body["trigger_name"],
            plugin_filename=body["plugin_filename"],
            trigger_specification=body["trigger_specification"].strip(),
            run_async=settings["run_async"],
            error_behavior=settings["error_behavior"],
            trigger_arguments=body["trigger_arguments"],
            disabled=body["disabled"],
        )
        pe.create_trigger(record)
        return Response.empty(200)

    def delete_trigger(req: Request) -> Response:
        if req.query_string:
            body = query_fields(req, [("db", "str", True), ("trigger_name", "str", True), ("force", "bool", False)])
        else:
            body = json_body(req, _DELETE)
        pe.delete_trigger(body["db"], body["trigger_name"], bool(body["force"]))
        return Response.empty(200)

    def toggle(disabled: bool) -> Callable[[Request], Response]:
        def handler(req: Request) -> Response:
            q = query_fields(req, [("db", "str", True), ("trigger_name", "str", True)])
            pe.set_disabled(q["db"], q["trigger_name"], disabled)
            return Response.empty(200)

        return handler

    def env_target() -> Path:
        if pe.plugin_dir is None or pe.venv_dir is None:
            raise text_error(500, ENV_DISABLED)
        return pe.venv_dir

    def pip(args: list[str]) -> Response:
        from emulator.processing.venv import PipError, pip_install

        try:
            pip_install(env_target(), args)
        except PipError as exc:
            raise text_error(500, f"Processing engine error: error installing python packages: {exc}") from None
        return Response.empty(200)

    def install_packages(req: Request) -> Response:
        if req.query_string:
            packages = [v for k, v in req.query_items if k == "packages"]
            if not packages:
                raise text_error(400, "serde error: missing field `packages`")
        else:
            packages = json_body(req, _PACKAGES)["packages"]
        env_target()
        return pip(list(packages))

    def install_requirements(req: Request) -> Response:
        if req.query_string:
            location = query_fields(req, [("requirements_location", "str", True)])["requirements_location"]
        else:
            location = json_body(req, _REQUIREMENTS)["requirements_location"]
        env_target()
        return pip(["-r", location])

    def plugin_root() -> Path:
        if pe.plugin_dir is None:
            raise text_error(500, "Processing engine error: plugin error: Node not configured with plugin directory")
        return pe.plugin_dir

    def safe_target(root: Path, relative: str) -> Path:
        rel = Path(relative)
        if rel.is_absolute() or ".." in rel.parts or not relative:
            raise text_error(500, f"Processing engine error: plugin error: Path traversal detected: plugin "
                                  f"filename '{relative}' attempts to access files outside the plugin directory")
        return root / rel

    def trigger_file(name: str) -> Path:
        root = plugin_root()
        for _db, tname, rec in pe.engine.catalog.list_triggers():
            if tname == name:
                return safe_target(root, rec["plugin_filename"])
        raise text_error(500, f"Processing engine error: plugin error: Plugin not found: {name}")

    def post_file(req: Request) -> Response:
        body = json_body(req, _FILE)
        target = safe_target(plugin_root(), body["plugin_name"])
        with _io_errors():
            _atomic_write(target, body["content"])
        return Response.empty(200)

    def put_file(req: Request) -> Response:
        body = json_body(req, _FILE)
        target = trigger_file(body["plugin_name"])
        with _io_errors():
            _atomic_write(target / "__init__.py" if target.is_dir() else target, body["content"])
        return Response.empty(200)

    def put_directory(req: Request) -> Response:
        body = json_body(req, _DIRECTORY)
        target = trigger_file(body["plugin_name"])
        root = plugin_root()
        with _io_errors():
            staging = Path(tempfile.mkdtemp(prefix=".upload-", dir=root))
            try:
                for entry in body["files"]:
                    _atomic_write(safe_target(staging, entry["relative_path"]), entry["content"])
                backup = target.with_name(target.name + ".old")
                if target.exists():
                    target.rename(backup)
                target.parent.mkdir(parents=True, exist_ok=True)
                staging.rename(target)
                if backup.exists():
                    shutil.rmtree(backup) if backup.is_dir() else backup.unlink()
            finally:
                if staging.exists():
                    shutil.rmtree(staging)
        return Response.empty(200)

    def test_wal(req: Request) -> Response:
        from emulator.lineprotocol import parse_lines
        from emulator.processing.runtime import lp_to_table_batches

        body = json_body(req, _WAL_TEST)
        parsed, errors = parse_lines(body["input_lp"], precision="ns", default_time_ns=time.time_ns())
        if errors:
            return Response.json({"log_lines": [], "database_writes": {},
                                  "errors": [f"{e.error_message} on line {e.line_number}" for e in errors]})
        result = pe.dry_run(filename=body["filename"], database=body["database"], kind="wal",
                            positional=(lp_to_table_batches(parsed), body["input_arguments"]),
                            cache_name=body["cache_name"])
        return Response.json(result)

    def test_schedule(req: Request) -> Response:
        from emulator.processing.runtime import naive_call_time

        body = json_body(req, _SCHEDULE_TEST)
        pe.resolve(body["filename"])
        schedule = body["schedule"] or "* * * * * *"
        if not pe.engine.catalog.db_exists(body["database"]):
            return Response.json({"trigger_time": None, "log_lines": [], "database_writes": {},
                                  "errors": ["couldn't find db"]})
        try:
            spec = pe.parse_spec(f"cron:{schedule}")
        except ApiError as exc:
            return Response.json({"trigger_time": None, "log_lines": [], "database_writes": {},
                                  "errors": [exc.text]})
        due: datetime | None = spec.schedule().next_after(datetime.now(UTC))
        if due is None:
            return Response.json({"trigger_time": None, "log_lines": [], "database_writes": {}, "errors": []})
        ns = int(due.timestamp()) * 1_000_000_000
        result = pe.dry_run(filename=body["filename"], database=body["database"], kind="schedule",
                            positional=(naive_call_time(ns), body["input_arguments"]),
                            cache_name=body["cache_name"], scheduled_ns=ns)
        result = {"trigger_time": due.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **result}
        return Response.json(result)

    return {
        ("POST", TRIGGER): create_trigger,
        ("DELETE", TRIGGER): delete_trigger,
        ("POST", TRIGGER + "/enable"): toggle(False),
        ("POST", TRIGGER + "/disable"): toggle(True),
        ("POST", "/api/v3/configure/plugin_environment/install_packages"): install_packages,
        ("POST", "/api/v3/configure/plugin_environment/install_requirements"): install_requirements,
        ("POST", "/api/v3/plugins/files"): post_file,
        ("PUT", "/api/v3/plugins/files"): put_file,
        ("PUT", "/api/v3/plugins/directory"): put_directory,
        ("POST", "/api/v3/plugin_test/wal"): test_wal,
        ("POST", "/api/v3/plugin_test/schedule"): test_schedule,
    }


@contextmanager
def _io_errors() -> Iterator[None]:
    """A failed file operation answers as the server's: 500 ``Processing engine error: plugin error: reading
    plugin file: <io::Error>`` (``PluginError::ReadPluginError`` wraps every std::io::Error of the plugin
    file routes, influxdb3_processing_engine ``lib.rs`` ``create_plugin_file``; Rust prints an OS error as
    ``<strerror> (os error <n>)``), e.g. a 300-character name: ``File name too long (os error 36)``."""
    try:
        yield
    except OSError as exc:
        raise text_error(500, f"Processing engine error: plugin error: reading plugin file: {io_error_text(exc)}"
                         ) from None


def io_error_text(exc: OSError) -> str:
    """``exc`` as Rust's ``std::io::Error`` Display prints an OS error."""
    if exc.errno is None:
        return str(exc)
    return f"{os.strerror(exc.errno)} (os error {exc.errno})"


def _atomic_write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # a short temporary name: a name near the file system's limit still fits once, as the server writes it
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
