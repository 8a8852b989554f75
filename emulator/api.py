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

    def json(self) -> Any:
        """Body as JSON for JSON-body routes: 415 for a wrong Content-Type, 400 ``serde json error: …``."""
        ctype = self.headers.get("content-type", "")
        mime = ctype.split(";", 1)[0].strip().lower()
        if not (mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))):
            raise text_error(415, "unacceptable content-type, expected: application/json")
        try:
            return jsonbody.loads(self.body or b"")
        except ValueError as exc:
            raise text_error(400, f"serde json error: {serde_json_message(exc)}") from None


def serde_json_message(exc: ValueError) -> str:
    """Python's JSON error rendered in serde_json's words where they map one to one (a
    :class:`emulator.jsonbody.SerdeJsonError` is serde_json's text already)."""
    msg = str(exc)
    if isinstance(exc, jsonbody.SerdeJsonError):
        return msg
    if isinstance(exc, json.JSONDecodeError):
        if exc.msg.startswith("Unterminated string"):
            lines = exc.doc.split("\n")
            return f"EOF while parsing a string at line {len(lines)} column {len(lines[-1])}"
        if exc.pos >= len(exc.doc.rstrip()):
            return f"EOF while parsing {_eof_context(exc.doc)} at line {exc.lineno} column {max(exc.colno - 1, 0)}"
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return msg


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


def _eof_context(doc: str) -> str:
    """What serde_json was parsing when the input ended: a string, an object, a list or a value."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in doc:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append(ch)
        elif ch in "}]" and stack:
            stack.pop()
    if in_string:
        return "a string"
    if not stack:
        return "a value"
    return "an object" if stack[-1] == "{" else "a list"
