"""Flight wire formats (emulator/flight/protocol.py) and the status helpers of emulator/flight/service.py.

Ticket forms and their order: influxdb3 3.10.1 ``service_grpc_flight/src/request.rs``
(``IoxGetRequest::try_decode`` and its tests ``json_ticket_decoding_compatibility``, ``json_ticket_decoding``,
``proto_ticket_decoding_*``). The protobuf helpers are checked against pyarrow's own serialisers.
"""

from __future__ import annotations

import base64
import json
import struct

import pyarrow as pa
import pyarrow.flight as fl
import pytest

from emulator.flight.protocol import (
    READ_INFO_TYPE_URL,
    FlightSqlCommand,
    FlightSqlError,
    ProtobufError,
    TicketError,
    decode_any,
    decode_fields,
    decode_flight_sql_command,
    decode_prepared_handle,
    decode_ticket,
    encode_any,
    encode_flight_sql_ticket,
    encode_prepared_handle,
    encode_varint,
    field_len,
    field_varint,
    flight_data_messages,
    flight_data_to_ipc,
    params_from_ipc,
)
from emulator.flight.service import error_chain_text, extract_grpc_token

STATEMENT_URL = "type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"


def read_info(database: str = "my_db", sql: str = "", query_type: int | None = None, command: bytes = b"",
              params: list[bytes] = ()) -> bytes:
    out = field_len(1, database.encode())
    if sql:
        out += field_len(2, sql.encode())
    if query_type is not None:
        out += field_varint(3, query_type)
    if command:
        out += field_len(4, command)
    for p in params:
        out += field_len(6, p)
    return out


def test_varints_and_fields_match_pyarrows_protobuf() -> None:
    # Ticket { bytes ticket = 1 } and FlightDescriptor { type = 1 (CMD = 2); cmd = 2 }
    assert fl.Ticket(b"xyz").serialize() == field_len(1, b"xyz")
    assert fl.FlightDescriptor.for_command(b"abc").serialize() == field_varint(1, 2) + field_len(2, b"abc")
    big = b"q" * 300  # a two-byte length varint
    assert fl.Ticket(big).serialize() == field_len(1, big)
    assert encode_varint(-1) == b"\xff" * 9 + b"\x01"
    assert decode_fields(field_varint(5, 2**64 - 1) + field_len(2, b"")) == [(5, 0, 2**64 - 1), (2, 2, b"")]


@pytest.mark.parametrize("bad", [b"\x0a\x05ab", b"\x80", b"\x0b", b"\x00\x01", b"\xff" * 11])
def test_malformed_protobuf_is_rejected(bad: bytes) -> None:
    with pytest.raises(ProtobufError):
        decode_fields(bad)


def test_json_ticket_forms() -> None:
    q = decode_ticket(b'{"database": "my_db", "sql_query": "SELECT 1;"}')
    assert (q.database, q.kind, q.sql, q.params) == ("my_db", "sql", "SELECT 1;", {})
    for alias in ("namespace_name", "bucket", "bucket-name"):
        assert decode_ticket(json.dumps({alias: "d", "sql_query": "x"}).encode()).database == "d"
    q = decode_ticket(b'{"database":"d","sql_query":"SHOW DATABASES","query_type":"influxql"}')
    assert q.kind == "influxql"
    q = decode_ticket(b'{"database":"d","sql_query":"x","query_type":null,"params":{"a":1,"b":"s","c":null,'
                      b'"d":true,"e":1.5},"is_debug":true,"extra":1}')
    assert q.kind == "sql" and q.params == {"a": 1, "b": "s", "c": None, "d": True, "e": 1.5}


@pytest.mark.parametrize("raw", [
    b"", b"{}", b"[]", b"\xff\xfe", b'{"database":"d"}', b'{"sql_query":"x"}',
    b'{"database":1,"sql_query":"x"}', b'{"database":"d","sql_query":"x","query_type":"flux"}',
    b'{"database":"d","database":"e","sql_query":"x"}', b'{"database":"d","bucket":"d","sql_query":"x"}',
    b'{"database":"d","sql_query":"x","params":{"a":[1]}}', b'{"database":"d","sql_query":"x","params":[1]}',
    b'{"database":"d","sql_query":"x","params":{"a":NaN}}', b'{"database":"d","sql_query":"x","is_debug":1}',
])
def test_bad_json_tickets_are_invalid(raw: bytes) -> None:
    if raw == b"":
        # an empty ticket is a valid, empty protobuf ReadInfo (database "", SQL ""), as prost reads it
        assert decode_ticket(raw).database == ""
        return
    with pytest.raises(TicketError):
        decode_ticket(raw)


def test_protobuf_tickets_with_and_without_any() -> None:
    body = read_info("my_db", "SELECT 1", 1)
    for raw in (encode_any(READ_INFO_TYPE_URL, body), body):
        q = decode_ticket(raw)
        assert (q.database, q.kind, q.sql) == ("my_db", "sql", "SELECT 1")
    assert decode_ticket(read_info("d", "SHOW MEASUREMENTS", 2)).kind == "influxql"
    # params: name + one of null/bool/u64/i64/f64/string
    params = [field_len(1, b"i") + field_varint(5, -5), field_len(1, b"u") + field_varint(4, 7),
              field_len(1, b"s") + field_len(7, b"v"), field_len(1, b"b") + field_varint(3, 1),
              field_len(1, b"f") + encode_varint(6 << 3 | 1) + struct.pack("<d", 2.5),
              field_len(1, b"n") + field_varint(2, 0)]
    q = decode_ticket(read_info("d", "SELECT $i", 1, params=params))
    assert q.params == {"i": -5, "u": 7, "s": "v", "b": True, "f": 2.5, "n": None}


