"""Tokens and authentication (reference §12).

A token is ``apiv3_`` + url-safe base64 (no padding) of 64 random bytes. Only its SHA-512 (hex) is stored, in
the catalog (``catalog.put_token`` …). :class:`TokenStore` keeps an in-memory ``sha512 -> record`` map so that
verifying a request costs one hash and one dict lookup.

Stored record (JSON-able, opaque to the catalog)::

    {"id": 0, "name": "_admin", "hash": "<sha512 hex>", "created_at": <unix ms>, "expiry": <unix ms> | None,
     "permissions": "*:*:*"}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import secrets
import stat
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from emulator.errors import ApiError, auth_error, text_error

log = logging.getLogger("emulator.auth")

TOKEN_PREFIX = "apiv3_"
ADMIN_NAME = "_admin"
MALFORMED = (
    "Authorization header was malformed, the request was not in the form of "
    "'Authorization: <auth-scheme> <token>', supported auth-schemes are Bearer, Token and Basic"
)
UNAUTHENTICATED = "the request was not authenticated"
_SCHEMES = ("Bearer", "Token", "Basic")


class TokenFileError(ValueError):
    """The --admin-token-file cannot be used; the message is the one-line startup error."""


class TokenCatalog(Protocol):
    def put_token(self, record: dict[str, Any]) -> None: ...
    def get_token_by_hash(self, sha512_hex: str) -> dict[str, Any] | None: ...
    def list_tokens(self) -> list[dict[str, Any]]: ...
    def delete_token(self, name: str) -> None: ...


def new_token() -> str:
    return TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(64)).decode().rstrip("=")


def hash_token(token: str) -> str:
    return hashlib.sha512(token.encode()).hexdigest()


def rfc3339_ms(ms: int) -> str:
    """chrono's serde form of a ``DateTime<Utc>`` made from milliseconds: ``2025-04-18T14:02:45.331Z``."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    frac = ms % 1000
    return f"{base}.{frac:03d}Z" if frac else f"{base}Z"


# -- credentials ----------------------------------------------------------------------------------


def extract_token(authorization: str | None, p_param: str | None) -> str | None:
    """The presented token, or None when there is none. Raises the 400 malformed error.

    ``p_param`` is the ``p=`` query parameter, passed only on ``/query`` and ``/write``.
    """
    if authorization is None:
        return p_param
    parts = authorization.split(" ")
    if len(parts) != 2 or parts[0] not in _SCHEMES:
        raise auth_error(400, MALFORMED)
    scheme, value = parts
    if scheme != "Basic":
        return value
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise auth_error(400, MALFORMED) from None
    # split at the LAST colon; a colon left in the user part is malformed (influxdb3_server http.rs
    # token_part_as_bytes; http/tests.rs test_basic_auth_token_should_not_allow_colon_in_username)
    user, sep, token = decoded.rpartition(":")
    if not sep or ":" in user:
        raise auth_error(400, MALFORMED)
    return token


# -- token store ----------------------------------------------------------------------------------


