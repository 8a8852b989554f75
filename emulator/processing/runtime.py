"""Plugin runtime: loading plugin code, the ``influxdb3_local`` object, the cache, and one plugin call.

This is the one emulation of the server's Python API (reference: influxdb3-processing-engine.md §1-§4, §7).
The processing engine (triggers, dry runs) and the unit-test harness both call :func:`call_plugin`, so a
plugin sees the same object, the same LineBuilder and the same conversion rules everywhere.

Fidelity notes (facts from the reference and ``influxdb3_py_api/src/system_py.rs``):

* single-file plugins run in a fresh, empty globals dict on every call (compiled as ``<string>``, so
  ``__name__`` resolves to ``builtins`` and ``__file__`` is undefined); the source is re-read when its
  mtime changes;
* directory plugins are imported as a package named after the directory with its parent first on
  ``sys.path`` for the import only, and stay in ``sys.modules``;
* arguments are positional; ``args`` is None when the trigger has none;
* ``influxdb3_local`` exposes exactly info, warn, error, query, write, write_to_db, write_sync,
  write_sync_to_db and cache;
* queued writes are returned to the caller, which applies them only after a normal return.
"""

from __future__ import annotations

import builtins
import importlib
import json
import logging
import math
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import CodeType
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from emulator.errors import ApiError
from emulator.processing.specs import format_duration
from emulator.sqlfuncs import arrow_type_debug

log = logging.getLogger("emulator.processing")

PluginKind = Literal["wal", "schedule", "request"]

#: Entry-point names (SP constants) and the texts used when one is missing (ER).
ENTRY_POINTS: dict[str, str] = {
    "wal": "process_writes",
    "schedule": "process_scheduled_call",
    "request": "process_request",
}
MISSING_FUNCTION_TEXT: dict[str, str] = {
    "wal": "the process_writes function is not present in the plugin. Should be defined as: "
    "process_writes(influxdb3_local, table_batches, args=None)",
    "schedule": "the process_scheduled_call function is not present in the plugin. Should be defined as: "
    "process_scheduled_call(influxdb3_local, call_time, args=None)",
    "request": "the process_request function is not present in the plugin. Should be defined as: "
    "process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None)",
}
DEFAULT_PLUGIN_REPO = "https://raw.githubusercontent.com/influxdata/influxdb3_plugins/main/"
#: The cache sweep runs at most this often when ``influxdb3_local.cache`` is read (PEL CacheStore::new).
CACHE_SWEEP_INTERVAL_S = 10.0
#: Dry-run caches default to a 30-minute TTL (CA CacheId::*Test).
TEST_CACHE_DEFAULT_TTL_S = 30 * 60.0


# --------------------------------------------------------------------------------------------------- errors
class PluginError(Exception):
    """A plugin file could not be resolved or read. ``str()`` is the text after ``Plugin error: ``."""


class PluginRunError(Exception):
    """One plugin call failed; ``str()`` is the server's text (``ValueError: boom``, missing function, …)."""


class QueryError(Exception):
    """Raised into plugins by ``influxdb3_local.query`` (the server's name; not injected into globals)."""


