"""The Arrow Flight gRPC service: DoGet with IOx tickets, Flight SQL statement queries, the server's statuses.

Behaviour copied from influxdb3 3.10.1 (crate ``service_grpc_flight``, ``lib.rs``; ``influxdb3_authz``;
``authz::extract_token``; ``service_common::datafusion_error_to_tonic_code``):

* **DoGet**: decode the ticket (``INVALID_ARGUMENT`` ``Invalid ticket. Error: Invalid ticket``), then
  authenticate, then find the database, then plan and run. A JSON ticket is what influxdb3-python and the
  other v3 clients send; a Flight SQL ticket is the one GetFlightInfo handed out.
* **GetFlightInfo** (Flight SQL): the database comes from the ``database`` gRPC header, or ``bucket``,
  ``bucket-name``, ``iox-namespace-name`` (several naming different databases: ``INVALID_ARGUMENT``; none:
  ``INVALID_ARGUMENT`` ``no 'database' header in request``); then the command is decoded, the caller
  authenticated, the database found and the statement planned (not run); the answer holds the schema and
  one endpoint whose ticket wraps the command.
* **Auth** (unless ``--without-auth``): ``authorization`` is ``Bearer``/``Token`` <token> or ``Basic``
  base64(user:token). No usable token or an unknown one: ``UNAUTHENTICATED`` ``Unauthenticated``; an expired
  token: ``PERMISSION_DENIED`` ``Permission denied``.
* **Statuses**: an unknown database is ``INTERNAL`` ``Cannot retrieve database: External error: database not
  found: <db>`` (the server's query executor returns it as a DataFusion *external* error, which its status
  mapping classes as internal); SQL planning errors are ``INVALID_ARGUMENT`` ``Error while logically
  planning query: <DataFusion text>`` (GetFlightInfo: ``Error while planning query: …``); messages are
  the error chain joined with ``: `` without repeated parts, at most 2,000 bytes, never a traceback.
* **Prepared statements** (flightsql ``planner.rs``): DoAction ``CreatePreparedStatement`` plans the query
  and returns a handle that holds it (the server keeps no state); DoPut binds a parameter batch into a new
  handle; GetFlightInfo/DoGet run ``CommandPreparedStatementQuery`` with the parameters by column name.
  The parameter schema has a field per placeholder typed as DataFusion inferred it; an untyped one fails
  the prepare (``INTERNAL`` ``… Unable to infer the type of parameter '$1' in prepared statement``).
* **Metadata commands** (GetSqlInfo, GetCatalogs, GetDbSchemas, GetTables, GetTableTypes, the key commands,
  GetXdbcTypeInfo): GetFlightInfo answers the command's fixed schema, DoGet its rows (see
  :mod:`emulator.flight.metadata`); every DoGet first reads ``x-influxdata-base-table-type``.
* **system.queries**: each DoGet is logged as the server's ``record_query`` does: ``query_type`` ``sql`` for an
  SQL ticket, ``flightsql`` for a Flight SQL one, with the command's ``Display`` text.
* **Differences, documented in COVERAGE.md**: InfluxQL tickets answer ``UNIMPLEMENTED`` (the HTTP API's 405).

Built on grpcio's generic handlers with raw-bytes messages: pyarrow's own Flight server appends
``. Detail: …`` and, for INVALID_ARGUMENT/NOT_FOUND/UNIMPLEMENTED, a Python traceback to every status
message, so it cannot give the server's statuses. pyarrow still encodes the Arrow data (IPC) and FlightInfo.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.flight as pa_flight

from emulator.errors import DatabaseNotFound, QueryError
from emulator.flight import metadata
from emulator.flight.protocol import (
    FlightQuery,
    FlightSqlCommand,
    FlightSqlError,
    ProtobufError,
    TicketError,
    command_text,
    decode_fields,
    decode_flight_sql_command,
    decode_ticket,
    encode_create_prepared_result,
    encode_flight_sql_ticket,
    encode_prepared_handle,
    field_len,
    flight_data_messages,
    flight_data_to_ipc,
    params_from_ipc,
)

log = logging.getLogger("emulator.flight")

SERVICE_NAME = "arrow.flight.protocol.FlightService"
#: gRPC headers naming the Flight SQL database, in the server's order (lib.rs).
DATABASE_HEADERS = ("database", "bucket", "bucket-name", "iox-namespace-name")
MAX_MESSAGE_CHARS = 2_000
NOT_IMPLEMENTED = "This feature is not implemented: {} (embedded engine)"

Code = grpc.StatusCode


class FlightStatus(Exception):
    """End the call with this gRPC status; ``message`` is sent as it is (no traceback)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def error_chain_text(message: str) -> str:
    """The server's ``DisplaySourceChain``: the parts of ``message`` split on ``": "`` and ``caused by``
    lines, each kept once in first-seen order, joined with ``": "``, then cut to 2,000 characters + ``...``."""
    parts: list[str] = []
    for piece in message.split(": "):
        for part in piece.split("\ncaused by\n"):
            if part and part not in parts:
                parts.append(part)
    text = ": ".join(parts)
    return text[:MAX_MESSAGE_CHARS] + "..." if len(text) > MAX_MESSAGE_CHARS else text


