"""aiohttp glue: one catch-all handler with the server's processing order (reference §1).

1. ``OPTIONS`` on any path: 204 with CORS headers, no auth.
2. ``--without-auth`` and a path under ``/api/v3/configure/token``: 405.
3. Authentication (except ``/api/v3/configure/token/admin`` and ``--disable-authz`` paths), before routing.
4. Exact (method, path) routing, else 404 ``Not found``; ``/api/v3/engine/<path>`` (GET/POST) goes to the
   processing engine.

Handlers are sync functions run on a thread pool; the event loop only reads bodies and writes responses.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from emulator.auth import TokenFileError, TokenStore, extract_token
from emulator.config import ServeConfig, cli_params, log_level
from emulator.errors import ApiError, DamagedFileError, json_error, text_error
from emulator.flight.mux import MuxSite
from emulator.flight.service import FlightServer
from emulator.http.base import Handler, Request, Response, Routes
from emulator.http.core_routes import CoreContext, CoreRoutes, Metrics

log = logging.getLogger("emulator.server")

ENGINE_PREFIX = "/api/v3/engine/"
TOKEN_PREFIX = "/api/v3/configure/token"
TOKEN_ADMIN = "/api/v3/configure/token/admin"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "*",
    "Access-Control-Allow-Headers": "*",
}
#: --disable-authz resource -> exact paths (pprof is a prefix)
AUTHZ_PATHS = {
    "health": ("/health", "/api/v1/health"),
    "ping": ("/ping",),
    "metrics": ("/metrics",),
    "ready": ("/ready",),
}
P_PARAM_PATHS = frozenset({"/query", "/write"})
POOL_WORKERS = 64
#: How often a request waiting for room in a full request-trigger queue looks again.
ENGINE_QUEUE_POLL_S = 0.05

#: ``ProcessingEngine.submit_engine_request``: a future of the response, or None while the trigger's queue is full
EngineSubmit = Callable[[Request], "Future[Response] | None"]



#: seconds in-flight requests may take to finish once SIGTERM/SIGINT arrives
SHUTDOWN_GRACE_S = 2.0


class _ExactResponse(web.Response):
    """A response that sends only the headers we set.

    aiohttp adds ``Content-Type: application/octet-stream`` to any body without one and a ``Server`` header;
    the real server sends neither (a request plugin's 500 has no Content-Type, reference processing §2).
    """

    def __init__(self, *args, omit_content_type: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._omit_content_type = omit_content_type

    async def _write_headers(self) -> None:
        if self._omit_content_type:
            self._headers.pop(hdrs.CONTENT_TYPE, None)
        self._headers.pop(hdrs.SERVER, None)
        await super()._write_headers()

class StartupError(RuntimeError):
    """A startup failure reported as one line on stderr with a non-zero exit code."""


class HttpServer:
    """Request pipeline: body limits, auth, routing, thread-pool dispatch, common headers."""

    def __init__(
        self,
        cfg: ServeConfig,
        routes: Routes,
        *,
        tokens: TokenStore | None,
        engine_handler: EngineSubmit | None,
        cluster_uuid: str,
        metrics: Metrics,
    ):
        self.cfg = cfg
        self.routes = routes
        self.tokens = tokens
        self.engine_handler = engine_handler
        self.cluster_uuid = cluster_uuid
        self.metrics = metrics
        self.pool = ThreadPoolExecutor(max_workers=POOL_WORKERS, thread_name_prefix="http")
        self.open_paths: set[str] = set()
        self.open_pprof = "pprof" in cfg.disable_authz
        for resource in cfg.disable_authz:
            self.open_paths.update(AUTHZ_PATHS.get(resource, ()))

    # -- helpers ---------------------------------------------------------------------------------
    def _needs_auth(self, path: str) -> bool:
        if self.tokens is None or path == TOKEN_ADMIN or path in self.open_paths:
            return False
        return not (self.open_pprof and path.startswith("/debug/pprof"))

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        limit = self.cfg.max_http_request_size
        too_big = text_error(413, f"max request size ({limit} bytes) exceeded")
        length = request.content_length
        if length is not None and length > limit:
            raise too_big
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = await request.content.readany()
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise too_big
            chunks.append(chunk)
        data = b"".join(chunks)
        encoding = request.headers.get("Content-Encoding")
        if encoding is None or encoding == "identity":
            return data
        if encoding != "gzip":
            raise text_error(400, f"unacceptable content-encoding: {encoding}")
        # a body of several gzip members decodes to their concatenation, as the server's decoder does
        # (influxdb3_server tests.rs test_write_lp_with_multi_member_gzip / _with_empty_gzip_member)
        parts: list[bytes] = []
        size = 0
        rest = data
        try:
            while True:
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out = d.decompress(rest, limit + 1 - size)
                size += len(out)
                parts.append(out)
                if size > limit:
                    raise too_big
                rest = d.unused_data
                if not rest or not d.eof:
                    break
        except zlib.error as exc:
            raise text_error(400, f"error decoding gzip stream: {exc}") from None
        return b"".join(parts)

    def _to_web(self, resp: Response, *, method: str, matched: str) -> web.Response:
        headers = {"cluster-uuid": self.cluster_uuid}
        if 200 <= resp.status < 300:
            headers["Access-Control-Allow-Origin"] = "*"
        if resp.content_type is not None:
            headers["Content-Type"] = resp.content_type
        headers.update(resp.headers)
        self.metrics.count_request(method, matched, resp.status)
        return _ExactResponse(
            status=resp.status,
            body=resp.body or None,
            headers=headers,
            omit_content_type="Content-Type" not in headers,
        )

    # -- the one handler --------------------------------------------------------------------------
    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        method = request.method
        path = request.path
        if method == "OPTIONS":
            return web.Response(status=204, headers={"cluster-uuid": self.cluster_uuid, **CORS_HEADERS})
        try:
            if self.tokens is None and path.startswith(TOKEN_PREFIX):
                raise text_error(405, "endpoint disabled, started without auth")
            query_string = request.query_string
            items = parse_qsl(query_string, keep_blank_values=True) if query_string else []
            token_record = None
            if self._needs_auth(path):
                p_param = None
                if path in P_PARAM_PATHS:
                    for k, v in items:
                        if k == "p":
                            p_param = v
                token = extract_token(request.headers.get("Authorization"), p_param)
                assert self.tokens is not None
                token_record = self.tokens.verify(token)
            handler = self.routes.get((method, path))
            matched = path
            headers = {k.lower(): v for k, v in request.headers.items()}
            if handler is None:
                if path.startswith(ENGINE_PREFIX) and method in ("GET", "POST") and self.engine_handler:
                    handler = self.engine_handler
                    matched = ENGINE_PREFIX + "*"
                    headers.pop("authorization", None)
                else:
                    raise text_error(404, "Not found")
            body = b"" if method in ("GET", "HEAD") else await self._read_body(request)
            req = Request(
                method=method,
                path=path,
                query=dict(items),
                query_string=query_string,
                headers=headers,
                body=body,
                token=token_record,
                query_items=items,
                cancelled=_client_gone(request),
            )
            if handler is self.engine_handler:
                resp = await self._engine_call(request, req)
            else:
                resp = await asyncio.get_running_loop().run_in_executor(self.pool, _call, handler, req)
        except ApiError as err:
            resp, matched = Response.from_error(err), "error"
        return self._to_web(resp, method=method, matched=matched)


    async def _engine_call(self, request: web.BaseRequest, req: Request) -> Response:
        """A request-trigger call: the plugin runs on its trigger's own threads; this coroutine holds no thread.

        While the trigger's queue is full it waits for room, and gives up when its client has gone, so a stuck
        request plugin delays only its own trigger and a client that disconnects holds nothing.
        """
        assert self.engine_handler is not None
        while True:
            try:
                fut = self.engine_handler(req)
            except ApiError as err:
                return Response.from_error(err)
            if fut is not None:
                break
            transport = request.transport
            if transport is None or transport.is_closing():
                return Response.from_error(text_error(503, "client disconnected"))  # never sent
            await asyncio.sleep(ENGINE_QUEUE_POLL_S)
        try:
            return await asyncio.wrap_future(fut)
        except Exception as exc:
            return _failure(req, exc)


def _client_gone(request: web.BaseRequest) -> Callable[[], bool]:
    """A check, safe from a pool thread, that is true once ``request``'s connection is closed or closing
    (the client disconnected): a running query polls it between result batches and stops."""
    def gone() -> bool:
        transport = request.transport
        return transport is None or transport.is_closing()
    return gone


def _call(handler: Handler, req: Request) -> Response:
    """Run a handler on a pool thread; its exceptions become responses (:func:`_failure`)."""
    try:
        return handler(req)
    except Exception as exc:
        return _failure(req, exc)


def _failure(req: Request, exc: Exception) -> Response:
    """The response to a handler's exception: an ApiError answers as itself; anything else is a bug below the
    HTTP layer: logged with its traceback, answered 500, and the server keeps serving."""
    if isinstance(exc, ApiError):
        return Response.from_error(exc)
    log.error("internal error in %s %s", req.method, req.path, exc_info=exc)
    return Response.from_error(json_error(500, "internal error"))


# -- startup ---------------------------------------------------------------------------------------


class MalformedRequestLogFilter(logging.Filter):
    """Turns aiohttp's ERROR + traceback for a request it cannot parse into one WARNING line without its text.

    aiohttp logs ``Error handling request from <peer>`` with the parser's exception, whose message quotes the
    offending bytes: a malformed ``Authorization`` line (a token with a stray control character, an oversized
    header) would put the token in the server log. The line keeps the peer, the exception type and the status.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "malformed HTTP request from %s: %s (answered %s)", (
                peer, type(exc).__name__, exc.code)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(cfg: ServeConfig) -> None:
    logging.basicConfig(
        level=log_level(cfg.log_filter),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestLogFilter())


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"failed to bind address {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def prepare_data_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StartupError(f"data dir {path} is not writable: {exc.strerror}") from None


def start_flight(engine: Any, tokens: TokenStore | None) -> FlightServer:
    """The Flight (gRPC) service behind the HTTP port; its HTTP/2 connections arrive through MuxSite."""
    flight = FlightServer(engine, tokens)
    try:
        flight.start()
    except (OSError, RuntimeError) as exc:
        raise StartupError(f"cannot start the Flight service: {exc}") from None
    return flight


def load_processing(engine: Any, cfg: ServeConfig) -> Any | None:
    """Construct the processing engine (always, also without --plugin-dir); None if the module is missing."""
    try:
        from emulator.processing.engine import ProcessingEngine
    except ImportError as exc:
        log.warning("processing engine unavailable (%s); its routes answer 404", exc)
        return None
    return ProcessingEngine(
        engine,
        cfg.plugin_dir,
        venv_dir=cfg.virtual_env_location,
        restrict_to=set(cfg.restrict_plugin_triggers_to),
    )


async def serve(cfg: ServeConfig) -> None:
    """Start everything, serve until SIGTERM/SIGINT, then shut down in order."""
    started = time.monotonic()
    sock = bind_socket(cfg.http_host, cfg.http_port)
    if cfg.data_dir is not None:
        prepare_data_dir(cfg.data_dir)
    from emulator.engine import Engine

    try:
        engine = Engine(cfg.data_dir, wal_flush_interval=cfg.wal_flush_interval, node_id=cfg.node_id,
                        wal_snapshot_size=cfg.wal_snapshot_size,
                        gen1_duration_ns=cfg.gen1_duration_s * 1_000_000_000,
                        snapshotted_wal_files_to_keep=cfg.snapshotted_wal_files_to_keep,
                        repair_damaged_files=cfg.repair_damaged_files,
                        exec_mem_pool_bytes=cfg.exec_mem_pool_bytes)
        engine.open()
        engine.cli_params = cli_params(cfg)
    except DamagedFileError as exc:
        raise StartupError(f"cannot start: {exc}. Start once with --repair-damaged-files to move it aside "
                           "(rows lost are logged), see README 'Damaged data files'") from None
    pe = None
    flight: FlightServer | None = None
    runner: web.ServerRunner | None = None
    server: HttpServer | None = None
    try:
        tokens = None
        if not cfg.without_auth:
            tokens = TokenStore(engine.catalog)
            if cfg.admin_token_file is not None:
                try:
                    tokens.import_token_file(cfg.admin_token_file)
                except TokenFileError as exc:
                    raise StartupError(str(exc)) from None
        elif cfg.admin_token_file is not None:
            log.info("--without-auth: --admin-token-file ignored")
        if cfg.admin_token_recovery_http_bind:
            log.warning("--admin-token-recovery-http-bind is not implemented by the embedded engine")
        cluster_uuid = engine.catalog.get_extra("cluster_uuid")
        if not cluster_uuid:
            cluster_uuid = str(uuid.uuid4())
            engine.catalog.put_extra("cluster_uuid", cluster_uuid)
        metrics = Metrics()
        ctx = CoreContext(engine=engine, tokens=tokens, process_id=str(uuid.uuid4()), metrics=metrics)
        routes: Routes = CoreRoutes(ctx).routes()
        pe = load_processing(engine, cfg)
        engine_handler = None
        if pe is not None:
            try:
                from emulator.http.processing_routes import build_routes

                pe_routes = build_routes(pe)
            except ImportError as exc:  # a half-installed processing package (development only)
                log.warning("processing routes unavailable (%s); they answer 404", exc)
                pe = None
            else:
                pe.start()
                routes.update(pe_routes)
                engine_handler = pe.submit_engine_request
        server = HttpServer(
            cfg, routes, tokens=tokens, engine_handler=engine_handler, cluster_uuid=cluster_uuid, metrics=metrics
        )
        lowlevel = web.Server(server.handle, auto_decompress=False, access_log=None)
        # In-flight requests get a short grace period on shutdown; a plugin stuck in a request must not hold
        # the process (the real server's process exit ends every plugin call too).
        runner = web.ServerRunner(lowlevel, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE_S)
        await runner.setup()
        flight = start_flight(engine, tokens)
        site = MuxSite(runner, sock, flight_path=flight.socket_path)
        await site.start()
        log.info(
            "startup time: %dms address=%s:%d node_id=%s object_store=%s auth=%s",
            (time.monotonic() - started) * 1000,
            cfg.http_host,
            cfg.http_port,
            cfg.node_id,
            cfg.object_store,
            "off" if cfg.without_auth else "on",
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutdown requested")
    finally:
        if runner is not None:
            await runner.cleanup()
        if flight is not None:
            flight.stop()
        if pe is not None:
            pe.stop()
        engine.close()
        if server is not None:
            server.pool.shutdown(wait=False, cancel_futures=True)
        sock.close()
        log.info("stopped")


def run(cfg: ServeConfig) -> int:
    """Entry point used by ``python -m emulator serve``; returns the exit code."""
    from emulator.memory import configure_process_memory

    memory = configure_process_memory()  # before any thread starts (emulator/memory.py)
    configure_logging(cfg)
    if memory:
        log.debug("memory: %s", ", ".join(memory))
    try:
        asyncio.run(serve(cfg))
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    return _exit_past_stuck_threads(0)


#: seconds ``_exit_past_stuck_threads`` waits for non-daemon threads to end before calling them stuck
STUCK_THREAD_GRACE_S = 1.0


def _exit_past_stuck_threads(code: int) -> int:
    """Return ``code``, or end the process at once when plugin threads are still running.

    The engine is closed (its last WAL flush is durable) before this runs. A plugin that loops or sleeps
    forever holds a non-daemon thread that interpreter shutdown would wait on for ever; the real server's
    process exit simply ends it, so this one does too.
    """
    # Idle pool workers (HTTP, Flight, plugin pools) were told to stop and end within moments: wait for them
    # briefly, so only threads that are really busy count (and a clean stop logs no false warning).
    deadline = time.monotonic() + STUCK_THREAD_GRACE_S
    stuck = []
    for t in threading.enumerate():
        if t is threading.main_thread() or t.daemon:
            continue
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            stuck.append(t)
    if not stuck:
        return code
    log.warning("%d plugin thread(s) still running at shutdown (%s); exiting without waiting for them", len(stuck),
                ", ".join(t.name for t in stuck))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
