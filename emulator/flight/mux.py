"""One listener for HTTP/1.1 and Flight: sniff each connection's first bytes.

The server answers HTTP and gRPC (Flight) on the same port (influxdb3_server ``UnifiedService``). Here a
connection whose first 24 bytes are the HTTP/2 client preface (``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n``,
RFC 9113 §3.4: how every gRPC client opens) is relayed byte for byte to the gRPC Flight server on its
private unix socket; any other connection is handed to aiohttp's protocol as soon as its bytes differ from
the preface (for HTTP/1.1 that is the first byte, or the second after ``P``). The HTTP path costs one
comparison per connection and nothing per request: after the hand-over aiohttp owns the transport.

Difference (COVERAGE.md): the server routes per request on HTTP/2 + ``content-type: application/grpc``, so
it also serves its HTTP API over HTTP/2 with prior knowledge; here every HTTP/2 connection is Flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("emulator.flight")

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class _Upstream(asyncio.Protocol):
    """The connection to the Flight server: relays its bytes to the client, with back-pressure both ways."""

    def __init__(self, down: MuxProtocol):
        self.down = down
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.down.transport is not None and not self.down.transport.is_closing():
            self.down.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.down.transport is not None:
            self.down.transport.close()

    def pause_writing(self) -> None:  # the Flight server reads slower than the client sends
        if self.down.transport is not None:
            self.down.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.down.transport is not None and not self.down.transport.is_closing():
            self.down.transport.resume_reading()


class MuxProtocol(asyncio.Protocol):
    """Per-connection protocol of the shared listener.

    Args:
        http_factory: aiohttp's protocol factory (the low-level ``web.Server``).
        flight_path: the Flight server's unix socket, or None (HTTP/2 connections are then closed).
    """

    def __init__(self, http_factory: Callable[[], asyncio.Protocol], flight_path: str | None):
        self.http_factory = http_factory
        self.flight_path = flight_path
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.flight = False
        self.upstream: asyncio.Transport | None = None
        self.pending: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.flight:
            if self.upstream is not None:
                self.upstream.write(data)
            else:
                self.pending.append(data)
            return
        self.buffer += data
        n = min(len(self.buffer), len(H2_PREFACE))
        if self.buffer[:n] != H2_PREFACE[:n]:
            self._to_http()
        elif len(self.buffer) >= len(H2_PREFACE):
            self._to_flight()

    def eof_received(self) -> bool | None:
        if self.flight:
            if self.upstream is not None and self.upstream.can_write_eof():
                self.upstream.write_eof()
                return True
            return None
        # fewer bytes than the preface, then end of input: let the HTTP server answer what it got
        proto = self._to_http()
        return proto.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.upstream is not None:
            self.upstream.close()

    def pause_writing(self) -> None:  # the client reads slower than the Flight server sends
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and not self.upstream.is_closing():
            self.upstream.resume_reading()

    # -- hand-over -------------------------------------------------------------------------------
    def _to_http(self) -> Any:
        assert self.transport is not None
        proto = self.http_factory()
        self.transport.set_protocol(proto)
        proto.connection_made(self.transport)
        if self.buffer:
            proto.data_received(self.buffer)
        self.buffer = b""
        return proto

    def _to_flight(self) -> None:
        assert self.transport is not None
        self.flight = True
        sock = self.transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # asyncio sets no TCP_NODELAY on sockets accepted from a listener made with proto 0, and
            # Nagle + the client's delayed ACK would add ~40 ms to every call (aiohttp sets it for HTTP)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = [self.buffer]
        self.buffer = b""
        if self.flight_path is None:
            self.transport.close()
            return
        self.transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._connect(self.flight_path))
        _TASKS.add(task)
        task.add_done_callback(_TASKS.discard)

    async def _connect(self, path: str) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        try:
            upstream, _ = await loop.create_unix_connection(lambda: _Upstream(self), path)
        except OSError as exc:
            log.error("flight: cannot reach the Flight server at %s: %s", path, exc)
            self.transport.close()
            return
        if self.closed:
            upstream.close()
            return
        self.upstream = upstream
        upstream.write(b"".join(self.pending))
        self.pending = []
        self.transport.resume_reading()


_TASKS: set[asyncio.Task[None]] = set()


class MuxSite(web.SockSite):
    """aiohttp ``SockSite`` whose connections go through :class:`MuxProtocol` (HTTP and Flight on one port)."""

    def __init__(self, runner: web.BaseRunner, sock: Any, *, flight_path: str | None, **kwargs: Any):
        super().__init__(runner, sock, **kwargs)
        self._flight_path = flight_path

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        http_factory = self._runner.server
        assert http_factory is not None
        flight_path = self._flight_path
        self._server = await loop.create_server(
            lambda: MuxProtocol(http_factory, flight_path),  # type: ignore[arg-type]
            sock=self._sock, backlog=self._backlog,
        )