def extract_grpc_token(value: str | bytes | None) -> str | None:
    """The token in an ``authorization`` gRPC header, as ``authz::extract_token``: ``Bearer``/``Token``
    <token>, or the password of ``Basic`` base64(user:password); None for anything else or empty."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    scheme, sep, rest = value.partition(" ")
    if not sep:
        return None
    if scheme in ("Bearer", "Token"):
        token = rest
    elif scheme == "Basic":
        try:
            decoded = base64.b64decode(rest, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _user, colon, token = decoded.partition(":")
        if not colon:
            return None
    else:
        return None
    return token or None


def _parse_request(request: bytes, parse: Callable[[bytes], Any]) -> Any:
    """A request message; bytes that are no protobuf answer as tonic does: INTERNAL with prost's text."""
    try:
        decode_fields(request)
        return parse(request)
    except ProtobufError as exc:
        raise FlightStatus(Code.INTERNAL, str(exc)) from None
    except (ValueError, pa.ArrowException):
        raise FlightStatus(Code.INTERNAL, "failed to decode Protobuf message: invalid message") from None


def _database_missing(db: str) -> FlightStatus:
    return FlightStatus(Code.INTERNAL, f"Cannot retrieve database: External error: database not found: {db}")


def _query_status(err: QueryError, prefix: str) -> FlightStatus:
    """A DataFusion error as the server's status: INVALID_ARGUMENT for plan/SQL/schema/execution errors,
    INTERNAL for DataFusion's internal errors, RESOURCE_EXHAUSTED for resources."""
    root = err.message.rsplit("caused by\n", 1)[-1]
    code = Code.INVALID_ARGUMENT
    if root.startswith(("Internal error", "IO error", "Invalid or Unsupported Configuration")):
        code = Code.INTERNAL
    elif root.startswith("Resources exhausted"):
        code = Code.RESOURCE_EXHAUSTED
    if err.kind == "execution" and prefix != "Error while planning query":
        prefix = "Error while execution Flight SQL stream: External error"
    return FlightStatus(code, error_chain_text(f"{prefix}: {err.message}"))


