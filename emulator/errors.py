"""Typed errors that carry the real server's HTTP status and body.

Every layer below HTTP raises these; the HTTP layer only serialises them. Bodies are exact texts from
shared/reference/influxdb3-http-api.md: plain text (most), compact JSON ``{"error":"..."}``, the auth layer's
``{"error": "..."}`` (with a space), or the v2 write shape ``{"code":..,"message":..}``.
"""

from __future__ import annotations

import json
from typing import Any

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


class ApiError(Exception):
    """An error answered as an HTTP response: status, exact body and content type."""

    def __init__(self, status: int, body: str | bytes, content_type: str | None = TEXT):
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type
        super().__init__(self.body.decode("utf-8", "replace"))

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def text_error(status: int, message: str) -> ApiError:
    return ApiError(status, message, TEXT)


def json_error(status: int, message: str, data: Any = None) -> ApiError:
    """Compact ``{"error":"…"}`` (plus ``"data"`` when given), as the server's JSON errors."""
    obj: dict[str, Any] = {"error": message}
    if data is not None:
        obj["data"] = data
    return ApiError(status, json.dumps(obj, separators=(",", ":")), JSON)


def auth_error(status: int, message: str) -> ApiError:
    """The auth layer's JSON, which keeps a space after the colon: ``{"error": "…"}``."""
    return ApiError(status, json.dumps({"error": message}), JSON)


# Frequently used texts (reference §1, §4, §8, §12).
ALREADY_EXISTS = "attempted to create a resource that already exists"


def not_found(name: str) -> ApiError:
    return text_error(404, f"the requested resource was not found: {name}")


def already_exists() -> ApiError:
    return text_error(409, ALREADY_EXISTS)


def already_deleted(name: str) -> ApiError:
    """409 for a soft-deleted database or table named in a change (influxdb3_catalog ``CatalogError::
    AlreadyDeleted``, answered 409 by the server)."""
    return text_error(409, f"attempted to modify resource that was already deleted: {name}")


class DatabaseNotFound(ApiError):
    """A query or trigger against a database that does not exist."""

    def __init__(self, db: str, status: int = 404, body: str | None = None, content_type: str | None = TEXT):
        self.db = db
        super().__init__(status, body if body is not None else f"Database not found {db}", content_type)


class QueryError(Exception):
    """A SQL planning or execution failure; ``kind`` is ``plan`` (HTTP 400), ``not_implemented`` (405)
    or ``execution`` (500). ``message`` is DataFusion's text unchanged."""

    def __init__(self, message: str, kind: str = "plan"):
        self.message = message
        self.kind = kind
        super().__init__(message)

    def to_api_error(self) -> ApiError:
        status = {"plan": 400, "not_implemented": 405, "execution": 500}.get(self.kind, 400)
        return text_error(status, self.message)


class DamagedFileError(Exception):
    """A data file (WAL file, catalog, snapshot manifest) whose acknowledged contents cannot be read.
    Startup stops with one line made of ``str(exc)``; ``serve --repair-damaged-files`` moves the file aside
    instead (README, "Damaged data files"). ``offset`` is the byte where the damage starts; ``rows`` the
    rows it held when the file still tells them."""

    def __init__(self, path: Any, offset: int, reason: str, rows: int | None = None):
        self.path = path
        self.offset = offset
        self.reason = reason
        self.rows = rows
        held = "" if rows is None else f"; it holds {rows} acknowledged row{'' if rows == 1 else 's'}"
        super().__init__(f"{path} is damaged at byte {offset} ({reason}){held}")
