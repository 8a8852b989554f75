"""Transport-neutral API calls: the request/response types every route module and the core share.

Handlers are plain synchronous functions ``handler(req: Request) -> Response`` that may raise
:class:`emulator.errors.ApiError`. A transport (the aiohttp glue in ``emulator/http/server.py``) builds the
``Request`` and writes the ``Response``; the core (the processing engine's request triggers) takes and
returns these types without knowing any transport. Transports run handlers on a thread pool, so a handler
may block (a write waiting for its WAL flush, a plugin call).

Core module (docs/internals.md "Layers"): imports nothing from ``emulator.http``, ``emulator.flight`` or
``emulator.harness``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emulator import jsonbody
from emulator.errors import JSON, ApiError, text_error


@dataclass
class Request:
    method: str
    path: str
    #: query parameters, URL-decoded, last value wins
    query: dict[str, str]
    #: the raw query string ("" when absent); some routes behave differently with no query string at all
    query_string: str
    #: header names lower-cased, last value wins
    headers: dict[str, str]
    #: body bytes, already gzip-decoded
    body: bytes = b""
    #: the authenticated token's record (None with --without-auth or on unauthenticated routes)
    token: Any = None
    #: multi-valued query parameters in order, for routes that need them
    query_items: list[tuple[str, str]] = field(default_factory=list)
    #: true once the client has gone (the transport's check, polled by long work such as a query); None: never
    cancelled: Callable[[], bool] | None = None

    def json(self) -> Any:
        """Body as JSON for JSON-body routes: 415 for a wrong Content-Type, 400 ``serde json error: …``."""
        ctype = self.headers.get("content-type", "")
        mime = ctype.split(";", 1)[0].strip().lower()
        if not (mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))):
            raise text_error(415, "unacceptable content-type, expected: application/json")
        return parse_json(self.body or b"")


def parse_json(data: bytes | str) -> Any:
    """``data`` parsed as serde_json parses a body (:func:`emulator.jsonbody.loads`); on failure the server's
    400 ``serde json error: <text> at line L column C``."""
    try:
        return jsonbody.loads(data)
    except ValueError as exc:
        raise text_error(400, f"serde json error: {exc}") from None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def empty(cls, status: int = 200) -> Response:
        return cls(status=status)

    @classmethod
    def json(cls, obj: Any, status: int = 200, compact: bool = True) -> Response:
        sep = (",", ":") if compact else None
        return cls(status=status, body=json.dumps(obj, separators=sep).encode(), content_type=JSON)

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Response:
        return cls(status=status, body=text.encode(), content_type=content_type)

    @classmethod
    def from_error(cls, err: ApiError) -> Response:
        return cls(status=err.status, body=err.body, content_type=err.content_type)


Handler = Callable[[Request], Response]
#: Exact-match route table: (METHOD, path) -> handler
Routes = dict[tuple[str, str], Handler]