class FlightService:
    """The Flight RPCs over one :class:`emulator.engine.Engine` (``engine.query`` and ``catalog.db_exists``).

    Args:
        engine: the core engine.
        tokens: an :class:`emulator.auth.TokenStore`, or None with ``--without-auth`` (every call allowed).
    """

    def __init__(self, engine: Any, tokens: Any | None):
        self.engine = engine
        self.tokens = tokens

    # -- plumbing ---------------------------------------------------------------------------------
    def handler(self) -> grpc.GenericRpcHandler:
        """grpcio generic handler for ``arrow.flight.protocol.FlightService``; messages stay raw bytes."""
        unary_stream = grpc.unary_stream_rpc_method_handler
        unary_unary = grpc.unary_unary_rpc_method_handler
        stream_stream = grpc.stream_stream_rpc_method_handler
        methods = {
            "DoGet": unary_stream(self._guard(self.do_get)),
            "GetFlightInfo": unary_unary(self._guard(self.get_flight_info)),
            "Handshake": stream_stream(self._guard(self.handshake)),
            "GetSchema": unary_unary(self._guard(self._unimplemented("Not yet implemented: get_schema"))),
            "ListFlights": unary_stream(self._guard(self._unimplemented("Not yet implemented: list_flights"))),
            "PollFlightInfo": unary_unary(self._guard(self._unimplemented("Not yet implemented"))),
            "ListActions": unary_stream(self._guard(self._unimplemented("Not yet implemented: list_actions"))),
            "DoExchange": stream_stream(self._guard(self._unimplemented("Not yet implemented: do_exchange"))),
            "DoPut": stream_stream(self._guard(self.do_put)),
            "DoAction": unary_stream(self._guard(self.do_action)),
        }
        return grpc.method_handlers_generic_handler(SERVICE_NAME, methods)

    @staticmethod
    def _guard(fn: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return fn(request, context)
            except FlightStatus as status:
                log.info("flight: %s %s", status.code.name, status.message)
                context.abort(status.code, status.message)
            except Exception:
                log.exception("flight: unexpected error")
                context.abort(Code.INTERNAL, "internal error")
        return call

    @staticmethod
    def _unimplemented(message: str) -> Callable[[Any, grpc.ServicerContext], Any]:
        def call(_request: Any, _context: grpc.ServicerContext) -> Any:
            raise FlightStatus(Code.UNIMPLEMENTED, message)
        return call

    @staticmethod
    def _metadata(context: grpc.ServicerContext) -> dict[str, str | bytes]:
        headers: dict[str, str | bytes] = {}
        for key, value in context.invocation_metadata() or ():
            headers.setdefault(key.lower(), value)  # the first value, as tonic's MetadataMap::get
        return headers

    def _authorize(self, headers: dict[str, str | bytes]) -> None:
        if self.tokens is None:
            return
        token = extract_grpc_token(headers.get("authorization"))
        record = self.tokens.lookup(token) if token else None
        if record is None:
            raise FlightStatus(Code.UNAUTHENTICATED, "Unauthenticated")
        expiry = record.get("expiry")
        if expiry is not None and expiry <= int(time.time() * 1000):
            raise FlightStatus(Code.PERMISSION_DENIED, "Permission denied")

    def _check_database(self, db: str) -> None:
        if not self.engine.catalog.db_exists(db):
            raise _database_missing(db)

    # -- RPCs -------------------------------------------------------------------------------------
    def do_get(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        """DoGet(Ticket): the query's rows as FlightData (schema first). ``request`` is a Ticket message."""
        headers = self._metadata(context)
        base_table_type = self._base_table_type(headers)
        ticket = _parse_request(request, pa_flight.Ticket.deserialize).ticket
        try:
            query = decode_ticket(ticket)
        except TicketError:
            raise FlightStatus(Code.INVALID_ARGUMENT, "Invalid ticket. Error: Invalid ticket") from None
        self._authorize(headers)
        self._check_database(query.database)
        command = query.command
        if command is not None and command.name in metadata.METADATA_COMMANDS:
            return flight_data_messages(self._metadata_rows(query.database, command, base_table_type))
        sql, params = self._statement(query)
        # system.queries as the server's query log: query_type "sql" or "flightsql", the text as the server
        # displays the request (a Flight SQL command's Display, e.g. "CommandStatementQuery <sql>")
        text = command_text(command) if command is not None else sql
        table = self._run(query.database, sql, params, "Error while logically planning query",
                          query_type=query.kind, query_text=text)
        return flight_data_messages(table)

    def _metadata_rows(self, db: str, command: FlightSqlCommand, base_table_type: str) -> pa.Table:
        """A metadata command's rows, logged in ``system.queries`` as a ``flightsql`` query like any DoGet."""
        with self.engine.logged_query("flightsql", command_text(command)):
            objects = None
            if command.name in ("CommandGetCatalogs", "CommandGetDbSchemas", "CommandGetTables"):
                try:
                    objects = self.engine.sql_objects(db)
                except DatabaseNotFound:
                    raise _database_missing(db) from None
            return metadata.result_table(command, objects, base_table_type)

    @staticmethod
    def _base_table_type(headers: dict[str, str | bytes]) -> str:
        """The ``x-influxdata-base-table-type`` header (read by every DoGet, before its ticket)."""
        value = headers.get("x-influxdata-base-table-type")
        if isinstance(value, bytes):
            raise FlightStatus(Code.INVALID_ARGUMENT, "Invalid 'database' header in request: "
                                                      "failed to convert metadata to a string")
        try:
            return metadata.parse_base_table_type(value)
        except metadata.BaseTableTypeError as exc:
            raise FlightStatus(Code.INVALID_ARGUMENT, f"Invalid argument: {exc}") from None

    def get_flight_info(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """GetFlightInfo(FlightDescriptor with a Flight SQL command) -> FlightInfo (schema + one ticket)."""
        headers = self._metadata(context)
        database = self._flight_sql_database(headers)
        descriptor = _parse_request(request, pa_flight.FlightDescriptor.deserialize)
        if descriptor.descriptor_type == pa_flight.DescriptorType.PATH:
            raise FlightStatus(Code.UNIMPLEMENTED, "Unsupported message type: FlightInfo with Path")
        if descriptor.descriptor_type != pa_flight.DescriptorType.CMD:
            raise FlightStatus(Code.UNIMPLEMENTED, "Unsupported message type: FlightInfo of unknown type")
        command = self._flight_sql_command(descriptor.command)
        self._authorize(headers)
        self._check_database(database)
        if command.name in ("ActionCreatePreparedStatementRequest", "ActionClosePreparedStatementRequest"):
            raise FlightStatus(Code.INVALID_ARGUMENT, f"Error while planning query: Protocol error. Method "
                                                      f"GetFlightInfo does not expect '{command.name}'")
        if command.name in metadata.METADATA_COMMANDS:
            schema = metadata.result_schema(command)
        else:
            sql, params = self._statement(FlightQuery(database, "flightsql", command.query or "", {}, command))
            schema = self._run(database, sql, params, "Error while planning query", schema_only=True).schema
            schema = metadata.flight_schema(schema)
        ticket = encode_flight_sql_ticket(database, command)
        info = pa_flight.FlightInfo(schema, descriptor, [pa_flight.FlightEndpoint(ticket, [])], -1, -1)
        return info.serialize()

    def do_action(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        """DoAction(Action{type, body}): Flight SQL prepared statements. ``CreatePreparedStatement`` plans
        the query and returns a handle holding it; ``ClosePreparedStatement`` has nothing to free (the server
        keeps no state either). The action type is not read, only the command in the body, as the server."""
        headers = self._metadata(context)
        database = self._flight_sql_database(headers)
        body = b""
        try:
            for number, wire, value in decode_fields(request):
                if number == 2 and wire == 2:  # Action { string type = 1; bytes body = 2; }
                    body = value
        except ProtobufError as exc:
            raise FlightStatus(Code.INTERNAL, str(exc)) from None
        command = self._flight_sql_command(body)
        self._authorize(headers)
        self._check_database(database)
        if command.name == "ActionCreatePreparedStatementRequest":
            query = command.query or ""
            schema = self._run(database, query, {}, "Error while planning query", schema_only=True).schema
            result = encode_create_prepared_result(encode_prepared_handle(query), metadata.flight_schema(schema),
                                                   self._parameter_schema(database, query))
            return iter((field_len(1, result),))  # arrow.flight.protocol.Result { bytes body = 1; }
        if command.name == "ActionClosePreparedStatementRequest":
            return iter((b"",))
        raise FlightStatus(Code.INVALID_ARGUMENT, f"Error while planning query: Protocol error. Method DoAction "
                                                  f"does not expect '{command.name}'")

    def do_put(self, requests: Iterable[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        """DoPut(CommandPreparedStatementQuery + a parameter batch): bind parameters; the answer's
        ``DoPutPreparedStatementResult`` carries a new handle holding the query and the parameters."""
        headers = self._metadata(context)
        database = self._flight_sql_database(headers)
        messages = list(requests)
        try:
            descriptor_bytes, stream = flight_data_to_ipc(messages)
        except ProtobufError as exc:
            raise FlightStatus(Code.INTERNAL, str(exc)) from None
        if descriptor_bytes is None:
            raise FlightStatus(Code.INVALID_ARGUMENT, "No FlightDescriptor in Flight SQL request")
        descriptor = _parse_request(descriptor_bytes, pa_flight.FlightDescriptor.deserialize)
        command = self._flight_sql_command(descriptor.command)
        self._authorize(headers)
        self._check_database(database)
        if command.name != "CommandPreparedStatementQuery":
            raise FlightStatus(Code.INVALID_ARGUMENT, f"Error while planning query: Protocol error. Method DoPut "
                                                      f"does not expect '{command.name}'")
        try:
            has_rows = bool(stream) and any(batch.num_rows for batch in pa.ipc.open_stream(stream))
        except (pa.ArrowException, ValueError) as exc:
            raise FlightStatus(Code.INVALID_ARGUMENT, f"Error while planning query: {exc}") from None
        if not has_rows:
            raise FlightStatus(Code.INVALID_ARGUMENT, "Error while planning query: Expected stream of FlightData "
                                                      "but found none when executing method DoPut for command "
                                                      f"{command.name}.")
        handle = encode_prepared_handle(command.query or "", stream)
        result = field_len(1, handle)  # DoPutPreparedStatementResult { bytes prepared_statement_handle = 1; }
        return iter((field_len(1, result),))  # PutResult { bytes app_metadata = 1; }

    def _parameter_schema(self, database: str, query: str) -> pa.Schema:
        """A prepared statement's parameter schema: one nullable field per placeholder, named as it
        (``$1``, ``$host``), typed as DataFusion inferred it (dictionaries as their value type); a placeholder
        without an inferred type fails as on the server (flightsql ``planner.rs``
        ``parameter_types_to_schema``: ``UnknownParameterType``, an external error: INTERNAL)."""
        try:
            types = self.engine.parameter_types(database, query)
        except DatabaseNotFound:
            raise _database_missing(database) from None
        fields = []
        for name, typ in (types or {}).items():
            if typ is None:
                raise FlightStatus(Code.INTERNAL, f"Error while planning query: External error: Unable to infer "
                                                  f"the type of parameter '{name}' in prepared statement")
            fields.append(pa.field(name, typ, True))
        return metadata.flight_schema(pa.schema(fields))

    def _flight_sql_command(self, raw: bytes) -> FlightSqlCommand:
        try:
            return decode_flight_sql_command(raw)
        except FlightSqlError as exc:
            raise FlightStatus(Code.INVALID_ARGUMENT, f"Error while planning Flight SQL : {exc}") from None

    def handshake(self, requests: Iterable[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        """Handshake: echo the first request (same fields as the response) and, when the call carried a
        token, answer it as ``authorization: Bearer <token>`` (the server authenticates nothing here)."""
        headers = self._metadata(context)
        first = next(iter(requests), None)
        if first is None:
            raise FlightStatus(Code.INVALID_ARGUMENT, "Invalid handshake. No payload provided")
        token = extract_grpc_token(headers.get("authorization"))
        if token is not None:
            context.send_initial_metadata((("authorization", f"Bearer {token}"),))
        return iter((first,))

    # -- helpers ----------------------------------------------------------------------------------
    def _flight_sql_database(self, headers: dict[str, str | bytes]) -> str:
        found = [key for key in DATABASE_HEADERS if key in headers]
        name: str | None = None
        for key in found:
            value = headers[key]
            if isinstance(value, bytes):
                raise FlightStatus(Code.INVALID_ARGUMENT, "Invalid 'database' header in request: "
                                                          "failed to convert metadata to a string")
            if name is None:
                name = value
            elif name != value:
                listed = ", ".join(f'"{k}"' for k in found)
                raise FlightStatus(Code.INVALID_ARGUMENT, f"More than one headers are found in request: "
                                                          f"[{listed}]. Please include only one of them")
        if name is None:
            raise FlightStatus(Code.INVALID_ARGUMENT, "no 'database' header in request")
        return name

    @staticmethod
    def _statement(query: FlightQuery) -> tuple[str, dict[str, Any]]:
        """The SQL to run and its parameters, or UNIMPLEMENTED for what the embedded engine does not do."""
        if query.kind == "influxql":
            raise FlightStatus(Code.UNIMPLEMENTED, NOT_IMPLEMENTED.format("InfluxQL queries"))
        if query.kind == "flightsql":
            command = query.command
            assert command is not None
            if command.name == "CommandStatementQuery":
                return command.query or "", {}
            if command.name == "CommandPreparedStatementQuery":
                try:
                    return command.query or "", params_from_ipc(command.params)
                except (pa.ArrowException, ValueError) as exc:
                    raise FlightStatus(Code.INVALID_ARGUMENT, f"Invalid ticket. Error: {exc}") from None
            raise FlightStatus(Code.UNIMPLEMENTED, NOT_IMPLEMENTED.format(f"Flight SQL {command.name}"))
        return query.sql, query.params

    def _run(self, db: str, sql: str, params: dict[str, Any], prefix: str, *, schema_only: bool = False,
             query_type: str = "sql", query_text: str | None = None) -> Any:
        try:
            return self.engine.query(db, sql, params or None, schema_only=schema_only, query_type=query_type,
                                     query_text=query_text)
        except DatabaseNotFound:
            raise _database_missing(db) from None
        except QueryError as err:
            raise _query_status(err, prefix) from None


class FlightServer:
    """The Flight service on a private unix socket, for the HTTP port's mux.

    On Linux the socket is in the abstract namespace (``\\0influxdb3-flight-<pid>-<random>``: nothing on
    disk, gone with the process even after a SIGKILL); elsewhere it is ``flight.sock`` in a fresh 0700
    temp dir. Either way it is no more reachable than the HTTP port, and every call is authenticated.
    ``start()`` returns the path as ``asyncio``'s ``create_unix_connection`` takes it; ``stop()`` ends
    running calls (after ``grace`` seconds) and removes the directory, if any.
    """

    def __init__(self, engine: Any, tokens: Any | None, *, workers: int = 16):
        self.service = FlightService(engine, tokens)
        self.workers = workers
        self._server: grpc.Server | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._dir: Path | None = None
        self.socket_path: str | None = None

    def start(self) -> str:
        if sys.platform.startswith("linux"):
            name = f"influxdb3-flight-{os.getpid()}-{secrets.token_hex(8)}"
            address, path = f"unix-abstract:{name}", "\0" + name
        else:
            self._dir = Path(tempfile.mkdtemp(prefix="influxdb3-flight-"))
            path = str(self._dir / "flight.sock")
            address = f"unix:{path}"
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="flight")
        server = grpc.server(
            self._pool,
            handlers=[self.service.handler()],
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
        )
        if server.add_insecure_port(address) == 0:
            self.stop()
            raise OSError(f"cannot listen on {address}")
        server.start()
        self._server, self.socket_path = server, path
        return path

    def stop(self, grace: float = 0.5) -> None:
        if self._server is not None:
            self._server.stop(grace).wait(grace + 1.0)
            self._server = None
        if self._pool is not None:
            # calls were cancelled by stop(); a query still running on a worker finishes first
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