class TokenStore:
    """Create, verify, regenerate and delete tokens; the catalog persists them."""

    def __init__(self, catalog: TokenCatalog):
        self._catalog = catalog
        self._lock = threading.Lock()
        self._by_hash: dict[str, dict[str, Any]] = {}
        self.reload()

    def reload(self) -> None:
        with self._lock:
            self._by_hash = {rec["hash"]: rec for rec in self._catalog.list_tokens()}

    def has_tokens(self) -> bool:
        return bool(self._by_hash)

    def _by_name(self, name: str) -> dict[str, Any] | None:
        for rec in self._by_hash.values():
            if rec["name"] == name:
                return rec
        return None

    def _next_id(self) -> int:
        return max((int(r["id"]) for r in self._by_hash.values()), default=-1) + 1

    def lookup(self, token: str) -> dict[str, Any] | None:
        """The stored record of ``token`` (expired or not), or None; for transports with their own
        status for an expired token (Flight: PERMISSION_DENIED)."""
        return self._by_hash.get(hash_token(token))

    def verify(self, token: str | None) -> dict[str, Any]:
        """The record of a valid, unexpired token; else raise 401."""
        if not token:
            raise auth_error(401, UNAUTHENTICATED)
        rec = self._by_hash.get(hash_token(token))
        if rec is None:
            raise auth_error(401, UNAUTHENTICATED)
        expiry = rec.get("expiry")
        if expiry is not None and expiry <= int(time.time() * 1000):
            raise auth_error(401, UNAUTHENTICATED)
        return rec

    def _store(self, name: str, token: str, *, token_id: int, expiry_ms: int | None) -> dict[str, Any]:
        rec = {
            "id": token_id,
            "name": name,
            "hash": hash_token(token),
            "created_at": int(time.time() * 1000),
            "expiry": expiry_ms,
            "permissions": "*:*:*",
        }
        self._catalog.put_token(rec)
        self._by_hash[rec["hash"]] = rec
        return rec

    @staticmethod
    def response(rec: dict[str, Any], token: str) -> dict[str, Any]:
        """The 201 body of the token routes (field order as the server's)."""
        return {
            "id": rec["id"],
            "name": rec["name"],
            "token": token,
            "hash": rec["hash"],
            "created_at": rfc3339_ms(rec["created_at"]),
            "expiry": rfc3339_ms(rec["expiry"]) if rec.get("expiry") is not None else None,
        }

    def create_admin(self) -> dict[str, Any]:
        """POST /api/v3/configure/token/admin: 409 once ``_admin`` exists."""
        with self._lock:
            if self._by_name(ADMIN_NAME) is not None:
                raise text_error(409, f"token name already exists, {ADMIN_NAME}")
            token = new_token()
            rec = self._store(ADMIN_NAME, token, token_id=0, expiry_ms=None)
        return self.response(rec, token)

    def regenerate_admin(self) -> dict[str, Any]:
        """POST …/token/admin/regenerate: a new secret for ``_admin``; the old one stops working."""
        with self._lock:
            old = self._by_name(ADMIN_NAME)
            if old is None:
                raise text_error(404, f"the requested resource was not found: {ADMIN_NAME}")
            self._catalog.delete_token(ADMIN_NAME)
            self._by_hash.pop(old["hash"], None)
            token = new_token()
            rec = self._store(ADMIN_NAME, token, token_id=int(old["id"]), expiry_ms=old.get("expiry"))
        return self.response(rec, token)

    def create_named_admin(self, name: str, expiry_secs: int | None) -> dict[str, Any]:
        with self._lock:
            if self._by_name(name) is not None:
                raise text_error(409, f"token name already exists, {name}")
            token = new_token()
            expiry = int(time.time() * 1000) + expiry_secs * 1000 if expiry_secs is not None else None
            rec = self._store(name, token, token_id=self._next_id(), expiry_ms=expiry)
        return self.response(rec, token)

    def delete(self, name: str) -> None:
        with self._lock:
            if name == ADMIN_NAME:
                raise text_error(405, "cannot delete operator token")
            rec = self._by_name(name)
            if rec is None:
                raise text_error(404, f"the requested resource was not found: {name}")
            self._catalog.delete_token(name)
            self._by_hash.pop(rec["hash"], None)

    def import_token_file(self, path: Path) -> bool:
        """Apply ``--admin-token-file``: returns True when the token was added.

        The file is used only when no token of that name exists. Raises TokenFileError for a missing,
        unreadable or malformed file. A file readable by group/others only warns.
        """
        try:
            mode = path.stat().st_mode
            raw = path.read_text()
        except OSError as exc:
            raise TokenFileError(f"cannot read admin token file {path}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("admin token file %s is readable by others (mode %o); use 0600", path, mode & 0o777)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise TokenFileError(f"invalid admin token file {path}: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("token"), str):
            raise TokenFileError(f"invalid admin token file {path}: missing field `token`")
        token: str = data["token"]
        if not token.startswith(TOKEN_PREFIX):
            raise TokenFileError("Invalid token format: must start with 'apiv3_'")
        name = data.get("name") if isinstance(data.get("name"), str) else ADMIN_NAME
        expiry = data.get("expiry_millis")
        with self._lock:
            if self._by_name(name) is not None:
                log.info("admin token file %s skipped: a token named %s exists", path, name)
                return False
            token_id = 0 if name == ADMIN_NAME else self._next_id()
            self._store(name, token, token_id=token_id, expiry_ms=expiry if isinstance(expiry, int) else None)
        log.info("admin token loaded from %s", path)
        return True


def require_json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise text_error(400, "serde json error: invalid type: expected struct")
    return value


__all__ = [
    "ADMIN_NAME",
    "ApiError",
    "MALFORMED",
    "TokenFileError",
    "TokenStore",
    "UNAUTHENTICATED",
    "extract_token",
    "hash_token",
    "new_token",
]