# ------------------------------------------------------------------------------------------ humantime, time
def format_chrono_utc(epoch_ns: int) -> str:
    """chrono's ``Display`` for ``DateTime<Utc>``: ``2026-01-02 03:04:05 UTC`` (fraction only when non-zero)."""
    secs, nanos = divmod(int(epoch_ns), 1_000_000_000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%d %H:%M:%S")
    if nanos == 0:
        frac = ""
    elif nanos % 1_000_000 == 0:
        frac = f".{nanos // 1_000_000:03d}"
    elif nanos % 1000 == 0:
        frac = f".{nanos // 1000:06d}"
    else:
        frac = f".{nanos:09d}"
    return f"{base}{frac} UTC"


# --------------------------------------------------------------------------------------------- plugin files
@dataclass(frozen=True)
class PluginSource:
    """Where a trigger's code lives: a single file, a package directory, or code fetched for ``gh:``."""

    filename: str
    path: Path | None
    is_package: bool = False
    fetched_code: str | None = None


def resolve_plugin(plugin_dir: Path | None, filename: str, *, plugin_repo: str | None = None) -> PluginSource:
    """Validate and locate ``filename`` under ``plugin_dir`` as the server does before creating a trigger.

    Raises :class:`PluginError` with the server's text (the HTTP layer prefixes ``Plugin error: ``).
    """
    if filename.startswith("gh:"):
        return PluginSource(filename, None, fetched_code=fetch_gh_plugin(filename[3:], plugin_repo))
    if plugin_dir is None:
        raise PluginError("Node not configured with plugin directory")
    traversal = PluginError(
        f"Path traversal detected: plugin filename '{filename}' attempts to access files outside the "
        "plugin directory"
    )
    rel = Path(filename)
    if rel.is_absolute() or ".." in rel.parts:
        raise traversal
    root = plugin_dir.resolve()
    candidate = plugin_dir / rel
    # os.path's checks, like Rust's Path::exists, are false on any error (a 300-character name included)
    exists = os.path.exists(candidate)
    if exists:
        real = candidate.resolve()
        if real != root and root not in real.parents:
            raise traversal
    if not exists:
        raise PluginError(f"reading plugin file: Plugin not found: {plugin_dir}/{filename}")
    if os.path.isdir(candidate):
        if not os.path.isfile(candidate / "__init__.py"):
            raise PluginError("Multi-file plugin directory must contain __init__.py")
        return PluginSource(filename, candidate, is_package=True)
    return PluginSource(filename, candidate)


def fetch_gh_plugin(path: str, plugin_repo: str | None) -> str:
    """Fetch ``gh:<path>`` once from the plugin repository (PEL ``read_plugin_code``)."""
    base = plugin_repo or DEFAULT_PLUGIN_REPO
    url = base.rstrip("/") + "/" + path.lstrip("/")
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - the server fetches this URL too
            return resp.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        raise PluginError(f"error fetching plugin from repository: {exc.code} {exc.reason} {url}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise PluginError(f"error fetching plugin from repository: {exc}") from None


class CodeCache:
    """Compiled single-file plugin code keyed by path, re-read when (mtime, size) changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Path, tuple[tuple[int, int], CodeType]] = {}

    def get(self, path: Path) -> CodeType:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._entries.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        code = compile(path.read_text(encoding="utf-8"), "<string>", "exec")
        with self._lock:
            self._entries[path] = (stamp, code)
        return code


_CODE_CACHE = CodeCache()
_SYS_PATH_LOCK = threading.Lock()


def _exc_text(exc: BaseException) -> str:
    """pyo3's ``Display`` of a Python error: ``<qualname>: <str(exc)>`` (``<exception str() failed>``)."""
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001 - a plugin's __str__ may raise anything; pyo3 prints a placeholder
        text = "<exception str() failed>"
    return f"{type(exc).__qualname__}: {text}"


def load_entry_point(source: PluginSource, kind: PluginKind, *, as_single_file: bool = False) -> Callable[..., Any]:
    """Return the entry-point function for ``kind`` (runs top-level code for single files).

    ``as_single_file`` runs a package's ``__init__.py`` as a single file, as dry runs do.
    Raises :class:`PluginRunError` with the server's text.
    """
    name = ENTRY_POINTS[kind]
    if source.is_package and not as_single_file:
        assert source.path is not None
        return _load_from_package(source.path, name, kind)
    if source.fetched_code is not None:
        code: CodeType | str = source.fetched_code
    else:
        assert source.path is not None
        path = source.path / "__init__.py" if source.is_package else source.path
        try:
            code = _CODE_CACHE.get(path)
        except SyntaxError as exc:
            raise PluginRunError(_exc_text(exc)) from None
        except (OSError, ValueError) as exc:  # ValueError: not UTF-8, or a NUL byte in the source
            raise PluginRunError(f"reading plugin file: {exc}") from None
    plugin_globals: dict[str, Any] = {}
    try:
        exec(code, plugin_globals)  # noqa: S102 - running plugin code is the point of a plugin engine
    except BaseException as exc:  # top-level code may raise anything, sys.exit() too (pyo3: all are PyErr)
        raise PluginRunError(_exc_text(exc)) from exc
    fn = plugin_globals.get(name)
    if fn is None:
        raise PluginRunError(MISSING_FUNCTION_TEXT[kind])
    return fn


def _load_from_package(root: Path, name: str, kind: PluginKind) -> Callable[..., Any]:
    module_name = root.name
    with _SYS_PATH_LOCK:
        sys.path.insert(0, str(root.parent))
        try:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    raise
                importlib.invalidate_caches()
                module = importlib.import_module(module_name)
        except BaseException as exc:  # import errors of plugin code (sys.exit() too) become the error text
            raise PluginRunError(
                f"Failed to import plugin module '{module_name}': {_exc_text(exc)}\n"
                "Hint: Check for syntax errors or missing dependencies in Python files."
            ) from exc
        finally:
            sys.path.pop(0)
    try:
        return getattr(module, name)
    except AttributeError:
        raise PluginRunError(MISSING_FUNCTION_TEXT[kind]) from None


# ---------------------------------------------------------------------------------------------------- cache
CacheScope = tuple[str, ...]


class CacheStore:
    """Process-wide plugin cache: one namespace per (database, trigger), one global, and dry-run namespaces."""

    GLOBAL: CacheScope = ("global",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spaces: dict[CacheScope, dict[str, tuple[Any, float | None]]] = {}
        self._last_sweep = time.monotonic()

    @staticmethod
    def trigger_scope(db: str, trigger_name: str) -> CacheScope:
        return ("trigger", db, trigger_name)

    @staticmethod
    def test_scopes(cache_name: str) -> tuple[CacheScope, CacheScope]:
        return ("test", cache_name), ("test-global", cache_name)

    def put(self, scope: CacheScope, key: str, value: Any, ttl: float | None) -> None:
        expires = None if ttl is None else time.monotonic() + ttl
        with self._lock:
            self._spaces.setdefault(scope, {})[key] = (value, expires)

    def get(self, scope: CacheScope, key: str, default: Any) -> Any:
        with self._lock:
            space = self._spaces.get(scope)
            if not space or key not in space:
                return default
            value, expires = space[key]
            if expires is not None and expires <= time.monotonic():
                del space[key]
                return default
            return value

    def delete(self, scope: CacheScope, key: str) -> bool:
        with self._lock:
            space = self._spaces.get(scope)
            return bool(space) and space.pop(key, None) is not None

    def drop(self, scope: CacheScope) -> None:
        """Forget a namespace (a trigger stopped)."""
        with self._lock:
            self._spaces.pop(scope, None)

    def maybe_sweep(self) -> None:
        """Drop expired entries, at most every :data:`CACHE_SWEEP_INTERVAL_S` seconds."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_sweep < CACHE_SWEEP_INTERVAL_S:
                return
            self._last_sweep = now
            for space in self._spaces.values():
                for key in [k for k, (_, exp) in space.items() if exp is not None and exp <= now]:
                    del space[key]


def _check_str(value: Any, arg: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"argument '{arg}': '{type(value).__name__}' object cannot be converted to 'PyString'")
    return value


def _check_ttl(ttl: Any) -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise TypeError(f"argument 'ttl': '{type(ttl).__name__}' object cannot be converted to 'PyFloat'")
    ttl = float(ttl)
    if math.isnan(ttl) or ttl < 0:
        raise ValueError(f"ttl must be a non-negative number of seconds, got {ttl}")
    return ttl


def make_cache(store: CacheStore, local_scope: CacheScope, global_scope: CacheScope,
               default_ttl: float | None) -> Any:
    """The object behind ``influxdb3_local.cache``: exactly put, get and delete."""

    def scope(use_global: Any) -> CacheScope:
        return global_scope if use_global else local_scope

    class PluginCache:
        __slots__ = ()

        def put(self, key: Any, value: Any, ttl: Any = None, use_global: Any = None) -> None:
            """Store ``value`` under ``key`` (the same object is returned by ``get``)."""
            seconds = _check_ttl(ttl)
            store.put(scope(use_global), _check_str(key, "key"), value, default_ttl if seconds is None else seconds)

        def get(self, key: Any, default: Any = None, use_global: Any = None) -> Any:
            """The stored object, or ``default`` when absent or expired."""
            return store.get(scope(use_global), _check_str(key, "key"), default)

        def delete(self, key: Any, use_global: Any = None) -> bool:
            """Remove ``key``; True when something was removed."""
            return store.delete(scope(use_global), _check_str(key, "key"))

    PluginCache.__name__ = PluginCache.__qualname__ = "PyCache"
    return PluginCache()


# ------------------------------------------------------------------------------------------ influxdb3_local
LogSink = Callable[[str, str], None]


@dataclass
class CallContext:
    """Everything one plugin call needs: the engine, its database, where logs and writes go.

    ``capture_sync_writes`` makes ``write_sync*`` record lines instead of writing (dry runs).
    """

    engine: Any
    database: str
    log: LogSink
    cache_store: CacheStore
    cache_scope: CacheScope
    global_cache_scope: CacheScope = CacheStore.GLOBAL
    cache_default_ttl: float | None = None
    capture_sync_writes: bool = False
    queued: dict[str, list[str]] = field(default_factory=dict)
    sync_captured: dict[str, list[str]] = field(default_factory=dict)


class PanicException(BaseException):
    """What pyo3 raises into Python when Rust code under a method panics (``pyo3_runtime.PanicException``).

    A ``BaseException``, so a plugin's ``except Exception`` does not catch it; the call then fails with
    ``PanicException: <panic message>``.
    """


PanicException.__module__ = "pyo3_runtime"

#: panic messages of the server's conversion (``Option::unwrap`` / ``expect("unexpected datatype")``)
_UNWRAP_NONE = "called `Option::unwrap()` on a `None` value"
_UNEXPECTED_DATATYPE = "unexpected datatype"

def _cell_converter(typ: pa.DataType) -> tuple[str, Any]:
    """How the server's ``query`` handles one column type: ``("ok", cast_to)`` or ``("raise", exception)``.

    Source: influxdb3_py_api/src/system_py.rs ``PyPluginCallApi::query`` (v3.10.1 .. main): Int64, UInt64,
    Float64, Utf8, Boolean as values; any ``Timestamp`` read through ``TimestampNanosecondArray`` (a unit
    other than ns fails the downcast's ``unwrap()``: a panic); ``Dictionary`` read as Int32 keys over
    Utf8 values (anything else panics ``unexpected datatype``); every other type ``ValueError``.
    """
    t = pa.types
    if t.is_int64(typ) or t.is_uint64(typ) or t.is_float64(typ) or t.is_string(typ) or t.is_boolean(typ):
        return "ok", None
    if t.is_timestamp(typ):
        if typ.unit == "ns":
            return "ok", pa.int64()
        return "raise", PanicException(_UNWRAP_NONE)
    if t.is_dictionary(typ):
        if t.is_int32(typ.index_type) and t.is_string(typ.value_type):
            return "ok", typ.value_type
        return "raise", PanicException(_UNEXPECTED_DATATYPE)
    return "raise", ValueError(f"Unsupported data type: {arrow_type_debug(typ)}")


def arrow_to_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Query result as ``influxdb3_local.query`` returns it: a list of ``{column: value}`` dicts.

    Cells are visited row by row, column by column, as the server does: a null cell of any type is None
    (a ``Null``-typed column has no validity buffer, so arrow-rs reports its cells as not null and the
    type is rejected); the first non-null cell of a type the server does not convert raises what the
    server raises (:func:`_cell_converter`): ``ValueError: Unsupported data type: Int32`` (e.g.
    ``extract(hour FROM time)``, ``CAST(v AS INT)``), ``Float32`` (``CAST(v AS REAL)``), or
    :class:`PanicException` for a timestamp not in nanoseconds. Timestamps in ns are ints of ns.
    """
    if table.num_rows == 0:
        return []
    names = table.column_names
    columns: list[list[Any]] = []
    first_bad: tuple[int, int, BaseException] | None = None
    for index, col in enumerate(table.columns):
        action, arg = _cell_converter(col.type)
        if action == "raise":
            if pa.types.is_null(col.type):
                row = 0
            else:
                valid = col.is_valid()
                row = pc.index(valid, True).as_py()
            if row >= 0 and (first_bad is None or (row, index) < first_bad[:2]):
                first_bad = (row, index, arg)
            columns.append([None] * table.num_rows)
            continue
        if arg is not None:
            col = col.cast(arg)
        columns.append(col.to_pylist())
    if first_bad is not None:
        raise first_bad[2]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def lp_to_table_batches(parsed: Sequence[Any]) -> list[dict[str, Any]]:
    """Parsed lines -> the ``table_batches`` argument of ``process_writes``.

    Args:
        parsed: :class:`emulator.lineprotocol.ParsedLine` items (``measurement``, ``tags``, ``fields`` as
            ``{name: (type, value)}``, ``time_ns``).
    Returns:
        ``[{"table_name": str, "rows": [row, …]}]``, tables in first-seen order; a row holds the line's tags,
        then its fields, then ``time`` (int ns), as the plugin_test/wal API and the harness hand them over.
    """
    batches: dict[str, list[dict[str, Any]]] = {}
    for line in parsed:
        row: dict[str, Any] = dict(line.tags)
        for name, (_type, value) in line.fields.items():
            row[name] = value
        row["time"] = line.time_ns
        batches.setdefault(line.measurement, []).append(row)
    return [{"table_name": name, "rows": rows} for name, rows in batches.items()]


def _build_line(line_builder: Any) -> str:
    line = line_builder.build()
    if not isinstance(line, str):
        raise TypeError(f"'{type(line).__name__}' object cannot be converted to 'PyString'")
    return line


def make_local(ctx: CallContext) -> Any:
    """Create the ``influxdb3_local`` object for one call. Its public names are exactly the server's."""

    def emit(level: str, args: tuple[Any, ...]) -> None:
        ctx.log(level, " ".join(str(a) for a in args))

    def do_query(query: Any, args: Any = None, database: Any = None) -> list[dict[str, Any]]:
        sql = _check_str(query, "query")
        db = ctx.database if database is None else _check_str(database, "database")
        params: dict[str, str] | None = None
        if args is not None:
            if not isinstance(args, dict):  # pyo3 extracts HashMap from a dict only
                raise TypeError(f"argument 'args': '{type(args).__name__}' object cannot be converted to 'PyDict'")
            params = {_check_str(k, "args"): _check_str(v, "args") for k, v in args.items()}
        try:
            table = ctx.engine.query(db, sql, params)
        except ApiError as exc:
            raise QueryError(f"error: {exc.text} executing query on {db}: {sql}") from None
        except Exception as exc:  # the engine's QueryError (DataFusion text) and friends
            text = str(exc)
            if getattr(exc, "kind", None) == "plan":
                # the server's query executor wraps planning errors (influxdb3_internal_api QueryExecutorError::
                # QueryPlanning); errors while the stream runs come bare (influxdb3_py_api system_py.rs query)
                text = f"error while planning query: {text}"
            raise QueryError(f"error: {text} executing query on {db}: {sql}") from None
        return arrow_to_rows(table)

    def queue(db: str, line_builder: Any) -> None:
        ctx.queued.setdefault(db, []).append(_build_line(line_builder))

    def write_now(db: str, line_builder: Any, no_sync: Any) -> None:
        if not isinstance(no_sync, bool):  # pyo3 extracts the arguments before build() runs
            raise TypeError(f"argument 'no_sync': '{type(no_sync).__name__}' object cannot be converted to 'PyBool'")
        line = _build_line(line_builder)
        if ctx.capture_sync_writes:
            ctx.sync_captured.setdefault(db, []).append(line)
            return
        try:
            outcome = ctx.engine.write_lp(db, line, precision="ns", accept_partial=False, no_sync=no_sync)
        except ApiError as exc:
            raise Exception(f"error writing line protocol to {db}: {exc.text}") from None  # noqa: TRY002
        errors = getattr(outcome, "errors", None)
        if errors:
            raise Exception(f"error writing line protocol to {db}: {errors[0].error_message}")  # noqa: TRY002

    class PyPluginCallApi:
        __slots__ = ()

        def info(self, *args: Any) -> None:
            emit("INFO", args)

        def warn(self, *args: Any) -> None:
            emit("WARN", args)

        def error(self, *args: Any) -> None:
            emit("ERROR", args)

        def query(self, query: Any, args: Any = None, database: Any = None) -> list[dict[str, Any]]:
            return do_query(query, args, database)

        def write(self, line_builder: Any) -> None:
            queue(ctx.database, line_builder)

        def write_to_db(self, db_name: Any, line_builder: Any) -> None:
            queue(_check_str(db_name, "db_name"), line_builder)

        def write_sync(self, line_builder: Any, no_sync: Any) -> None:
            write_now(ctx.database, line_builder, no_sync)

        def write_sync_to_db(self, db_name: Any, line_builder: Any, no_sync: Any) -> None:
            write_now(_check_str(db_name, "db_name"), line_builder, no_sync)

        @property
        def cache(self) -> Any:
            ctx.cache_store.maybe_sweep()
            return make_cache(ctx.cache_store, ctx.cache_scope, ctx.global_cache_scope, ctx.cache_default_ttl)

    return PyPluginCallApi()


# ------------------------------------------------------------------------------------------- LineBuilder
def install_line_builder() -> None:
    """Set ``builtins.LineBuilder`` to a fresh class, as the server does before every execution."""
    from emulator.linebuilder import make_linebuilder

    builtins.LineBuilder = make_linebuilder()  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------- flask-style response
@dataclass
class PluginResponse:
    """What ``process_request`` produced: status, headers (server's merge), body text."""

    status: int
    headers: dict[str, str]
    body: str


def _response_part(value: Any) -> tuple[str, dict[str, str]]:
    if isinstance(value, str):
        return value, {"Content-Type": "text/html"}
    if isinstance(value, dict | list):
        return json.dumps(value), {"Content-Type": "application/json"}
    return str(value), {"Content-Type": "text/plain"}


def _str_dict(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise TypeError("'headers' must be a dict of str to str")
    return dict(value)


def flask_response(result: Any) -> PluginResponse:
    """The server's ``process_flask_response`` rules (reference §2), in order."""
    marker = getattr(result, "__flask_response__", None)
    if callable(marker):
        try:
            is_flask = marker() is True
        except BaseException:  # the server treats a failing marker as "not a Flask response"
            is_flask = False
        if is_flask:
            status = result.status_code
            if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status <= 65535:
                raise TypeError("status_code must be an integer")
            body = result.get_data()
            if not isinstance(body, str):
                raise TypeError(f"'{type(body).__name__}' object cannot be converted to 'PyString'")
            return PluginResponse(status, _str_dict(result.headers), body)
    if isinstance(result, tuple) and 0 < len(result) <= 3:
        body, headers = _response_part(result[0])
        status = 200
        if len(result) >= 2:
            second = result[1]
            if isinstance(second, int):
                status = second if 0 <= second <= 65535 else 500
            elif isinstance(second, dict):
                headers.update(_str_dict(second))
            if len(result) == 3:
                if not isinstance(result[2], dict):
                    raise PluginRunError("expected a dictionary in header item")
                headers.update(_str_dict(result[2]))
        return PluginResponse(status, headers, body)
    if isinstance(result, str):
        return PluginResponse(200, {"Content-Type": "text/html"}, result)
    if isinstance(result, dict | list):
        return PluginResponse(200, {"Content-Type": "application/json"}, json.dumps(result))
    if hasattr(result, "__iter__"):
        chunks: list[str] = []
        for item in result:
            if isinstance(item, str):
                chunks.append(item)
            elif isinstance(item, bytes):  # the server extracts `&[u8]`: bytes only, not bytearray
                try:
                    chunks.append(item.decode("utf-8"))
                except UnicodeDecodeError:
                    continue
        return PluginResponse(200, {"Content-Type": "text/html"}, "".join(chunks))
    raise PluginRunError("Unsupported return type from Python function")


# ---------------------------------------------------------------------------------------------- one call
@dataclass
class CallResult:
    """Outcome of one plugin call. ``writes`` are the queued lines per database (not yet applied)."""

    ok: bool
    error: str | None = None
    response: PluginResponse | None = None
    writes: dict[str, list[str]] = field(default_factory=dict)
    sync_writes: dict[str, list[str]] = field(default_factory=dict)


def call_plugin(
    source: PluginSource,
    kind: PluginKind,
    ctx: CallContext,
    positional: tuple[Any, ...],
    *,
    scheduled_ns: int | None = None,
    as_single_file: bool = False,
) -> CallResult:
    """Run one entry point as the server does, logging the INFO start/finish lines through ``ctx.log``.

    ``positional`` are the arguments after ``influxdb3_local``. Never raises for plugin failures: the error
    text is in the result (``Python function call failed: …`` for request plugins that raised).
    """
    if kind == "wal":
        ctx.log("INFO", "starting execution of wal plugin.")
    elif kind == "schedule":
        ctx.log("INFO", f"starting execution with scheduled time {format_chrono_utc(scheduled_ns or 0)}")
    else:
        ctx.log("INFO", "starting execution of request plugin.")
    start = time.perf_counter_ns()
    response: PluginResponse | None = None
    try:
        install_line_builder()
        local = make_local(ctx)
        fn = load_entry_point(source, kind, as_single_file=as_single_file)
        try:
            value = fn(local, *positional)
        except BaseException as exc:  # plugin code may raise anything, SystemExit too: the call's error
            text = _exc_text(exc)
            raise PluginRunError(f"Python function call failed: {text}" if kind == "request" else text) from exc
        if kind == "request":
            try:
                response = flask_response(value)
            except PluginRunError:
                raise
            except BaseException as exc:  # unconvertible return values, raising generators
                raise PluginRunError(_exc_text(exc)) from exc
    except PluginRunError as exc:
        return CallResult(ok=False, error=str(exc))
    ctx.log("INFO", f"finished execution in {format_duration(max(time.perf_counter_ns() - start, 0))}")
    return CallResult(ok=True, response=response, writes=ctx.queued, sync_writes=ctx.sync_captured)


def apply_writes(engine: Any, writes: Mapping[str, Iterable[str]], kind: PluginKind, log_fn: LogSink) -> int:
    """Write a successful call's queued lines: one ``write_lp`` per database, no_sync off, partial off.

    Failures are logged as ERROR ``error running <kind> plugin: error writing back lines to <db>: …`` and
    never raised (PL ``handle_return_state``). Returns the number of lines written.
    """
    written = 0
    for db, lines in writes.items():
        body = "\n".join(lines)
        if not body:
            continue
        try:
            outcome = engine.write_lp(db, body, precision="ns", accept_partial=False, no_sync=False)
        except ApiError as exc:
            log_fn("ERROR", f"error running {kind} plugin: error writing back lines to {db}: {exc.text}")
            continue
        errors = getattr(outcome, "errors", None)
        if errors:
            log_fn("ERROR", f"error running {kind} plugin: error writing back lines to {db}: "
                            f"{errors[0].error_message}")
            continue
        written += int(getattr(outcome, "lines_written", len(lines)))
    return written


def naive_call_time(epoch_ns: int) -> datetime:
    """The ``call_time`` argument: naive local ``datetime.fromtimestamp`` of the whole-second schedule time."""
    return datetime.fromtimestamp(epoch_ns // 1_000_000_000)


def venv_site_packages(venv_dir: Path) -> Path:
    """The site-packages directory of a venv made with this interpreter."""
    if os.name == "nt":
        return venv_dir / "Lib" / "site-packages"
    return venv_dir / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


# ----------------------------------------------------------------------------------- HTTP response parts
def _header_value_ok(value: str) -> bool:
    return all(ch == "\t" or 32 <= ord(ch) < 127 or 128 <= ord(ch) <= 255 for ch in value)


def request_http_parts(result: CallResult) -> tuple[int, str | None, dict[str, str], bytes]:
    """``(status, content_type, other_headers, body)`` for a request plugin's outcome (reference §2, §10).

    Failures are 500 with compact ``{"error":"…"}`` and no Content-Type; a status outside 100-999 becomes
    500; a header value that is not a valid HTTP header value is sent empty (PL ``process_request``).
    """
    if not result.ok or result.response is None:
        body = json.dumps({"error": result.error or "unknown error"}, separators=(",", ":")).encode()
        return 500, None, {}, body
    resp = result.response
    status = resp.status if 100 <= resp.status <= 999 else 500
    content_type: str | None = None
    headers: dict[str, str] = {}
    for name, value in resp.headers.items():
        value = value if _header_value_ok(value) else ""
        if name.lower() == "content-type":
            content_type = value
        else:
            headers[name] = value
    return status, content_type, headers, resp.body.encode("utf-8")
