"""Core routes: health, ping, metrics, write, query, databases, tables, tokens (reference §3-§7, §12).

Routes parse and serialise only; state and rules live in :class:`emulator.engine.Engine` and
:class:`emulator.auth.TokenStore`. Query strings and JSON bodies are decoded the way the server's serde structs
decode them, so the 400 texts (``serde error: missing field `db` ``…) match.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from emulator import PRODUCT_NAME as PRODUCT
from emulator import REVISION, VERSION
from emulator.errors import JSON, ApiError, DatabaseNotFound, QueryError, json_error, text_error
from emulator.http.base import Request, Response, Routes, parse_json
from emulator.lineprotocol import PRECISIONS, PRECISIONS_V1

PRECISION_VARIANTS = ("auto", "second", "millisecond", "microsecond", "nanosecond")
QUERY_FORMATS = ("parquet", "csv", "pretty", "json", "json_lines")
FIELD_TYPES = ("utf8", "int64", "uint64", "float64", "bool")
LIMIT_PREFIXES = ("Update to schema would exceed number of", "Adding a new database would exceed limit of")


# -- serde-like decoding ---------------------------------------------------------------------------

Parser = Callable[[str], Any]


def serde_bool(value: str) -> bool:
    """serde_urlencoded's bool: exactly ``true`` or ``false``."""
    if value == "true":
        return True
    if value == "false":
        return False
    raise ValueError("provided string was not `true` or `false`")


def serde_enum(variants: Iterable[str], aliases: dict[str, str] | None = None) -> Parser:
    names = tuple(variants)
    table = dict(aliases or {})
    for v in names:
        table.setdefault(v, v)

    def parse(value: str) -> str:
        if value in table:
            return table[value]
        expected = ", ".join(f"`{v}`" for v in names)
        raise ValueError(f"unknown variant `{value}`, expected one of {expected}")

    return parse


def serde_query(req: Request, fields: dict[str, Parser], required: Iterable[str] = ()) -> dict[str, Any]:
    """Decode ``req.query_items`` as a serde struct: unknown keys ignored, duplicates and bad values rejected
    in input order, then missing required fields. Raises 400 ``serde error: …``."""
    out: dict[str, Any] = {}
    for key, value in req.query_items:
        parser = fields.get(key)
        if parser is None:
            continue
        if key in out:
            raise text_error(400, f"serde error: duplicate field `{key}`")
        try:
            out[key] = parser(value)
        except ValueError as exc:
            raise text_error(400, f"serde error: {exc}") from None
    for name in required:
        if name not in out:
            raise text_error(400, f"serde error: missing field `{name}`")
    return out


def _json_end_position(body: bytes) -> tuple[int, int]:
    """serde_json's (line, column) after the top-level value: where "missing field" errors point."""
    text = body.decode("utf-8", "replace").rstrip()
    line = text.count("\n") + 1
    col = len(text) - (text.rfind("\n") + 1)
    return line, col


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f'string "{value}"'
    if isinstance(value, list):
        return "sequence"
    return "map"


def serde_body(
    req: Request,
    fields: dict[str, type | tuple[type, ...]],
    required: Iterable[str],
    *,
    check_content_type: bool = True,
) -> dict[str, Any]:
    """Decode a JSON body as a serde struct (types checked shallowly). 415/400 as the server."""
    if check_content_type:
        obj = req.json()
    else:
        obj = parse_json(req.body or b"")
    line, col = _json_end_position(req.body)
    if not isinstance(obj, dict):
        raise text_error(
            400, f"serde json error: invalid type: {_type_name(obj)}, expected struct at line {line} column {col}"
        )
    for name, types in fields.items():
        if name in obj and obj[name] is not None and not isinstance(obj[name], types):
            want = {str: "a string", bool: "a boolean", list: "a sequence", dict: "a map", int: "u64"}
            first = types[0] if isinstance(types, tuple) else types
            raise text_error(
                400,
                f"serde json error: invalid type: {_type_name(obj[name])}, expected {want.get(first, 'a value')}"
                f" at line {line} column {col}",
            )
    for name in required:
        if obj.get(name) is None:
            raise text_error(400, f"serde json error: missing field `{name}` at line {line} column {col}")
    return obj


# -- metrics ---------------------------------------------------------------------------------------