def test_protobuf_ticket_consistency_rules() -> None:
    cmd = encode_any(STATEMENT_URL, field_len(1, b"SELECT 2"))
    # a SQL ReadInfo carrying a Flight SQL command, or a Flight SQL one carrying SQL text: invalid
    with pytest.raises(TicketError):
        decode_ticket(encode_any(READ_INFO_TYPE_URL, read_info("d", "SELECT 1", 1, cmd)))
    with pytest.raises(TicketError):
        decode_ticket(encode_any(READ_INFO_TYPE_URL, read_info("d", "SELECT 1", 3, cmd)))
    with pytest.raises(TicketError):  # a param without a value
        decode_ticket(read_info("d", "x", 1, params=[field_len(1, b"a")]))


def test_flight_sql_command_and_its_ticket_round_trip() -> None:
    raw = encode_any(STATEMENT_URL, field_len(1, b"SELECT host FROM cpu") + field_len(2, b"txn"))
    cmd = decode_flight_sql_command(raw)
    assert (cmd.name, cmd.query) == ("CommandStatementQuery", "SELECT host FROM cpu")
    q = decode_ticket(encode_flight_sql_ticket("foo", cmd))
    assert (q.database, q.kind, q.sql, q.command) == ("foo", "flightsql", "SELECT host FROM cpu", cmd)
    type_url, _ = decode_any(encode_flight_sql_ticket("foo", cmd))
    assert type_url == READ_INFO_TYPE_URL
    other = decode_flight_sql_command(encode_any("type.googleapis.com/arrow.flight.protocol.sql.CommandGetTables", b""))
    assert other == FlightSqlCommand("CommandGetTables", None, encode_any(
        "type.googleapis.com/arrow.flight.protocol.sql.CommandGetTables", b""))


def test_prepared_statement_handles() -> None:
    batch = pa.record_batch({"min": [0.5], "host": ["a"]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    stream = sink.getvalue().to_pybytes()
    handle = encode_prepared_handle("SELECT $min", stream)
    assert decode_prepared_handle(handle) == ("SELECT $min", stream)
    assert params_from_ipc(stream) == {"min": 0.5, "host": "a"}
    assert decode_prepared_handle(b"SELECT 1") == ("SELECT 1", None)  # the legacy raw-text handle
    with pytest.raises(FlightSqlError, match="^Invalid Any type URL. Expected "):
        decode_prepared_handle(encode_any("type.googleapis.com/x.Y", b""))
    cmd = decode_flight_sql_command(encode_any(
        "type.googleapis.com/arrow.flight.protocol.sql.CommandPreparedStatementQuery", field_len(1, handle)))
    assert (cmd.name, cmd.query, cmd.params) == ("CommandPreparedStatementQuery", "SELECT $min", stream)
    # the same batch sent as DoPut FlightData messages comes back as an IPC stream
    descriptor = fl.FlightDescriptor.for_command(b"cmd").serialize()
    messages = list(flight_data_messages(pa.Table.from_batches([batch])))
    messages[0] = field_len(1, descriptor) + messages[0]
    got_descriptor, got_stream = flight_data_to_ipc(messages)
    assert got_descriptor == descriptor and params_from_ipc(got_stream) == {"min": 0.5, "host": "a"}


def test_flight_sql_command_errors_use_the_servers_words() -> None:
    with pytest.raises(FlightSqlError, match=r"^Unsupported FlightSQL message type: type.googleapis.com/a.B$"):
        decode_flight_sql_command(encode_any("type.googleapis.com/a.B", b""))
    with pytest.raises(FlightSqlError, match=r"^Invalid protobuf: failed to decode Protobuf message"):
        decode_flight_sql_command(b"\x0a\x09abc")


def test_flight_data_messages_are_a_valid_arrow_stream() -> None:
    table = pa.table({"tag": pa.array(["a", "b", "a"] * 1000).dictionary_encode(), "v": list(range(3000))})
    messages = list(flight_data_messages(table, max_bytes=4096))
    assert len(messages) > 3  # schema, dictionary, several batches
    # re-frame each FlightData's header/body as an IPC stream message and read it back with pyarrow
    stream = bytearray()
    for msg in messages:
        fields = {n: v for n, _w, v in decode_fields(msg)}
        header, body = fields[2], fields.get(1000, b"")
        stream += b"\xff\xff\xff\xff" + struct.pack("<i", len(header)) + header + body
    stream += b"\xff\xff\xff\xff\x00\x00\x00\x00"
    assert pa.ipc.open_stream(bytes(stream)).read_all().equals(table)


def test_error_chain_text_is_the_servers_display_source_chain() -> None:
    assert error_chain_text("A: B: A: C") == "A: B: C"
    assert error_chain_text("Error while planning query: type_coercion\ncaused by\nError during planning: x") \
        == "Error while planning query: type_coercion: Error during planning: x"
    assert error_chain_text("x" * 2500) == "x" * 2000 + "..."


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer abc", "abc"), ("Token abc", "abc"), ("Bearer a b", "a b"),
    (f"Basic {base64.b64encode(b'user:pw:x').decode()}", "pw:x"),
    (f"Basic {base64.b64encode(b'nocolon').decode()}", None), ("Basic !!", None),
    ("Bearer ", None), ("Bearer", None), ("bearer abc", None), (None, None), (b"Bearer \xff", None),
])
def test_extract_grpc_token(header: str | bytes | None, token: str | None) -> None:
    assert extract_grpc_token(header) == token
