"""PluginHarness: run one plugin entry point in-process on an in-memory engine (for unit tests).

This is the project's one emulation of ``influxdb3_local`` for tests: it uses the same runtime code path
as the embedded server (:mod:`emulator.processing.runtime`), the same ``LineBuilder`` and a real SQL engine.
Writes queued by the plugin are applied after a normal return (as the server), so a second call sees the
first call's rows::

    with PluginHarness("plugins/github_prs.py", args={"repo": "o/r"}) as h:
        h.write_lp("gh,repo=o/r,ref=main,pr_number=1 lines=3i 1700000000000000000")
        r = h.request(query={"since": "2024-01-01"})
        assert r.status == 200 and r.json()["written"] == 1
        assert h.query("SELECT count(*) AS n FROM gh") == [{"n": 2}]
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from emulator.errors import ApiError
from emulator.processing.runtime import (
    CacheStore,
    CallContext,
    PluginKind,
    PluginSource,
    apply_writes,
    arrow_to_rows,
    call_plugin,
    lp_to_table_batches,
    naive_call_time,
    request_http_parts,
)

LogLine = tuple[str, str]


class HarnessError(RuntimeError):
    """Seeding the harness failed (bad line protocol, unknown database, …)."""


@dataclass
class HarnessResult:
    """One entry-point call: response (request plugins), logs, applied writes and the error text, if any."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    logs: list[LogLine] = field(default_factory=list)
    #: line-protocol lines the plugin queued (``write``/``write_to_db``) and that were flushed
    writes: list[str] = field(default_factory=list)
    #: the same lines per database
    writes_by_db: dict[str, list[str]] = field(default_factory=dict)
    #: the server's error text when the call failed (``ValueError: boom``, missing function, …)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class PluginHarness:
    """Run a plugin file (or package directory) against an in-memory engine.

    Args:
        plugin_path: the plugin file, or a directory with ``__init__.py``.
        database: the trigger's database (created on the first write).
        args: trigger arguments (``None`` like a trigger without arguments).
        trigger_name: names the trigger's cache namespace and log lines.
        wal_flush_interval: seconds; small so writes are visible quickly.
    """

    def __init__(
        self,
        plugin_path: str | Path,
        database: str = "aichat",
        args: Mapping[str, str] | None = None,
        *,
        trigger_name: str = "harness",
        wal_flush_interval: float = 0.005,
    ) -> None:
        from emulator.engine import Engine

        path = Path(plugin_path)
        if not path.exists():
            raise HarnessError(f"plugin not found: {path}")
        self.source = PluginSource(str(path), path, is_package=path.is_dir())
        self.database = database
        self.args: dict[str, str] | None = None if args is None else dict(args)
        self.trigger_name = trigger_name
        self.engine = Engine(None, wal_flush_interval=wal_flush_interval)
        self.engine.open()
        # A trigger's database always exists on the server, so the harness creates it up front.
        if not self.engine.catalog.db_exists(database):
            self.engine.create_database(database)
        self.cache_store = CacheStore()
        #: every log line of every call so far, as (level, text)
        self.logs: list[LogLine] = []

    # ------------------------------------------------------------------------------------------ seeding
    def write_lp(self, lp: str, *, database: str | None = None, precision: str = "auto") -> None:
        """Write line protocol to the engine and wait until it is queryable."""
        db = database or self.database
        try:
            outcome = self.engine.write_lp(db, lp, precision=precision, accept_partial=False)
        except ApiError as exc:
            raise HarnessError(f"write to {db} failed: {exc.status} {exc.text}") from None
        if outcome.errors:
            raise HarnessError(f"write to {db} failed: {[e.to_json() for e in outcome.errors]}")

    def query(self, sql: str, params: Mapping[str, Any] | None = None, *,
              database: str | None = None) -> list[dict[str, Any]]:
        """Rows as ``influxdb3_local.query`` returns them (times as int ns)."""
        return arrow_to_rows(self.engine.query(database or self.database, sql,
                                               None if params is None else dict(params)))

    # ------------------------------------------------------------------------------------------ calls
    def request(
        self,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | Mapping[str, Any] | list[Any] = b"",
        method: str = "POST",
    ) -> HarnessResult:
        """Call ``process_request`` as ``/api/v3/engine/<path>`` would."""
        if isinstance(body, Mapping | list):
            raw = json.dumps(body).encode()
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = bytes(body)
        if method.upper() == "GET":
            raw = b""
        hdrs = {k.lower(): v for k, v in (headers or {}).items() if k.lower() != "authorization"}
        result = self._call("request", (dict(query or {}), hdrs, raw, self._args()))
        return result

    def scheduled(self, call_time: datetime | None = None) -> HarnessResult:
        """Call ``process_scheduled_call``; ``call_time`` defaults to now (whole seconds).

        An aware ``call_time`` is converted; a naive one is taken as local time, as the server's argument is.
        """
        if call_time is None:
            epoch_s = int(time.time())
        elif call_time.tzinfo is None:
            epoch_s = int(call_time.timestamp())
        else:
            epoch_s = int(call_time.astimezone(UTC).timestamp())
        epoch_ns = epoch_s * 1_000_000_000
        return self._call("schedule", (naive_call_time(epoch_ns), self._args()), scheduled_ns=epoch_ns)

    def writes(self, lp_or_batches: str | Sequence[Mapping[str, Any]]) -> HarnessResult:
        """Call ``process_writes``.

        With line protocol, the lines are first written to the engine (as the triggering write was) and the
        plugin sees them as ``table_batches``; with a list, the batches are passed as given.
        """
        if isinstance(lp_or_batches, str):
            from emulator.lineprotocol import parse_lines

            parsed, errors = parse_lines(lp_or_batches, precision="auto", default_time_ns=time.time_ns())
            if errors:
                raise HarnessError(f"bad line protocol: {[e.to_json() for e in errors]}")
            self.write_lp(lp_or_batches)
            batches: list[dict[str, Any]] = lp_to_table_batches(parsed)
        else:
            batches = [dict(b) for b in lp_or_batches]
        return self._call("wal", (batches, self._args()))

    def _args(self) -> dict[str, str] | None:
        return None if self.args is None else dict(self.args)

    def _call(self, kind: PluginKind, positional: tuple[Any, ...], *, scheduled_ns: int | None = None
              ) -> HarnessResult:
        result = HarnessResult()

        def sink(level: str, text: str) -> None:
            result.logs.append((level, text))
            self.logs.append((level, text))

        ctx = CallContext(
            engine=self.engine,
            database=self.database,
            log=sink,
            cache_store=self.cache_store,
            cache_scope=CacheStore.trigger_scope(self.database, self.trigger_name),
        )
        outcome = call_plugin(self.source, kind, ctx, positional, scheduled_ns=scheduled_ns)
        if kind == "request":
            status, ctype, headers, body = request_http_parts(outcome)
            result.status, result.body = status, body
            result.headers = dict(headers)
            if ctype is not None:
                result.headers["Content-Type"] = ctype
        if outcome.ok:
            apply_writes(self.engine, outcome.writes, kind, sink)
            result.writes_by_db = {db: list(lines) for db, lines in outcome.writes.items()}
            result.writes = [line for lines in outcome.writes.values() for line in lines]
        else:
            result.error = outcome.error
            if kind == "request":
                sink("ERROR", f"error running request plugin: {outcome.error}")
            else:
                sink("ERROR", f"error executing {kind} plugin: {outcome.error}")
        return result

    # ---------------------------------------------------------------------------------------- lifecycle
    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> PluginHarness:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
