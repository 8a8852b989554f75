"""ProcessingEngine: trigger registry, WAL fan-out, schedules, request routing, dry runs, plugin venv.

Threads (docs/internals.md): every running WAL or schedule trigger owns one worker thread; WAL triggers
receive flush events through a queue of 60 (the flusher blocks only while a queue is full, as the server);
``run_async`` triggers hand each event to a pool thread. Plugins never run on the flusher thread, so a
plugin that writes with ``no_sync=false`` simply waits for the next flush. Request triggers run on the HTTP
handler's thread, one at a time per trigger unless ``run_async``.

Facts: influxdb3-processing-engine.md §1-§9 and influxdb3-http-api.md §8-§11.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emulator.api import Request, Response
from emulator.errors import ApiError, DatabaseNotFound, already_exists, not_found, text_error
from emulator.processing import systables
from emulator.processing.runtime import (
    TEST_CACHE_DEFAULT_TTL_S,
    CacheStore,
    CallContext,
    CallResult,
    PluginError,
    PluginKind,
    PluginSource,
    apply_writes,
    call_plugin,
    naive_call_time,
    request_http_parts,
    resolve_plugin,
    venv_site_packages,
)

log = logging.getLogger("emulator.processing")

#: WAL trigger event queue capacity (PL: channel of 60).
WAL_QUEUE_SIZE = 60
#: Pause between ``retry`` attempts: the server retries without backoff; this only yields the GIL and CPU so
#: the rest of the emulator keeps serving.
RETRY_YIELD_S = 0.005
#: How long stop() waits for a worker; a hung plugin thread is abandoned (daemon), never killed.
STOP_JOIN_S = 1.0
ENGINE_PREFIX = "/api/v3/engine/"
NOT_FOUND_BODY = b'{error: "not found"}'
INTERNAL_DB = "_internal"


@dataclass
class TriggerRecord:
    """A trigger as stored in the catalog (JSON-able via :meth:`to_dict`)."""

    database: str
    trigger_name: str
    plugin_filename: str
    trigger_specification: str
    run_async: bool
    error_behavior: str
    trigger_arguments: dict[str, str] | None
    disabled: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "trigger_name": self.trigger_name,
            "plugin_filename": self.plugin_filename,
            "database_name": self.database,
            "trigger_specification": self.trigger_specification,
            "trigger_settings": {"run_async": self.run_async, "error_behavior": self.error_behavior},
            "trigger_arguments": self.trigger_arguments,
            "disabled": self.disabled,
        }

    @classmethod
    def from_dict(cls, db: str, rec: dict[str, Any]) -> TriggerRecord:
        settings = rec.get("trigger_settings") or {}
        return cls(
            database=db,
            trigger_name=rec["trigger_name"],
            plugin_filename=rec["plugin_filename"],
            trigger_specification=rec["trigger_specification"],
            run_async=bool(settings.get("run_async", False)),
            error_behavior=str(settings.get("error_behavior", "log")),
            trigger_arguments=rec.get("trigger_arguments"),
            disabled=bool(rec.get("disabled", False)),
        )


def spec_kind(spec: Any) -> str:
    """``wal``, ``schedule`` or ``request`` for a parsed :class:`emulator.processing.specs.TriggerSpec`."""
    return str(spec.plugin_type)


class TriggerRunner:
    """One running trigger: its worker thread (WAL/schedule) or its request lock."""

    def __init__(self, pe: ProcessingEngine, record: TriggerRecord, spec: Any, source: PluginSource):
        self.pe = pe
        self.record = record
        self.spec = spec
        self.source = source
        self.kind: PluginKind = spec_kind(spec)  # type: ignore[assignment]
        self.stop_event = threading.Event()
        self.queue: queue.Queue[list[dict[str, Any]]] = queue.Queue(maxsize=WAL_QUEUE_SIZE)
        self.thread: threading.Thread | None = None
        self.request_lock = threading.Lock()
        self.pool: ThreadPoolExecutor | None = None
        self.cache_scope = CacheStore.trigger_scope(record.database, record.trigger_name)

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self.record.run_async:
            self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"plugin-{self.record.trigger_name}")
        target = {"wal": self._wal_loop, "schedule": self._schedule_loop}.get(self.kind)
        if target is not None:
            self.thread = threading.Thread(target=target, name=f"trigger-{self.record.trigger_name}", daemon=True)
            self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(STOP_JOIN_S)
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.pe.cache_store.drop(self.cache_scope)

    @property
    def stopped(self) -> bool:
        return self.stop_event.is_set()

    # ------------------------------------------------------------------------------------------ WAL
    def offer(self, batches: list[dict[str, Any]]) -> None:
        """Queue a flush event; blocks while the queue is full (the server's flush waits too)."""
        while not self.stopped:
            try:
                self.queue.put(batches, timeout=0.1)
                return
            except queue.Full:
                continue

    def _wal_loop(self) -> None:
        while not self.stopped:
            try:
                batches = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self._dispatch(lambda b=batches: self._run_with_behavior("wal", (b, self._args())))

    # ------------------------------------------------------------------------------------------ schedule
    def _schedule_loop(self) -> None:
        schedule = self.spec.schedule()
        try:
            due = schedule.next_after(datetime.now(UTC))
        except ValueError as exc:  # e.g. every:0s, which the server cannot schedule either
            log.error("processing engine: trigger %s cannot be scheduled: %s", self.record.trigger_name, exc)
            return
        while not self.stopped and due is not None:
            wait_s = due.timestamp() - time.time()
            if wait_s > 0 and self.stop_event.wait(min(wait_s, 1.0)):
                return
            if due.timestamp() > time.time():
                continue
            scheduled_ns = int(due.timestamp()) * 1_000_000_000 + due.microsecond * 1000
            self._dispatch(lambda ns=scheduled_ns: self._run_with_behavior(
                "schedule", (naive_call_time(ns), self._args()), scheduled_ns=ns))
            due = schedule.next_after(due)

    # ------------------------------------------------------------------------------------------ running
    def _args(self) -> dict[str, str] | None:
        args = self.record.trigger_arguments
        return None if args is None else dict(args)

    def _dispatch(self, job: Callable[[], None]) -> None:
        if self.pool is not None:
            try:
                self.pool.submit(job)
            except RuntimeError:  # pool shut down: the trigger is stopping
                return
        else:
            job()

    def log(self, level: str, text: str) -> None:
        self.pe.plugin_log(self.record.trigger_name, level, text)

    def execute(self, kind: PluginKind, positional: tuple[Any, ...], scheduled_ns: int | None = None) -> CallResult:
        ctx = CallContext(engine=self.pe.engine, database=self.record.database, log=self.log,
                          cache_store=self.pe.cache_store, cache_scope=self.cache_scope)
        result = call_plugin(self.source, kind, ctx, positional, scheduled_ns=scheduled_ns)
        if result.ok:
            apply_writes(self.pe.engine, result.writes, kind, self.log)
        return result

    def _run_with_behavior(self, kind: PluginKind, positional: tuple[Any, ...],
                           scheduled_ns: int | None = None) -> None:
        """One event under the trigger's error_behavior (processing §6)."""
        if not self.pe.engine.catalog.db_exists(self.record.database):
            # The database was deleted: the server stops its triggers (and drops their caches).
            self.pe.auto_disable(self)
            return
        while not self.stopped:
            result = self.execute(kind, positional, scheduled_ns)
            if result.ok:
                return
            behavior = self.record.error_behavior
            if behavior == "disable":
                # The server reports this only in its own log, not processing_engine_logs (§6).
                log.error("processing engine: error executing %s plugin %s, disabling: %s",
                          kind, self.record.trigger_name, result.error)
                self.pe.auto_disable(self)
                return
            self.log("ERROR", f"error executing {kind} plugin: {result.error}")
            if behavior == "retry":
                time.sleep(RETRY_YIELD_S)
                continue
            if kind == "schedule":
                self.log("ERROR", f"error running scheduled plugin: {result.error}")
            return

    def handle_request(self, req: Request) -> Response:
        query = dict(req.query)
        headers = {k.lower(): v for k, v in req.headers.items() if k.lower() != "authorization"}
        body = req.body if req.method == "POST" else b""
        positional = (query, headers, body, self._args())
        if self.record.run_async:
            result = self._request_call(positional)
        else:
            # One at a time; a request queued behind a stuck call gives up once the trigger is stopped
            # (disable/delete/shutdown), so it never holds a server thread for a trigger that is gone.
            while not self.request_lock.acquire(timeout=0.1):
                if self.stopped:
                    return Response(status=404, body=NOT_FOUND_BODY, content_type=None)
            try:
                if self.stopped:
                    return Response(status=404, body=NOT_FOUND_BODY, content_type=None)
                result = self._request_call(positional)
            finally:
                self.request_lock.release()
        status, ctype, extra, payload = request_http_parts(result)
        return Response(status=status, body=payload, content_type=ctype, headers=extra)

    def _request_call(self, positional: tuple[Any, ...]) -> CallResult:
        result = self.execute("request", positional)
        if not result.ok:
            self.log("ERROR", f"error running request plugin: {result.error}")
        return result


class ProcessingEngine:
    """The processing engine of one server (see module docstring and docs/internals.md)."""

    def __init__(self, engine: Any, plugin_dir: Path | None, *, venv_dir: Path | None = None,
                 restrict_to: set[str] | frozenset[str] = frozenset({"wal", "schedule", "request"}),
                 plugin_repo: str | None = None):
        self.engine = engine
        self.plugin_dir = Path(plugin_dir) if plugin_dir is not None else None
        self.venv_dir = Path(venv_dir) if venv_dir is not None else (
            self.plugin_dir / ".venv" if self.plugin_dir is not None else None)
        self.restrict_to = set(restrict_to)
        self.plugin_repo = plugin_repo
        self.cache_store = CacheStore()
        self.logs = systables.LogStore()
        self._lock = threading.RLock()
        self._running: dict[tuple[str, str], TriggerRunner] = {}
        self._request_paths: dict[str, TriggerRunner] = {}
        self._started = False
        self._undo_venv: Callable[[], None] | None = None

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Create the plugin venv, register system tables and the flush listener, start enabled triggers."""
        if self._started:
            return
        self._started = True
        if self.venv_dir is not None and self.plugin_dir is not None:
            from emulator.processing.venv import activate_venv, ensure_venv

            try:
                ensure_venv(self.venv_dir)
            except OSError as exc:
                log.error("processing engine: could not create the plugin venv %s: %s", self.venv_dir, exc)
            else:
                self._undo_venv = activate_venv(self.venv_dir)
            site = str(venv_site_packages(self.venv_dir))
            if site not in sys.path:
                sys.path.append(site)
        self._register_system_tables()
        self.engine.add_flush_listener(self._on_flush, wants=self._wants_flush)
        for db, name, rec in self.engine.catalog.list_triggers():
            record = TriggerRecord.from_dict(db, rec)
            if not record.disabled:
                try:
                    self._start_trigger(record)
                except (PluginError, ValueError) as exc:
                    log.error("processing engine: could not start trigger %s in %s: %s", name, db, exc)

    def stop(self) -> None:
        with self._lock:
            runners = list(self._running.values())
            self._running.clear()
            self._request_paths.clear()
        for runner in runners:  # signal every worker first, so hung ones do not delay the others
            runner.stop_event.set()
        for runner in runners:
            runner.stop()
        if self._undo_venv is not None:
            self._undo_venv()
            self._undo_venv = None

    # ------------------------------------------------------------------------------------------ logs
    def plugin_log(self, trigger_name: str, level: str, text: str) -> None:
        self.logs.add(trigger_name, level, text)
        log.log({"INFO": logging.INFO, "WARN": logging.WARNING}.get(level, logging.ERROR),
                "processing engine: %s", text)

    # ------------------------------------------------------------------------------------------ registry
    def parse_spec(self, spec: str) -> Any:
        from emulator.processing.specs import SpecError, parse_trigger_spec

        try:
            return parse_trigger_spec(spec)
        except SpecError as exc:
            raise text_error(500, str(exc)) from None

    def resolve(self, filename: str) -> PluginSource:
        """Read/locate the plugin file; 500 ``Plugin error: …`` on failure (http §8 step 3)."""
        try:
            return resolve_plugin(self.plugin_dir, filename, plugin_repo=self.plugin_repo)
        except PluginError as exc:
            raise text_error(500, f"Plugin error: {exc}") from None

    def create_trigger(self, record: TriggerRecord) -> None:
        """http §8 check order after body parsing: restrict, plugin file, spec, db, duplicate."""
        spec_error: ApiError | None = None
        try:
            spec = self.parse_spec(record.trigger_specification)
        except ApiError as exc:  # reported after the plugin file (step 4)
            spec, spec_error = None, exc
        if spec is not None and spec_kind(spec) not in self.restrict_to:
            raise text_error(400, "invalid request: server is configured to reject "
                                  f"{spec.plugin_type_name} plugin triggers")
        self.resolve(record.plugin_filename)
        if spec_error is not None:
            raise spec_error
        record = record_with(record, trigger_specification=spec.to_string())
        catalog = self.engine.catalog
        if record.database == INTERNAL_DB:
            raise text_error(500, "cannot modify internal db")
        if not catalog.db_exists(record.database):
            raise DatabaseNotFound(record.database)
        with self._lock:
            if catalog.get_trigger(record.database, record.trigger_name) is not None:
                raise already_exists()
            catalog.put_trigger(record.database, record.trigger_name, record.to_dict())
        if not record.disabled:
            self._start_trigger(record, spec)

    def _start_trigger(self, record: TriggerRecord, spec: Any = None) -> TriggerRunner:
        if spec is None:
            from emulator.processing.specs import parse_trigger_spec

            spec = parse_trigger_spec(record.trigger_specification)
        source = resolve_plugin(self.plugin_dir, record.plugin_filename, plugin_repo=self.plugin_repo)
        runner = TriggerRunner(self, record, spec, source)
        key = (record.database, record.trigger_name)
        with self._lock:
            old = self._running.pop(key, None)
        if old is not None:
            self._stop_runner(old)
        with self._lock:
            self._running[key] = runner
            if runner.kind == "request":
                self._request_paths[spec.value] = runner
        runner.start()
        return runner

    def _stop_runner(self, runner: TriggerRunner) -> None:
        with self._lock:
            key = (runner.record.database, runner.record.trigger_name)
            if self._running.get(key) is runner:
                del self._running[key]
            for path, r in list(self._request_paths.items()):
                if r is runner:
                    del self._request_paths[path]
        runner.stop()

    def auto_disable(self, runner: TriggerRunner) -> None:
        """error_behavior=disable: stop the task and drop its cache; the catalog keeps it enabled (§6)."""
        self._stop_runner(runner)

    def _lookup(self, db: str, name: str) -> TriggerRecord:
        if not self.engine.catalog.db_exists(db):
            raise DatabaseNotFound(db)
        rec = self.engine.catalog.get_trigger(db, name)
        if rec is None:
            raise not_found(name)
        return TriggerRecord.from_dict(db, rec)

    def delete_trigger(self, db: str, name: str, force: bool) -> None:
        record = self._lookup(db, name)
        if not record.disabled and not force:
            raise text_error(500, f"Cannot delete running plugin {name}. Disable it first or use --force.")
        with self._lock:
            runner = self._running.get((db, name))
        if runner is not None:
            self._stop_runner(runner)
        self.engine.catalog.delete_trigger(db, name)

    def set_disabled(self, db: str, name: str, disabled: bool) -> None:
        record = self._lookup(db, name)
        with self._lock:
            runner = self._running.get((db, name))
        if disabled:
            if runner is not None:
                self._stop_runner(runner)
        elif runner is None:
            try:
                self._start_trigger(record_with(record, disabled=False))
            except PluginError as exc:
                raise text_error(500, f"Plugin error: {exc}") from None
        if record.disabled != disabled:
            record.disabled = disabled
            self.engine.catalog.put_trigger(db, name, record.to_dict())

    # ------------------------------------------------------------------------------------------ WAL fan-out
    def _wants_flush(self, db: str) -> bool:
        """Flush-listener predicate: does some running WAL trigger of ``db`` want its rows?"""
        with self._lock:
            return any(rdb == db and r.kind == "wal" for (rdb, _), r in self._running.items())

    def _on_flush(self, db: str, table_batches: list[dict[str, Any]]) -> None:
        """Flush listener (flusher thread): hand the batch to each WAL trigger of ``db``; never run plugins."""
        with self._lock:
            runners = [r for (rdb, _), r in self._running.items() if rdb == db and r.kind == "wal"]
        for runner in runners:
            wanted = runner.spec.value if runner.spec.kind == "table" else None
            # Each trigger gets its own copies, as the server converts the batch per trigger.
            batches = [
                {"table_name": b["table_name"], "rows": [dict(row) for row in b["rows"]]}
                for b in table_batches
                if wanted is None or b["table_name"] == wanted
            ]
            runner.offer(batches)

    # ------------------------------------------------------------------------------------------ requests
    def handle_engine_request(self, req: Request) -> Response:
        path = req.path[len(ENGINE_PREFIX):] if req.path.startswith(ENGINE_PREFIX) else req.path
        with self._lock:
            runner = self._request_paths.get(path)
        if runner is not None and not self.engine.catalog.db_exists(runner.record.database):
            self._stop_runner(runner)
            runner = None
        if runner is None or runner.stopped:
            return Response(status=404, body=NOT_FOUND_BODY, content_type=None)
        return runner.handle_request(req)

    # ------------------------------------------------------------------------------------------ dry runs
    def dry_run(self, *, filename: str, database: str, kind: PluginKind, positional: tuple[Any, ...],
                cache_name: str | None, scheduled_ns: int | None = None) -> dict[str, Any]:
        """Run once with writes captured (plugin_test/*); returns ``log_lines``, ``database_writes``, ``errors``."""
        source = self.resolve(filename)
        log_lines: list[str] = []

        def sink(level: str, text: str) -> None:
            log_lines.append(f"{level}: {text}")

        local_scope, global_scope = CacheStore.test_scopes(cache_name or "_shared_test")
        ctx = CallContext(engine=self.engine, database=database, log=sink, cache_store=self.cache_store,
                          cache_scope=local_scope, global_cache_scope=global_scope,
                          cache_default_ttl=TEST_CACHE_DEFAULT_TTL_S, capture_sync_writes=True)
        result = call_plugin(source, kind, ctx, positional, scheduled_ns=scheduled_ns, as_single_file=True)
        if not result.ok:
            return {"log_lines": [], "database_writes": {}, "errors": [result.error or ""]}
        writes: dict[str, list[str]] = {}
        for captured in (result.sync_writes, result.writes):
            for db, lines in captured.items():
                writes.setdefault(db, []).extend(lines)
        return {"log_lines": log_lines, "database_writes": writes, "errors": self._validate_lines(writes)}

    def _validate_lines(self, writes: dict[str, list[str]]) -> list[str]:
        """Check captured lines against the catalog as the dry run does (parse errors, field type clashes)."""
        from emulator.lineprotocol import parse_lines

        errors: list[str] = []
        catalog = self.engine.catalog
        for db, lines in writes.items():
            parsed, line_errors = parse_lines("\n".join(lines), precision="ns", default_time_ns=time.time_ns())
            for err in line_errors:
                errors.append(f"{err.error_message} on line {err.line_number}: {err.original_line}")
            for line in parsed:
                schema = catalog.table_schema(db, line.measurement) if catalog.db_exists(db) else None
                if not schema:
                    continue
                for name, (ftype, _value) in line.fields.items():
                    existing = schema.get("fields", {}).get(name)
                    if existing is not None and existing != ftype:
                        errors.append(f"invalid field value in line protocol for field '{name}' on line "
                                      f"{line.line_number}: expected type {existing}, but got {ftype}")
        return errors

    # ------------------------------------------------------------------------------------------ system tables
    def _register_system_tables(self) -> None:
        catalog = self.engine.catalog

        def spec_json(text: str) -> str:
            from emulator.processing.specs import parse_trigger_spec

            return json.dumps(parse_trigger_spec(text).to_system_json(), separators=(",", ":"))

        def triggers(db: str) -> Any:
            return systables.triggers_table(catalog.list_triggers(db), spec_json)

        def arguments(db: str) -> Any:
            return systables.arguments_table(catalog.list_triggers(db))

        def plugin_files(db: str) -> Any:
            return systables.plugin_files_table(db, catalog.list_triggers(), self.plugin_dir)

        self.engine.register_system_table("processing_engine_triggers", triggers)
        self.engine.register_system_table("processing_engine_trigger_arguments", arguments)
        self.engine.register_system_table("processing_engine_logs", lambda db: systables.logs_table(self.logs))
        self.engine.register_system_table("plugin_files", plugin_files)


def record_with(record: TriggerRecord, **changes: Any) -> TriggerRecord:
    data = dict(record.__dict__)
    data.update(changes)
    return TriggerRecord(**data)
