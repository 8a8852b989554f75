"""Shared machinery of the loopback fakes: a threaded HTTP server, request counting, fault injection."""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Request:
    """One request as the fake saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lowercase names
    body: bytes
    kind: str = "other"

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Response:
    """What a fake answers."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    declared_length: int | None = None  # a Content-Length larger than the body, then close: a broken answer

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        merged = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        return cls(status, json.dumps(data).encode("utf-8"), merged)


@dataclass
class Fault:
    """A fault served instead of (or before) the normal answer, for the next `times` matching requests.

    status: answer this HTTP status (with `headers` and `body`) instead of the real answer.
    delay: wait this many seconds before answering (longer than the client's read timeout = a read timeout).
    malformed: answer 200 with a body that is not JSON.
    truncated: answer 200 declaring more body than is sent, then close the connection (the client's read of
        the body breaks: requests raises ChunkedEncodingError, which is neither a timeout nor a connect error).
    graphql_errors: answer 200 with {"errors": graphql_errors} (GraphQL requests).
    kind: only requests of this kind (e.g. "list", "detail", "graphql", "sources", "post"); None = any.
    after: let this many matching requests through untouched first.
    """

    times: int = 1
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    malformed: bool = False
    truncated: bool = False
    graphql_errors: list[dict[str, Any]] | None = None
    kind: str | None = None
    after: int = 0


class FakeServer:
    """A real HTTP server on a loopback port, running in a daemon thread.

    Subclasses implement `classify(request) -> kind` and `handle(request) -> Response`. Every request is
    counted by kind and recorded (with its headers, so tests can check auth), under a lock.
    """

    name = "fake"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._lock = threading.RLock()
        self._faults: list[Fault] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.counts: Counter[str] = Counter()
        self.requests: list[Request] = []

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """Base URL clients use (127.0.0.1 when bound to all interfaces)."""
        if self._server is None:
            raise RuntimeError(f"{self.name} is not started")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self._server.server_address[1]}"

    def start(self) -> FakeServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._serve()

            def do_POST(self) -> None:  # noqa: N802
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                response = fake._dispatch(request)
                try:
                    self.send_response(response.status)
                    for key, value in response.headers.items():
                        self.send_header(key, value)
                    declared = response.declared_length
                    self.send_header("Content-Length", str(declared if declared is not None else len(response.body)))
                    self.end_headers()
                    self.wfile.write(response.body)
                    if declared is not None:
                        self.wfile.flush()
                        self.close_connection = True
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a read-timeout test): nothing left to answer

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (signature of the base)
                return  # keep test output quiet; requests are recorded in fake.requests

        self._stopping.clear()
        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=f"{self.name}-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes delayed handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ faults and counters
    def fail_next(self, times: int = 1, **fault: Any) -> None:
        """Queue a fault for the next `times` matching requests (see Fault for the keywords)."""
        with self._lock:
            self._faults.append(Fault(times=times, **fault))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.requests.clear()

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            return sum(self.counts.values()) if kind is None else self.counts[kind]

    def auth_headers(self, header: str = "authorization") -> list[str | None]:
        """The value of `header` on every recorded request, in order (None when absent)."""
        with self._lock:
            return [r.headers.get(header) for r in self.requests]

    def _take_fault(self, kind: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind is None or fault.kind == kind:
                    if fault.after > 0:
                        fault.after -= 1
                        return None
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _dispatch(self, request: Request) -> Response:
        request.kind = self.classify(request)
        with self._lock:
            self.counts[request.kind] += 1
            self.requests.append(request)
        fault = self._take_fault(request.kind)
        if fault is not None:
            if fault.delay:
                self._stopping.wait(fault.delay)
            if fault.status is not None:
                body = fault.body if fault.body is not None else {"message": f"injected HTTP {fault.status}"}
                if isinstance(body, (bytes, str)):
                    raw = body.encode() if isinstance(body, str) else body
                    return Response(fault.status, raw, dict(fault.headers))
                return Response.json(body, fault.status, fault.headers)
            if fault.malformed:
                return Response(200, b'{"truncated": [1, 2', {"Content-Type": "application/json"})
            if fault.truncated:
                return Response(200, b'{"results": [', {"Content-Type": "application/json"}, declared_length=4096)
            if fault.graphql_errors is not None:
                return Response.json({"errors": fault.graphql_errors}, 200, fault.headers)
        try:
            return self.handle(request)
        except Exception as exc:  # a fake bug must show up as a 500 to the client, not a dropped connection
            return Response.json({"message": f"fake server error: {type(exc).__name__}: {exc}"}, 500)

    # ------------------------------------------------------------ for subclasses
    def classify(self, request: Request) -> str:
        return "other"

    def handle(self, request: Request) -> Response:
        return Response.json({"message": "Not Found"}, 404)


@contextmanager
def blackhole() -> Iterator[str]:
    """A loopback URL whose TCP connects never complete (a connect timeout), until the block exits.

    A listening socket with a backlog of 0 that never accepts: one connection fills the accept queue, and the
    kernel then drops further SYNs, so clients wait for their connect timeout.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(4):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.settimeout(0.2)
            try:
                probe.connect(("127.0.0.1", port))
            except OSError:
                probe.close()
                break
            fillers.append(probe)
        yield f"http://127.0.0.1:{port}"
    finally:
        for sock in fillers:
            sock.close()
        listener.close()