@dataclass
class Metrics:
    """A few Prometheus counters (reference §2 ``/metrics``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: dict[tuple[str, str, int], int] = field(default_factory=dict)
    lines_written: int = 0
    lines_rejected: int = 0
    write_bytes: int = 0
    queries: int = 0

    def count_request(self, method: str, path: str, status: int) -> None:
        key = (method, path, status)
        with self.lock:
            self.requests[key] = self.requests.get(key, 0) + 1

    def render(self) -> str:
        with self.lock:
            out = [
                "# HELP http_requests_total Total HTTP requests by method, matched route and status.",
                "# TYPE http_requests_total counter",
            ]
            for (method, path, status), n in sorted(self.requests.items()):
                out.append(f'http_requests_total{{method="{method}",path="{path}",status="{status}"}} {n}')
            out += [
                "# HELP influxdb3_write_lines_total Lines accepted by the write endpoints.",
                "# TYPE influxdb3_write_lines_total counter",
                f"influxdb3_write_lines_total {self.lines_written}",
                "# HELP influxdb3_write_lines_rejected_total Lines rejected by the write endpoints.",
                "# TYPE influxdb3_write_lines_rejected_total counter",
                f"influxdb3_write_lines_rejected_total {self.lines_rejected}",
                "# HELP influxdb3_write_bytes_total Line protocol bytes received.",
                "# TYPE influxdb3_write_bytes_total counter",
                f"influxdb3_write_bytes_total {self.write_bytes}",
                "# HELP influxdb3_queries_total SQL queries executed over HTTP.",
                "# TYPE influxdb3_queries_total counter",
                f"influxdb3_queries_total {self.queries}",
            ]
        return "\n".join(out) + "\n"


# -- context ---------------------------------------------------------------------------------------


@dataclass
class CoreContext:
    engine: Any  # emulator.engine.Engine
    tokens: Any  # emulator.auth.TokenStore | None (None with --without-auth)
    process_id: str
    metrics: Metrics


class CoreRoutes:
    """The handlers; :meth:`routes` gives the exact-match table."""

    def __init__(self, ctx: CoreContext):
        self.ctx = ctx
        self.engine = ctx.engine

    def routes(self) -> Routes:
        r: Routes = {
            ("GET", "/health"): self.health,
            ("GET", "/api/v1/health"): self.health,
            ("GET", "/ping"): self.ping,
            ("POST", "/ping"): self.ping,
            ("GET", "/metrics"): self.metrics,
            ("POST", "/api/v3/write_lp"): self.write_v3,
            ("POST", "/api/v2/write"): self.write_v2,
            ("POST", "/write"): self.write_v1,
            ("GET", "/api/v3/query_sql"): self.query_sql,
            ("POST", "/api/v3/query_sql"): self.query_sql,
            ("GET", "/api/v3/query_influxql"): self.query_influxql,
            ("POST", "/api/v3/query_influxql"): self.query_influxql,
            ("GET", "/query"): self.query_v1,
            ("POST", "/query"): self.query_v1,
            ("GET", "/api/v3/configure/database"): self.db_list,
            ("POST", "/api/v3/configure/database"): self.db_create,
            ("PUT", "/api/v3/configure/database"): self.db_update,
            ("DELETE", "/api/v3/configure/database"): self.db_delete,
            ("POST", "/api/v3/configure/database/retention_period"): self.retention_set,
            ("DELETE", "/api/v3/configure/database/retention_period"): self.retention_clear,
            ("POST", "/api/v3/configure/table"): self.table_create,
            ("DELETE", "/api/v3/configure/table"): self.table_delete,
            ("POST", "/api/v3/configure/last_cache"): self.not_implemented("last_cache"),
            ("DELETE", "/api/v3/configure/last_cache"): self.not_implemented("last_cache"),
            ("POST", "/api/v3/configure/distinct_cache"): self.not_implemented("distinct_cache"),
            ("DELETE", "/api/v3/configure/distinct_cache"): self.not_implemented("distinct_cache"),
            ("POST", "/api/v3/configure/token/admin"): self.token_admin,
            ("POST", "/api/v3/configure/token/admin/regenerate"): self.token_regenerate,
            ("POST", "/api/v3/configure/token/named_admin"): self.token_named_admin,
            ("DELETE", "/api/v3/configure/token"): self.token_delete,
        }
        return r

    # -- §3 health, ping, metrics ------------------------------------------------------------------
    def health(self, req: Request) -> Response:
        return Response.text("OK")

    def ping(self, req: Request) -> Response:
        body = {"product_name": PRODUCT, "version": VERSION, "revision": REVISION, "process_id": self.ctx.process_id}
        resp = Response.json(body)
        request_id = str(uuid.uuid4())  # one id per request under both names (reference §3; format inferred)
        resp.headers.update({"X-Influxdb-Build": "Core", "X-Influxdb-Version": VERSION,
                             "Request-Id": request_id, "X-Request-Id": request_id})
        return resp

    def metrics(self, req: Request) -> Response:
        return Response.text(self.ctx.metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")

    def not_implemented(self, what: str) -> Callable[[Request], Response]:
        def handler(req: Request) -> Response:
            raise text_error(405, f"This feature is not implemented: {what} (embedded engine)")

        return handler

    # -- §6 writes -------------------------------------------------------------------------------------
    def _write(self, db: str, req: Request, *, precision: str, accept_partial: bool, no_sync: bool) -> Response:
        self.ctx.metrics.write_bytes += len(req.body)
        outcome = self.engine.write_lp(
            db, req.body, precision=precision, accept_partial=accept_partial, no_sync=no_sync
        )
        errors = list(outcome.errors)
        self.ctx.metrics.lines_written += outcome.lines_written
        if not errors:
            return Response.empty(204)
        self.ctx.metrics.lines_rejected += len(errors)
        status = 422 if any(e.error_message.startswith(LIMIT_PREFIXES) for e in errors) else 400
        if accept_partial:
            raise json_error(status, "partial write of line protocol occurred", [e.to_json() for e in errors])
        raise json_error(status, "line protocol parsing error", errors[0].to_json())

    def write_v3(self, req: Request) -> Response:
        if not req.query_string:
            raise text_error(400, "missing query parameter 'db'")
        p = serde_query(
            req,
            {
                "db": str,
                "precision": serde_enum(PRECISION_VARIANTS, PRECISIONS),
                "accept_partial": serde_bool,
                "no_sync": serde_bool,
            },
            required=("db",),
        )
        return self._write(
            p["db"],
            req,
            precision=p.get("precision", "auto"),
            accept_partial=p.get("accept_partial", True),
            no_sync=p.get("no_sync", False),
        )

    def _v1_precision(self) -> Parser:
        return serde_enum(PRECISION_VARIANTS[1:], PRECISIONS_V1)

    def write_v1(self, req: Request) -> Response:
        """POST /write. Parameter errors are 400 ``{"error": …}`` with iox_http's texts (``write/v1.rs``
        ``V1WriteParseError``: ``no db destination provided``, ``failed to deserialize db/rp/precision in
        request: <serde>``; influxdb3_server ``RoutingError::LegacyWrite``)."""
        if not req.query_string:
            raise json_error(400, "no db destination provided")
        try:
            p = serde_query(req, {"db": str, "rp": str, "precision": self._v1_precision(), "p": str}, ("db",))
        except ApiError as err:
            raise json_error(400, "failed to deserialize db/rp/precision in request: "
                             + err.text.removeprefix("serde error: ")) from None
        db = v1_database(p["db"], p.get("rp"))
        return self._write(db, req, precision=p.get("precision", "ns"), accept_partial=False, no_sync=False)

    def write_v2(self, req: Request) -> Response:
        """POST /api/v2/write; every error as ``{"code","message"}``, the message naming the cause as the
        server's ``Display`` does (influxdb3_server ``http.rs`` ``V2WriteApiError``; iox_http ``single_tenant``
        ``parse_v2``: no query string ``no org/bucket destination provided``, no or empty bucket ``missing
        bucket value``)."""
        try:
            if not req.query_string:
                raise text_error(400, "no org/bucket destination provided")
            try:
                p = serde_query(req, {"bucket": str, "org": str, "precision": self._v1_precision()}, ())
            except ApiError as err:  # iox_http write/v2.rs V2WriteParseError::DecodeFail
                raise text_error(400, "failed to deserialize org/bucket/precision in request: "
                                 + err.text.removeprefix("serde error: ")) from None
            if not p.get("bucket"):
                raise text_error(400, "missing bucket value")
            return self._write(
                p["bucket"], req, precision=p.get("precision", "ns"), accept_partial=False, no_sync=False
            )
        except ApiError as err:
            raise v2_error(err) from None

    # -- §7 queries ----------------------------------------------------------------------------------
    def _query_request(self, req: Request, *, db_required: bool) -> dict[str, Any]:
        fmt = serde_enum(QUERY_FORMATS, {"jsonl": "json_lines"})
        if req.method == "GET":
            if not req.query_string:
                raise text_error(400, "missing query parameters 'db' and 'q'")
            p = serde_query(req, {"db": str, "q": str, "format": fmt, "params": str}, ("q",))
            if "params" in p:
                p["params"] = parse_json(p["params"])
        else:
            p = serde_body(req, {"db": str, "q": str, "format": str, "params": dict}, ("q",), check_content_type=False)
            if p.get("format") is not None:
                try:
                    p["format"] = fmt(p["format"])
                except ValueError as exc:
                    line, col = _json_end_position(req.body)
                    raise text_error(400, f"serde json error: {exc} at line {line} column {col}") from None
        if db_required and p.get("db") is None:
            raise text_error(400, "serde error: missing field `db`")
        return p

    def query_sql(self, req: Request) -> Response:
        from emulator.serialize import choose_format, serialize

        p = self._query_request(req, db_required=True)
        fmt = choose_format(p.get("format"), req.headers.get("accept"))
        self.ctx.metrics.queries += 1
        try:
            table = self.engine.query(p["db"], p["q"], p.get("params") or None, cancelled=req.cancelled)
        except DatabaseNotFound as err:
            raise json_error(404, f"query error: database not found: {err.db}") from None
        except QueryError as err:
            raise err.to_api_error() from None
        body, ctype = serialize(table, fmt)
        return Response(status=200, body=body, content_type=ctype)

    def query_influxql(self, req: Request) -> Response:
        from emulator.serialize import choose_format

        p = self._query_request(req, db_required=False)
        choose_format(p.get("format"), req.headers.get("accept"))
        raise text_error(405, "This feature is not implemented: InfluxQL queries (embedded engine)")

    def query_v1(self, req: Request) -> Response:
        # v1 takes q, db, epoch, pretty, chunked, p (token, handled by auth). No InfluxQL here.
        p = serde_query(req, {"q": str, "db": str, "epoch": str, "p": str}, ())
        if "q" not in p and req.method == "GET":
            raise text_error(400, "missing query parameters 'db' and 'q'")
        raise text_error(405, "This feature is not implemented: InfluxQL queries (embedded engine)")

    # -- §4 databases -------------------------------------------------------------------------------
    def db_list(self, req: Request) -> Response:
        fmt = serde_enum(QUERY_FORMATS, {"jsonl": "json_lines"})
        p = serde_query(req, {"format": fmt, "show_deleted": serde_bool}, ("format",))
        from emulator.serialize import serialize

        show_deleted = p.get("show_deleted", False)
        rows = self.engine.list_databases(show_deleted=show_deleted)
        body, ctype = serialize(_rows_table(rows, show_deleted), p["format"])
        return Response(status=200, body=body, content_type=ctype)

    def db_create(self, req: Request) -> Response:
        p = serde_body(req, {"db": str, "retention_period": str}, ("db",))
        self.engine.create_database(p["db"], retention_period=p.get("retention_period"))
        return Response.empty(200)

    def db_update(self, req: Request) -> Response:
        p = serde_body(req, {"db": str, "retention_period": str}, ("db",))
        self.engine.update_database(p["db"], p.get("retention_period"))
        return Response.empty(200)

    def db_delete(self, req: Request) -> Response:
        p = serde_query(req, {"db": str, "hard_delete_at": str}, ("db",))
        self.engine.delete_database(p["db"], hard_delete_at=p.get("hard_delete_at"))
        return Response.empty(200)

    def retention_set(self, req: Request) -> Response:
        p = serde_query(req, {"db": str, "duration": str}, ("db", "duration"))
        self.engine.set_retention(p["db"], p["duration"])
        return Response.empty(204)

    def retention_clear(self, req: Request) -> Response:
        p = serde_query(req, {"db": str}, ("db",))
        self.engine.clear_retention(p["db"])
        return Response.empty(204)

    # -- §5 tables -----------------------------------------------------------------------------------
    def table_create(self, req: Request) -> Response:
        p = serde_body(req, {"db": str, "table": str, "tags": list, "fields": list}, ("db", "table", "tags", "fields"))
        line, col = _json_end_position(req.body)
        ftype = serde_enum(FIELD_TYPES)
        fields: list[dict[str, str]] = []
        for f in p["fields"]:
            if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not isinstance(f.get("type"), str):
                missing = "name" if not isinstance(f, dict) or "name" not in f else "type"
                raise text_error(400, f"serde json error: missing field `{missing}` at line {line} column {col}")
            try:
                fields.append({"name": f["name"], "type": ftype(f["type"])})
            except ValueError as exc:
                raise text_error(400, f"serde json error: {exc} at line {line} column {col}") from None
        if not all(isinstance(t, str) for t in p["tags"]):
            raise text_error(400, f"serde json error: invalid type: expected a string at line {line} column {col}")
        self.engine.create_table(p["db"], p["table"], list(p["tags"]), fields)
        return Response.empty(200)

    def table_delete(self, req: Request) -> Response:
        p = serde_query(req, {"db": str, "table": str, "hard_delete_at": str}, ("db", "table"))
        self.engine.delete_table(p["db"], p["table"], hard_delete_at=p.get("hard_delete_at"))
        return Response.empty(200)

    # -- §12 tokens ----------------------------------------------------------------------------------
    def _tokens(self) -> Any:
        if self.ctx.tokens is None:  # unreachable: the server answers 405 first without auth
            raise text_error(405, "endpoint disabled, started without auth")
        return self.ctx.tokens

    @staticmethod
    def _token_response(body: dict[str, Any]) -> Response:
        # The server sends the literal header "Content-Type: json".
        return Response(status=201, body=json.dumps(body, separators=(",", ":")).encode(), content_type="json")

    def token_admin(self, req: Request) -> Response:
        return self._token_response(self._tokens().create_admin())

    def token_regenerate(self, req: Request) -> Response:
        return self._token_response(self._tokens().regenerate_admin())

    def token_named_admin(self, req: Request) -> Response:
        p = serde_body(req, {"token_name": str, "expiry_secs": int}, ("token_name",))
        expiry = p.get("expiry_secs")
        if isinstance(expiry, bool) or (expiry is not None and expiry < 0):
            line, col = _json_end_position(req.body)
            raise text_error(400, f"serde json error: invalid value: expected u64 at line {line} column {col}")
        return self._token_response(self._tokens().create_named_admin(p["token_name"], expiry))

    def token_delete(self, req: Request) -> Response:
        p = serde_query(req, {"token_name": str}, ("token_name",))
        self._tokens().delete(p["token_name"])
        return Response.empty(200)


def _rows_table(rows: list[dict[str, Any]], show_deleted: bool) -> Any:
    import pyarrow as pa

    names = [r["iox::database"] for r in rows]
    cols: dict[str, Any] = {"iox::database": pa.array(names, type=pa.utf8())}
    if show_deleted:
        cols["deleted"] = pa.array([bool(r.get("deleted", False)) for r in rows], type=pa.bool_())
    return pa.table(cols)


EMPTY_WRITE_TEXT = "incoming write was empty"
_V2_CODES = {400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not found", 413: "request too large"}


def v1_database(db: str, rp: str | None) -> str:
    """The database a v1 write goes to: ``rp`` is lower-cased; empty, ``''``, ``autogen`` and ``default`` mean
    no retention policy (``db``), any other name ``db/rp`` (iox_http ``write/v1.rs`` ``RetentionPolicy``,
    ``single_tenant::parse_v1``)."""
    if rp is None:
        return db
    rp = rp.lower()
    if rp in ("", "''", "autogen", "default"):
        return db
    return f"{db}/{rp}"


def v2_error(err: ApiError) -> ApiError:
    """Re-shape an error as the v2 write API's ``{"code","message"}``; ``message`` is the server's ``Display``
    of the error: a rejected line ``write buffer error: line protocol parse failed: <cause>`` (write.rs
    ``api_v2_write_*``; issue 10 item 6), an empty body ``write buffer error: incoming write was empty``."""
    message = err.text
    if err.content_type == JSON:
        try:
            obj = json.loads(err.body)
            message = obj.get("error", message)
            data = obj.get("data")
            if message == "line protocol parsing error" and isinstance(data, dict):
                message = f"write buffer error: line protocol parse failed: {data.get('error_message', '')}"
        except (ValueError, AttributeError):
            message = err.text
    elif message == EMPTY_WRITE_TEXT:
        message = f"write buffer error: {EMPTY_WRITE_TEXT}"
    code = _V2_CODES.get(err.status, "internal error" if err.status >= 500 else "invalid")
    body = json.dumps({"code": code, "message": message}, separators=(",", ":"))
    return ApiError(err.status, body, JSON)
