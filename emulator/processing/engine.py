"""ProcessingEngine: trigger registry, WAL fan-out, schedules, request routing, dry runs, plugin venv.

Threads (docs/internals.md): every running WAL or schedule trigger owns one worker thread; WAL triggers
receive flush events through a queue of 60 (the flusher blocks only while a queue is full, as the server);
``run_async`` triggers hand each event to a pool thread. Plugins never run on the flusher thread, so a
plugin that writes with ``no_sync=false`` simply waits for the next flush. Request triggers run on threads of
their own trigger (one at a time unless ``run_async``), never on the transport's threads: a stuck request
plugin delays only its own trigger (issue 9 item 9; the server runs each trigger on its own task).

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
from concurrent.futures import Future, ThreadPoolExecutor
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
#: Requests one request trigger holds waiting behind its running call (PLUGIN_EVENT_BUFFER_SIZE, its channel).
REQUEST_QUEUE_SIZE = 60
#: Threads of one ``run_async`` request trigger (the server's blocking pool is 512 for the whole process).
ASYNC_REQUEST_WORKERS = 64
#: A plugin call running longer than this is logged once as a warning naming its trigger (the server never
#: interrupts a plugin call, and neither does this stand-in).
SLOW_CALL_WARN_S = 60.0
#: How often the slow-call watch looks.
WATCH_INTERVAL_S = 1.0
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


def _not_found() -> Response:
    return Response(status=404, body=NOT_FOUND_BODY, content_type=None)


def _done(response: Response) -> Future[Response]:
    fut: Future[Response] = Future()
    fut.set_result(response)
    return fut


@dataclass
class _Call:
    runner: TriggerRunner
    kind: str
    started: float
    warned: bool = False


class SlowCallWatch:
    """Plugin calls in progress; :meth:`check` warns once per call that runs longer than ``warn_after_s``.

    The server neither times out nor interrupts plugin calls (a CPU-looping plugin runs until restart, a WAL
    plugin that never returns blocks writes once 60 flushes are queued); the stand-in keeps that and says so
    in its log, naming the trigger.
    """

    def __init__(self, warn_after_s: float) -> None:
        self.warn_after_s = warn_after_s
        self._lock = threading.Lock()
        self._calls: dict[int, _Call] = {}
        self._next = 0

    def begin(self, runner: TriggerRunner, kind: str) -> int:
        with self._lock:
            self._next += 1
            self._calls[self._next] = _Call(runner, kind, time.monotonic())
            return self._next

    def end(self, token: int) -> None:
        with self._lock:
            self._calls.pop(token, None)

    def check(self) -> None:
        now = time.monotonic()
        with self._lock:
            late = [c for c in self._calls.values() if not c.warned and now - c.started >= self.warn_after_s]
            for call in late:
                call.warned = True
        for call in late:
            rec = call.runner.record
            log.warning("processing engine: trigger %s (database %s) has been running one %s plugin call for "
                        "%.0f s; plugin calls are never interrupted (as the server): it runs until it returns or "
                        "the server restarts%s", rec.trigger_name, rec.database, call.kind, now - call.started,
                        "; requests to this trigger wait behind it" if call.kind == "request"
                        and not rec.run_async else "")


class TriggerRunner:
    """One running trigger: its worker thread (WAL/schedule) or its own request executor."""

    def __init__(self, pe: ProcessingEngine, record: TriggerRecord, spec: Any, source: PluginSource):
        self.pe = pe
        self.record = record
        self.spec = spec
        self.source = source
        self.kind: PluginKind = spec_kind(spec)  # type: ignore[assignment]
        self.stop_event = threading.Event()
        self.queue: queue.Queue[list[dict[str, Any]]] = queue.Queue(maxsize=WAL_QUEUE_SIZE)
        self.thread: threading.Thread | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.request_pool: ThreadPoolExecutor | None = None
        self._pending_lock = threading.Lock()
        self._pending = 0  # requests submitted and not finished (running + waiting)
        self._full_warned = False
        self.cache_scope = CacheStore.trigger_scope(record.database, record.trigger_name)

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self.kind == "request":
            workers = ASYNC_REQUEST_WORKERS if self.record.run_async else 1
            self.request_pool = ThreadPoolExecutor(max_workers=workers,
                                                   thread_name_prefix=f"request-{self.record.trigger_name}")
        elif self.record.run_async:
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
        if self.request_pool is not None:  # requests still waiting answer 404 (see submit_request)
            self.request_pool.shutdown(wait=False, cancel_futures=True)
        self.pe.cache_store.drop(self.cache_scope)

    @property
    def stopped(self) -> bool:
        return self.stop_event.is_set()

    # ------------------------------------------------------------------------------------------ WAL
    def offer(self, batches: list[dict[str, Any]]) -> None:
        """Queue a flush event; blocks while the queue is full (the server's flush waits too), with a warning."""
        warned = False
        while not self.stopped:
            try:
                self.queue.put(batches, timeout=0.1)
                if warned:
                    log.warning("processing engine: WAL trigger %s (database %s) took a queued flush; writes go on",
                                self.record.trigger_name, self.record.database)
                return
            except queue.Full:
                if not warned:
                    warned = True
                    log.warning("processing engine: WAL trigger %s (database %s) has %d flushes queued and its "
                                "plugin has not taken the next one; writes wait until it does (as the server)",
                                self.record.trigger_name, self.record.database, WAL_QUEUE_SIZE)
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
        token = self.pe.slow_calls.begin(self, kind)
        try:
            result = call_plugin(self.source, kind, ctx, positional, scheduled_ns=scheduled_ns)
        finally:
            self.pe.slow_calls.end(token)
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

    def submit_request(self, req: Request) -> Future[Response] | None:
        """Queue one HTTP request on this trigger's own executor; never blocks.

        Returns a future of the response, or None when a non-async trigger already holds
        :data:`REQUEST_QUEUE_SIZE` requests waiting behind its running call: the caller waits for room and
        tries again (the server's sender waits on the trigger's channel of 60). Requests still waiting when
        the trigger stops (disable, delete, shutdown) answer 404 ``{error: "not found"}``.
        """
        assert self.request_pool is not None
        with self._pending_lock:
            if self.stopped:
                return _done(_not_found())
            if not self.record.run_async and self._pending > REQUEST_QUEUE_SIZE:
                if not self._full_warned:
                    self._full_warned = True
                    log.warning("processing engine: request trigger %s (database %s) has %d requests waiting "
                                "behind its running call; more requests to it wait for room (other triggers "
                                "are not affected)", self.record.trigger_name, self.record.database,
                                REQUEST_QUEUE_SIZE)
                return None
            self._pending += 1
        outer: Future[Response] = Future()
        try:
            inner = self.request_pool.submit(self._request_job, req)
        except RuntimeError:  # executor shut down: the trigger is stopping
            self._request_finished()
            return _done(_not_found())
        inner.add_done_callback(lambda f: self._request_done(outer, f))
        return outer

    def _request_finished(self) -> None:
        with self._pending_lock:
            self._pending -= 1
            if self._pending <= REQUEST_QUEUE_SIZE // 2:
                self._full_warned = False

    def _request_done(self, outer: Future[Response], inner: Future[Response]) -> None:
        self._request_finished()
        if outer.done():  # given up by its waiter (a cancelled asyncio wrapper)
            return
        if inner.cancelled():
            outer.set_result(_not_found())
        elif inner.exception() is not None:
            outer.set_exception(inner.exception())  # type: ignore[arg-type]
        else:
            outer.set_result(inner.result())

    def _request_job(self, req: Request) -> Response:
        if self.stopped:
            return _not_found()
        query = dict(req.query)
        headers = {k.lower(): v for k, v in req.headers.items() if k.lower() != "authorization"}
        body = req.body if req.method == "POST" else b""
        result = self._request_call((query, headers, body, self._args()))
        status, ctype, extra, payload = request_http_parts(result)
        return Response(status=status, body=payload, content_type=ctype, headers=extra)

    def _request_call(self, positional: tuple[Any, ...]) -> CallResult:
        result = self.execute("request", positional)
        if not result.ok:
            self.log("ERROR", f"error running request plugin: {result.error}")
        return result


def rust_debug_str(text: str) -> str:
    r"""``text`` as Rust's ``{:?}`` shows a String: quoted, with ``\``, ``\"``, ``\n``, ``\r``, ``\t``, ``\0``
    escaped and ``\u{..}`` for other control characters."""
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\0":
            out.append("\\0")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


class ProcessingEngine:
    """The processing engine of one server (see module docstring and docs/internals.md)."""

    def __init__(self, engine: Any, plugin_dir: Path | None, *, venv_dir: Path | None = None,
                 restrict_to: set[str] | frozenset[str] = frozenset({"wal", "schedule", "request"}),
                 plugin_repo: str | None = None, slow_call_warn_s: float = SLOW_CALL_WARN_S):
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
        self.slow_calls = SlowCallWatch(slow_call_warn_s)
        self._watch_stop = threading.Event()
        self._watch_thread: threading.Thread | None = None
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
        self._watch_thread = threading.Thread(target=self._watch, name="plugin-watch", daemon=True)
        self._watch_thread.start()
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
        self._watch_stop.set()
        if self._undo_venv is not None:
            self._undo_venv()
            self._undo_venv = None

    def _watch(self) -> None:
        while not self._watch_stop.wait(min(WATCH_INTERVAL_S, self.slow_calls.warn_after_s)):
            self.slow_calls.check()

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
    def submit_engine_request(self, req: Request) -> Future[Response] | None:
        """``/api/v3/engine/<path>`` (GET/POST) without blocking: the future of its response, or None while
        that trigger's queue is full (wait and call again; a client that has gone should stop trying).

        The plugin runs on its trigger's own thread (:meth:`TriggerRunner.submit_request`), so a transport
        awaits the future holding none of its own threads. Unknown paths, stopped triggers and triggers of
        deleted databases answer 404 ``{error: "not found"}`` at once.
        """
        path = req.path[len(ENGINE_PREFIX):] if req.path.startswith(ENGINE_PREFIX) else req.path
        with self._lock:
            runner = self._request_paths.get(path)
        if runner is not None and not self.engine.catalog.db_exists(runner.record.database):
            self._stop_runner(runner)
            runner = None
        if runner is None or runner.stopped:
            return _done(_not_found())
        return runner.submit_request(req)

    def handle_engine_request(self, req: Request) -> Response:
        """Blocking form of :meth:`submit_engine_request` (waits for room and for the response)."""
        while True:
            fut = self.submit_engine_request(req)
            if fut is not None:
                return fut.result()
            time.sleep(0.05)

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
            # the server reports the failed run as its PluginError (influxdb3_processing_engine plugins.rs
            # PluginExecutionError: "error executing plugin: …"; cli/mod.rs test_wal_plugin_errors)
            return {"log_lines": [], "database_writes": {}, "errors": [f"error executing plugin: {result.error or ''}"]}
        writes: dict[str, list[str]] = {}
        for captured in (result.sync_writes, result.writes):
            for db, lines in captured.items():
                writes.setdefault(db, []).extend(lines)
        return {"log_lines": log_lines, "database_writes": writes, "errors": self._validate_lines(writes)}

    def _validate_lines(self, writes: dict[str, list[str]]) -> list[str]:
        """Check captured lines per database as the server's dry run does: the first line a write with
        ``accept_partial=false`` would reject, as ``line protocol parse error on write to db <db>:
        WriteLineError { original_line: "…", line_number: N, error_message: "…" }`` (Rust's Debug; the full
        line), or ``Failed to initialize validator for db <db>: <error>`` (influxdb3_processing_engine
        plugins.rs ``DryRunWriteHandler::validate_write_lines`` @v3.10.1)."""
        errors: list[str] = []
        for db, lines in writes.items():
            try:
                err = self.engine.check_lp(db, "\n".join(lines))
            except ApiError as exc:
                message = exc.text
                try:
                    message = json.loads(exc.body).get("error", message) if exc.body.startswith(b"{") else message
                except (ValueError, AttributeError):
                    pass
                errors.append(f"Failed to initialize validator for db {db}: {message}")
                continue
            if err is not None:
                errors.append(f"line protocol parse error on write to db {db}: WriteLineError {{ original_line: "
                              f"{rust_debug_str(err.original_line)}, line_number: {err.line_number}, "
                              f"error_message: {rust_debug_str(err.error_message)} }}")
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
