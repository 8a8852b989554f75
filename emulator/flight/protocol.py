"""Wire formats of the Flight transport: tickets, Flight SQL commands and FlightData messages.

What the server accepts (influxdb3 3.10.1, crate ``service_grpc_flight``, ``request.rs``
``IoxGetRequest::try_decode``): a DoGet ticket is tried, in this order, as a protobuf ``Any`` holding an
``influxdata.iox.querier.v1.ReadInfo``, as a bare ``ReadInfo``, then as JSON
``{"database", "sql_query", "query_type"?, "params"?, "is_debug"?}`` (``database`` may be spelled
``namespace_name``, ``bucket`` or ``bucket-name``); anything else is ``Invalid ticket``. A Flight SQL command
is a protobuf ``Any`` whose type URL names an ``arrow.flight.protocol.sql`` message (crate ``flightsql``,
``cmd.rs``). Field numbers come from ``influxdata/iox/querier/v1/flight.proto`` and ``params.proto`` and
from Arrow's ``Flight.proto`` / ``FlightSql.proto``.

The few protobuf messages involved are read and written with the small wire-format helpers below (varints
and length-delimited fields only), checked against pyarrow's own serialisers in the tests; the Flight
messages pyarrow exposes (``FlightInfo``, ``FlightDescriptor``) are built with pyarrow itself.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

READ_INFO_TYPE_URL = "type.googleapis.com/influxdata.iox.querier.v1.ReadInfo"
PREPARED_HANDLE_TYPE_URL = "type.googleapis.com/influxdata.iox.querier.v1.FlightSqlPreparedStatementHandle"
FLIGHT_SQL_PACKAGE = "arrow.flight.protocol.sql."
#: The Flight SQL messages the server's ``FlightSQLCommand::try_decode`` recognises (cmd.rs).
FLIGHT_SQL_COMMANDS = (
    "CommandStatementQuery",
    "CommandPreparedStatementQuery",
    "CommandGetSqlInfo",
    "CommandGetCatalogs",
    "CommandGetCrossReference",
    "CommandGetDbSchemas",
    "CommandGetExportedKeys",
    "CommandGetImportedKeys",
    "CommandGetPrimaryKeys",
    "CommandGetTables",
    "CommandGetTableTypes",
    "CommandGetXdbcTypeInfo",
    "ActionCreatePreparedStatementRequest",
    "ActionClosePreparedStatementRequest",
)
#: ReadInfo.QueryType values
QUERY_TYPE_UNSPECIFIED, QUERY_TYPE_SQL, QUERY_TYPE_INFLUXQL, QUERY_TYPE_FLIGHT_SQL = 0, 1, 2, 3
#: FlightData messages are cut to about this many bytes (arrow-flight's encoder default is 2 MiB).
MAX_FLIGHT_DATA_BYTES = 2 * 1024 * 1024

_WIRE_VARINT, _WIRE_I64, _WIRE_LEN, _WIRE_I32 = 0, 1, 2, 5
_I64_MIN, _U64_MAX = -(2**63), 2**64 - 1


class ProtobufError(ValueError):
    """Bytes that are not a valid protobuf message (the text follows prost's ``DecodeError``)."""


class TicketError(ValueError):
    """A DoGet ticket in none of the accepted forms; the server answers ``Invalid ticket``."""


class FlightSqlError(ValueError):
    """A Flight SQL command the server cannot decode; ``str()`` is the server's text."""


# -- protobuf wire format ----------------------------------------------------------------------------


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("failed to decode Protobuf message: buffer underflow")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            if result > _U64_MAX:
                raise ProtobufError("failed to decode Protobuf message: invalid varint")
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError("failed to decode Protobuf message: invalid varint")


def decode_fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """Split a protobuf message into ``(field number, wire type, value)``: int for varint/fixed, bytes for
    length-delimited. Raises :class:`ProtobufError` on malformed input or groups (deprecated)."""
    out: list[tuple[int, int, Any]] = []
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("failed to decode Protobuf message: invalid tag value: 0")
        if wire == _WIRE_VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire == _WIRE_I64:
            if pos + 8 > end:
                raise ProtobufError("failed to decode Protobuf message: buffer underflow")
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == _WIRE_I32:
            if pos + 4 > end:
                raise ProtobufError("failed to decode Protobuf message: buffer underflow")
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        elif wire == _WIRE_LEN:
            length, pos = _read_varint(buf, pos)
            if pos + length > end:
                raise ProtobufError("failed to decode Protobuf message: buffer underflow")
            value, pos = bytes(buf[pos:pos + length]), pos + length
        else:
            raise ProtobufError(f"failed to decode Protobuf message: invalid wire type value: {wire}")
        out.append((number, wire, value))
    return out


def encode_varint(n: int) -> bytes:
    """Unsigned varint; negative numbers as their 64-bit two's complement (protobuf int64)."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_len(number: int, data: bytes) -> bytes:
    """One length-delimited field (string, bytes or embedded message)."""
    return encode_varint(number << 3 | _WIRE_LEN) + encode_varint(len(data)) + data


def field_varint(number: int, value: int) -> bytes:
    """One varint field (int32/int64/uint64/bool/enum)."""
    return encode_varint(number << 3 | _WIRE_VARINT) + encode_varint(value)


def _expect(wire: int, wanted: int) -> None:
    if wire != wanted:
        raise ProtobufError(f"failed to decode Protobuf message: invalid wire type: {wire} (expected {wanted})")


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtobufError("failed to decode Protobuf message: invalid string value: data is not UTF-8 encoded") \
            from None


def decode_any(buf: bytes) -> tuple[str, bytes]:
    """``google.protobuf.Any`` -> ``(type_url, value)``."""
    any_ = decode_message(buf, _ANY_FIELDS)
    return any_.get("type_url", ""), any_.get("value", b"")


def encode_any(type_url: str, value: bytes) -> bytes:
    """``google.protobuf.Any{type_url, value}`` as bytes."""
    return field_len(1, type_url.encode()) + field_len(2, value)


# -- queries and tickets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FlightSqlCommand:
    """A decoded Flight SQL command: its message name, the SQL of a statement, a prepared statement's
    handle or a create-prepared-statement request, and a prepared statement's bound parameters (an Arrow
    IPC stream, as the server keeps them in its handle)."""

    name: str
    query: str | None = None
    raw: bytes = b""
    params: bytes | None = None
    #: a metadata command's fields by their FlightSql.proto names (absent optional fields left out)
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FlightQuery:
    """One query to run: ``kind`` is ``sql``, ``influxql`` or ``flightsql`` (then ``command`` is set)."""

    database: str
    kind: str
    sql: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    command: FlightSqlCommand | None = None


def decode_flight_sql_command(buf: bytes) -> FlightSqlCommand:
    """An ``Any``-wrapped Flight SQL message -> :class:`FlightSqlCommand`.

    Raises :class:`FlightSqlError` with the server's texts: ``Invalid protobuf: …`` for bytes that are no
    ``Any``, ``Unsupported FlightSQL message type: <type_url>`` for a message it does not know.
    """
    try:
        type_url, value = decode_any(buf)
    except ProtobufError as exc:
        raise FlightSqlError(f"Invalid protobuf: {exc}") from None
    prefix, _, name = type_url.rpartition("/")
    if not prefix or not name.startswith(FLIGHT_SQL_PACKAGE) or name[len(FLIGHT_SQL_PACKAGE):] not in FLIGHT_SQL_COMMANDS:
        raise FlightSqlError(f"Unsupported FlightSQL message type: {type_url}")
    short = name[len(FLIGHT_SQL_PACKAGE):]
    query, params = None, None
    try:
        if short in ("CommandStatementQuery", "ActionCreatePreparedStatementRequest"):
            query = decode_message(value, {1: ("query", "str")}).get("query", "")  # (2 is transaction_id)
        elif short in ("CommandPreparedStatementQuery", "ActionClosePreparedStatementRequest"):
            handle = decode_message(value, {1: ("prepared_statement_handle", "bytes")})
            query, params = decode_prepared_handle(handle.get("prepared_statement_handle", b""))
        spec = _METADATA_FIELDS.get(short)
        args = decode_message(value, spec) if spec is not None else {}
    except ProtobufError as exc:
        raise FlightSqlError(f"Invalid protobuf: {exc}") from None
    return FlightSqlCommand(name=short, query=query, raw=bytes(buf), params=params, args=args)


#: field number -> (name, kind) of the metadata commands (FlightSql.proto), as :func:`decode_message` reads them
_KEYS_FIELDS = {1: ("catalog", "str"), 2: ("db_schema", "str"), 3: ("table", "str")}
_METADATA_FIELDS: dict[str, dict[int, tuple[str, str]]] = {
    "CommandGetSqlInfo": {1: ("info", "u32s")},
    "CommandGetCatalogs": {},
    "CommandGetDbSchemas": {1: ("catalog", "str"), 2: ("db_schema_filter_pattern", "str")},
    "CommandGetTables": {1: ("catalog", "str"), 2: ("db_schema_filter_pattern", "str"),
                         3: ("table_name_filter_pattern", "str"), 4: ("table_types", "strs"),
                         5: ("include_schema", "bool")},
    "CommandGetTableTypes": {},
    "CommandGetPrimaryKeys": _KEYS_FIELDS,
    "CommandGetExportedKeys": _KEYS_FIELDS,
    "CommandGetImportedKeys": _KEYS_FIELDS,
    "CommandGetCrossReference": {1: ("pk_catalog", "str"), 2: ("pk_db_schema", "str"), 3: ("pk_table", "str"),
                                 4: ("fk_catalog", "str"), 5: ("fk_db_schema", "str"), 6: ("fk_table", "str")},
    "CommandGetXdbcTypeInfo": {1: ("data_type", "i32")},
}


#: kinds :func:`decode_message` reads: ``str`` string, ``strs`` repeated string, ``bytes`` bytes or embedded
#: message, ``msgs`` repeated embedded message, ``varint`` uint64, ``bool``, ``i32`` int32, ``u32s`` repeated uint32
#: (packed or not)
_ANY_FIELDS = {1: ("type_url", "str"), 2: ("value", "bytes")}


def decode_message(buf: bytes, spec: Mapping[int, tuple[str, str]]) -> dict[str, Any]:
    """Protobuf bytes -> ``{name: value}`` for the fields ``spec`` names (field number -> ``(name, kind)``).

    Other fields are skipped; a singular field given twice keeps its last value, repeated kinds collect a
    list, as prost decodes. Raises :class:`ProtobufError` (prost's texts) for a wire type that does not fit
    the kind or a string that is not UTF-8.
    """
    out: dict[str, Any] = {}
    for number, wire, v in decode_fields(buf):
        if number not in spec:
            continue
        key, kind = spec[number]
        if kind in ("str", "strs", "bytes", "msgs"):
            _expect(wire, _WIRE_LEN)
            value = _text(v) if kind in ("str", "strs") else v
            if kind in ("strs", "msgs"):
                out.setdefault(key, []).append(value)
            else:
                out[key] = value
        elif kind in ("varint", "bool", "i32"):
            _expect(wire, _WIRE_VARINT)
            if kind == "i32":
                v &= 0xFFFFFFFF
                v = v - (1 << 32) if v >= 1 << 31 else v
            out[key] = bool(v) if kind == "bool" else v
        elif kind == "u32s":
            values = out.setdefault(key, [])
            if wire == _WIRE_LEN:  # packed
                pos = 0
                while pos < len(v):
                    n, pos = _read_varint(v, pos)
                    values.append(n & 0xFFFFFFFF)
            else:
                _expect(wire, _WIRE_VARINT)
                values.append(v & 0xFFFFFFFF)
        else:
            raise ValueError(f"decode_message: unknown kind {kind!r}")
    return out


def _opt(value: Any) -> str:
    return "<NONE>" if value is None else str(value)


def command_text(command: FlightSqlCommand) -> str:
    """The command as the server shows it in ``system.queries``' ``query_text`` (its ``Display`` for
    ``FlightSQLCommand``, flightsql ``cmd.rs``, slips included: GetDbSchemas reads ``CommandGetCatalogs(...``
    without the closing parenthesis)."""
    a = command.args
    name = command.name
    if name == "CommandStatementQuery":
        return f"CommandStatementQuery {command.query}"
    if name in ("CommandPreparedStatementQuery", "ActionClosePreparedStatementRequest"):
        text = f"Prepared({command.query}"
        if command.params:
            text += "," + pretty_batch(command.params)
        sep = " " if name == "CommandPreparedStatementQuery" else ""
        return f"{name}{sep}{text})"
    if name == "ActionCreatePreparedStatementRequest":
        return f"ActionCreatePreparedStatementRequest{command.query}"
    if name == "CommandGetSqlInfo":
        return "CommandGetSqlInfo(...)"
    if name in ("CommandGetCatalogs", "CommandGetTableTypes"):
        return name
    if name == "CommandGetDbSchemas":
        return (f"CommandGetCatalogs(catalog={_opt(a.get('catalog'))}, "
                f"db_schema_filter_pattern={_opt(a.get('db_schema_filter_pattern'))}")
    if name in ("CommandGetExportedKeys", "CommandGetImportedKeys", "CommandGetPrimaryKeys"):
        return (f"{name}(catalog={_opt(a.get('catalog'))}, db_schema={_opt(a.get('db_schema'))}, "
                f"table={a.get('table', '')})")
    if name == "CommandGetTables":
        return (f"CommandGetTables(catalog={_opt(a.get('catalog'))}, "
                f"db_schema_filter_pattern={_opt(a.get('db_schema_filter_pattern'))},"
                f"table_name_filter_pattern={_opt(a.get('table_name_filter_pattern'))},"
                f"table_types={','.join(a.get('table_types', []))},"
                f"include_schema={'true' if a.get('include_schema') else 'false'})")
    if name == "CommandGetXdbcTypeInfo":
        return f"CommandGetXdbcTypeInfo(data_type={a.get('data_type', 0)})"
    if name == "CommandGetCrossReference":
        indent = "\n" + " " * 24
        keys = ("pk_catalog", "pk_db_schema", "pk_table", "fk_catalog", "fk_db_schema", "fk_table")
        parts = [f"{k}={a.get(k, '') if k.endswith('table') else _opt(a.get(k))}" for k in keys]
        return "CommandGetCrossReference(" + indent + ("," + indent).join(parts)
    return name


def _display(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return f"{value:.1f}"
    return str(value)


def pretty_batch(stream: bytes) -> str:
    """The first batch of an Arrow IPC stream as arrow's ``pretty_format_batches`` draws it (``+---+`` rules,
    ``| v |`` cells, left-aligned, nulls empty)."""
    reader = pa.ipc.open_stream(stream)
    batch = next(iter(reader), None)
    if batch is None:
        return ""
    names = batch.schema.names
    rows = [[_display(v) for v in row.values()] for row in batch.to_pylist()]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    line = lambda cells: "|" + "|".join(f" {c.ljust(w)} " for c, w in zip(cells, widths, strict=True)) + "|"  # noqa: E731
    return "\n".join([rule, line(names), rule, *(line(r) for r in rows), rule])


def decode_prepared_handle(handle: bytes) -> tuple[str, bytes | None]:
    """The server's prepared statement handle -> ``(query, params IPC stream or None)``.

    ``Any(FlightSqlPreparedStatementHandle{query = 1, optional bytes params = 2})``; bytes that are no
    ``Any`` are read as the query text itself (the server's legacy form) (flightsql ``cmd.rs``).
    """
    try:
        type_url, value = decode_any(handle)
    except ProtobufError as proto_error:
        try:
            return handle.decode("utf-8"), None
        except UnicodeDecodeError:
            raise FlightSqlError("Invalid PreparedStatement handle. Expected protobuf Any or UTF-8 query string\n"
                                 f"not protobuf Any: {proto_error}\nand not UTF-8: invalid utf-8 sequence") \
                from None
    if type_url != PREPARED_HANDLE_TYPE_URL:
        raise FlightSqlError(f"Invalid Any type URL. Expected '{PREPARED_HANDLE_TYPE_URL}' found '{type_url}'")
    handle_fields = decode_message(value, {1: ("query", "str"), 2: ("params", "bytes")})
    return handle_fields.get("query", ""), handle_fields.get("params")


def encode_prepared_handle(query: str, params: bytes | None = None) -> bytes:
    """The handle the server hands out: ``Any(FlightSqlPreparedStatementHandle{query, params?})``."""
    body = field_len(1, query.encode()) + (field_len(2, params) if params is not None else b"")
    return encode_any(PREPARED_HANDLE_TYPE_URL, body)


def encode_create_prepared_result(handle: bytes, dataset_schema: pa.Schema, parameter_schema: pa.Schema) -> bytes:
    """``Any(ActionCreatePreparedStatementResult{handle, dataset_schema, parameter_schema})``; schemas as
    encapsulated IPC messages."""
    body = (field_len(1, handle) + field_len(2, dataset_schema.serialize().to_pybytes())
            + field_len(3, parameter_schema.serialize().to_pybytes()))
    return encode_any(f"type.googleapis.com/{FLIGHT_SQL_PACKAGE}ActionCreatePreparedStatementResult", body)


def params_from_ipc(stream: bytes | None) -> dict[str, Any]:
    """Bound parameters (first row of the first batch of an IPC stream) -> ``{name: value}``, as the server's
    ``PreparedStatementHandle::to_df_param_values`` (by column name)."""
    if not stream:
        return {}
    reader = pa.ipc.open_stream(stream)
    for batch in reader:
        if batch.num_rows:
            return {name: batch.column(i)[0].as_py() for i, name in enumerate(batch.schema.names)}
    return {}


def flight_data_to_ipc(messages: list[bytes]) -> tuple[bytes | None, bytes]:
    """FlightData messages (DoPut) -> ``(first message's FlightDescriptor or None, Arrow IPC stream)``."""
    descriptor: bytes | None = None
    stream = bytearray()
    for i, message in enumerate(messages):
        header, body = b"", b""
        for number, wire, v in decode_fields(message):
            if wire != _WIRE_LEN:
                continue
            if number == 1 and i == 0:
                descriptor = v
            elif number == 2:
                header = v
            elif number == 1000:
                body = v
        if header:
            padded = header + b"\0" * (-len(header) % 8)
            stream += b"\xff\xff\xff\xff" + struct.pack("<i", len(padded)) + padded + body
    if stream:
        stream += b"\xff\xff\xff\xff\0\0\0\0"
    return descriptor, bytes(stream)


def encode_flight_sql_ticket(database: str, command: FlightSqlCommand) -> bytes:
    """The ticket GetFlightInfo hands out: ``Any(ReadInfo{database, FLIGHT_SQL_MESSAGE, command})``."""
    read_info = (field_len(1, database.encode()) + field_varint(3, QUERY_TYPE_FLIGHT_SQL)
                 + field_len(4, command.raw))
    return encode_any(READ_INFO_TYPE_URL, read_info)


def decode_ticket(raw: bytes) -> FlightQuery:
    """A DoGet ticket -> :class:`FlightQuery`, trying the server's three forms in its order.

    Raises :class:`TicketError` when none applies (the server's ``Invalid ticket``).
    """
    try:
        type_url, value = decode_any(raw)
    except ProtobufError:
        type_url, value = None, b""
    if type_url == READ_INFO_TYPE_URL:
        try:
            return _decode_read_info(value)
        except (ProtobufError, FlightSqlError, ValueError):
            pass
    else:
        try:
            return _decode_read_info(raw)
        except (ProtobufError, FlightSqlError, ValueError):
            pass
    try:
        return _decode_json_ticket(raw)
    except ValueError:
        raise TicketError("Invalid ticket") from None


#: ReadInfo's fields; 5 is a varint the stand-in checks and does not use
_READ_INFO_FIELDS = {1: ("database", "str"), 2: ("sql_query", "str"), 3: ("query_type", "varint"),
                     4: ("command", "bytes"), 5: ("field_5", "varint"), 6: ("params", "msgs")}


def _decode_read_info(buf: bytes) -> FlightQuery:
    info = decode_message(buf, _READ_INFO_FIELDS)
    database, sql, command = info.get("database", ""), info.get("sql_query", ""), info.get("command", b"")
    query_type = info.get("query_type", QUERY_TYPE_UNSPECIFIED)
    params = dict(_decode_query_param(p) for p in info.get("params", []))
    if query_type == QUERY_TYPE_INFLUXQL:
        if command:
            raise ValueError("QueryType::InfluxQl contained non empty flightsql_command")
        return FlightQuery(database, "influxql", sql, params)
    if query_type == QUERY_TYPE_FLIGHT_SQL:
        if sql:
            raise ValueError("QueryType::FlightSqlMessage contained non empty sql_query")
        cmd = decode_flight_sql_command(command)
        return FlightQuery(database, "flightsql", cmd.query or "", params, cmd)
    # unspecified, sql, and (as prost reads an unknown enum value) anything else
    if command:
        raise ValueError("QueryType::Sql contained non empty flightsql_command")
    return FlightQuery(database, "sql", sql, params)


def _decode_query_param(buf: bytes) -> tuple[str, Any]:
    name, value, has_value = "", None, False
    for number, wire, v in decode_fields(buf):
        if number == 1:
            _expect(wire, _WIRE_LEN)
            name = _text(v)
        elif number == 2:
            _expect(wire, _WIRE_VARINT)
            value, has_value = None, True
        elif number == 3:
            _expect(wire, _WIRE_VARINT)
            value, has_value = bool(v), True
        elif number == 4:
            _expect(wire, _WIRE_VARINT)
            value, has_value = v, True
        elif number == 5:
            _expect(wire, _WIRE_VARINT)
            value, has_value = (v - (1 << 64) if v >= 1 << 63 else v), True
        elif number == 6:
            _expect(wire, _WIRE_I64)
            value, has_value = struct.unpack("<d", struct.pack("<Q", v))[0], True
        elif number == 7:
            _expect(wire, _WIRE_LEN)
            value, has_value = _text(v), True
    if not has_value:
        raise ValueError(f"query parameter {name!r} has no value")
    return name, value


_DATABASE_KEYS = ("database", "namespace_name", "bucket", "bucket-name")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate field `{key}`")
        out[key] = value
    return out


def _json_param(value: Any) -> Any:
    """A JSON param value as the server's ``StatementParam`` takes it: scalars only; an integer beyond
    i64/u64 becomes a float (serde_json without ``arbitrary_precision``)."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return value if _I64_MIN <= value <= _U64_MAX else float(value)
    raise ValueError("query parameters must be null, a boolean, a number or a string")


def _reject_constant(name: str) -> Any:
    """serde_json has no NaN/Infinity literals."""
    raise ValueError(f"invalid JSON value {name}")


def _decode_json_ticket(raw: bytes) -> FlightQuery:
    text = raw.decode("utf-8")  # UnicodeDecodeError is a ValueError
    obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    if not isinstance(obj, dict):
        raise ValueError("ticket is not a JSON object")
    names = [k for k in _DATABASE_KEYS if k in obj]
    if len(names) != 1:
        raise ValueError("missing or duplicate field `database`")
    database, sql = obj[names[0]], obj.get("sql_query")
    if not isinstance(database, str) or not isinstance(sql, str):
        raise ValueError("`database` and `sql_query` must be strings")
    query_type = obj.get("query_type")
    if query_type is not None and not isinstance(query_type, str):
        raise ValueError("`query_type` must be a string")
    if not isinstance(obj.get("is_debug", False), bool):
        raise ValueError("`is_debug` must be a boolean")
    raw_params = obj.get("params", {})
    if not isinstance(raw_params, dict):
        raise ValueError("`params` must be an object")
    params = {name: _json_param(value) for name, value in raw_params.items()}
    if query_type in (None, "sql"):
        return FlightQuery(database, "sql", sql, params)
    if query_type == "influxql":
        return FlightQuery(database, "influxql", sql, params)
    raise ValueError(f"Unknown query type. Expected 'sql' or 'influxql', got {query_type}")


# -- FlightData ----------------------------------------------------------------------------------------

_DATA_HEADER_TAG = encode_varint(2 << 3 | _WIRE_LEN)
_DATA_BODY_TAG = encode_varint(1000 << 3 | _WIRE_LEN)


def _flight_data(header: bytes, body: bytes) -> bytes:
    out = [_DATA_HEADER_TAG, encode_varint(len(header)), header]
    if body:
        out += [_DATA_BODY_TAG, encode_varint(len(body)), body]
    return b"".join(out)


def flight_data_messages(table: pa.Table, max_bytes: int = MAX_FLIGHT_DATA_BYTES) -> Iterator[bytes]:
    """Encoded ``FlightData`` messages for ``table``: the schema, then its record batches as Arrow IPC
    messages, batches cut to about ``max_bytes`` each. Dictionary columns (tags) are sent as their value type,
    as the server's encoder does (arrow-flight ``FlightDataEncoderBuilder``, default
    ``DictionaryHandling::Hydrate``), so the stream's schema is the one GetFlightInfo announced."""
    table = hydrate_dictionaries(table)
    sink = pa.BufferOutputStream()
    rows = table.num_rows
    chunk = rows or 1
    if rows and table.nbytes > max_bytes:
        chunk = max(1, int(rows * max_bytes / table.nbytes))
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=chunk):
            writer.write_batch(batch)
    reader = pa.ipc.MessageReader.open_stream(sink.getvalue())
    for message in reader:
        yield _flight_data(message.metadata.to_pybytes(), message.body.to_pybytes() if message.body else b"")


def hydrate_dictionaries(table: pa.Table) -> pa.Table:
    """``table`` with each top-level dictionary column cast to its value type (field metadata kept)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.with_type(f.type.value_type), table.column(i).cast(f.type.value_type))
    return table
