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

from emulator.flight.metadata import (
    SQL_INFO_SCHEMA,
    BaseTableTypeError,
    like_pattern,
    parse_base_table_type,
    sql_info_table,
)
from emulator.flight.protocol import (
    READ_INFO_TYPE_URL,
    FlightSqlCommand,
    FlightSqlError,
    ProtobufError,
    TicketError,
    command_text,
    decode_any,
    decode_fields,
    decode_flight_sql_command,
    decode_message,
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
    assert len(messages) > 3  # schema, several batches
    # re-frame each FlightData's header/body as an IPC stream message and read it back with pyarrow
    stream = bytearray()
    for msg in messages:
        fields = {n: v for n, _w, v in decode_fields(msg)}
        header, body = fields[2], fields.get(1000, b"")
        stream += b"\xff\xff\xff\xff" + struct.pack("<i", len(header)) + header + body
    stream += b"\xff\xff\xff\xff\x00\x00\x00\x00"
    # tags hydrated as the server's encoder does (DictionaryHandling::Hydrate): plain strings
    expected = table.set_column(0, "tag", table.column("tag").cast(pa.string()))
    assert pa.ipc.open_stream(bytes(stream)).read_all().equals(expected)


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


SQL = "type.googleapis.com/arrow.flight.protocol.sql."


def test_metadata_command_fields_are_decoded() -> None:
    tables = decode_flight_sql_command(encode_any(SQL + "CommandGetTables", field_len(2, b"i%") + field_len(4, b"VIEW")
                                                  + field_len(4, b"TABLE") + field_varint(5, 1)))
    assert tables.args == {"db_schema_filter_pattern": "i%", "table_types": ["VIEW", "TABLE"], "include_schema": True}
    packed = decode_flight_sql_command(encode_any(SQL + "CommandGetSqlInfo", field_len(1, encode_varint(0)
                                                                                       + encode_varint(508))))
    unpacked = decode_flight_sql_command(encode_any(SQL + "CommandGetSqlInfo", field_varint(1, 0) + field_varint(1, 508)))
    assert packed.args == unpacked.args == {"info": [0, 508]}
    xdbc = decode_flight_sql_command(encode_any(SQL + "CommandGetXdbcTypeInfo", field_varint(1, -5)))
    assert xdbc.args == {"data_type": -5}  # XDBC_BIGINT, an int32 sent as a 64-bit varint
    with pytest.raises(FlightSqlError, match="^Invalid protobuf"):
        decode_flight_sql_command(encode_any(SQL + "CommandGetTables", field_varint(1, 3)))  # catalog is a string


def test_command_text_is_the_servers_display() -> None:
    # flightsql cmd.rs `impl Display for FlightSQLCommand`, what system.queries shows as query_text
    def cmd(name: str, body: bytes = b"") -> FlightSqlCommand:
        return decode_flight_sql_command(encode_any(SQL + name, body))

    assert command_text(cmd("CommandStatementQuery", field_len(1, b"SELECT 1"))) == "CommandStatementQuery SELECT 1"
    assert command_text(cmd("CommandGetCatalogs")) == "CommandGetCatalogs"
    assert command_text(cmd("CommandGetSqlInfo", field_varint(1, 0))) == "CommandGetSqlInfo(...)"
    assert command_text(cmd("CommandGetDbSchemas", field_len(2, b"i%"))) == \
        "CommandGetCatalogs(catalog=<NONE>, db_schema_filter_pattern=i%"
    assert command_text(cmd("CommandGetTables", field_len(4, b"VIEW") + field_len(4, b"TABLE"))) == (
        "CommandGetTables(catalog=<NONE>, db_schema_filter_pattern=<NONE>,table_name_filter_pattern=<NONE>,"
        "table_types=VIEW,TABLE,include_schema=false)")
    assert command_text(cmd("CommandGetPrimaryKeys", field_len(3, b"cpu"))) == \
        "CommandGetPrimaryKeys(catalog=<NONE>, db_schema=<NONE>, table=cpu)"
    assert command_text(cmd("CommandGetXdbcTypeInfo")) == "CommandGetXdbcTypeInfo(data_type=0)"
    sink = pa.BufferOutputStream()  # a bound batch is drawn as arrow's pretty_format_batches
    with pa.ipc.new_stream(sink, pa.schema([("min", pa.float64()), ("host", pa.string())])) as w:
        w.write_batch(pa.record_batch({"min": [1.0], "host": ["a"]}))
    handle = encode_prepared_handle("SELECT $min", sink.getvalue().to_pybytes())
    assert command_text(cmd("CommandPreparedStatementQuery", field_len(1, handle))) == (
        "CommandPreparedStatementQuery Prepared(SELECT $min,+-----+------+\n| min | host |\n+-----+------+\n"
        "| 1.0 | a    |\n+-----+------+)")


@pytest.mark.parametrize(("pattern", "value", "match"), [
    ("i%", "iox", True), ("i%", "information_schema", True), ("i%", "system", False), ("c_u", "cpu", True),
    ("c_u", "cpuu", False), ("%", "", True), ("a\\%", "a%", True), ("a\\%", "ab", False), ("CPU", "cpu", False),
    ("a.b", "axb", False), ("%\n%", "x\ny", True),
])
def test_like_pattern_as_arrows_like(pattern: str, value: str, match: bool) -> None:
    assert bool(like_pattern(pattern).fullmatch(value)) is match


def test_base_table_type_header_values() -> None:
    assert parse_base_table_type(None) == "BASE TABLE"
    assert parse_base_table_type("base table") == "BASE TABLE"
    assert parse_base_table_type("Table") == "TABLE"
    with pytest.raises(BaseTableTypeError, match=r"^Invalid base table type: 'VIEW'\. Valid values are"):
        parse_base_table_type("VIEW")


def test_sql_info_is_a_dense_union_by_code() -> None:
    table = sql_info_table([])
    assert table.schema == SQL_INFO_SCHEMA
    codes = table.column("info_name").to_pylist()
    assert codes == sorted(codes) and codes[:4] == [0, 1, 2, 3] and 508 in codes
    info = {r["info_name"]: r["value"] for r in sql_info_table([0, 3, 504, 503, 541, 999]).to_pylist()}
    assert info == {0: "InfluxDB IOx", 3: True, 503: 3, 504: '"', 541: 2**31 - 1}  # 999: unknown, no row
    keywords = sql_info_table([508]).column("value")[0].as_py()
    assert "select" in keywords and "zone" in keywords
    convert = dict(sql_info_table([517]).column("value")[0].as_py())
    assert 19 in convert[0]  # BIGINT -> VARCHAR
    assert 8 not in convert[0]  # BIGINT -/-> INTERVAL_DAY_TIME


def test_parameter_types_inferred_by_datafusion() -> None:
    from emulator.query import QueryRunner

    cpu = pa.table({"host": pa.array(["a"]).dictionary_encode(), "usage": [0.5],
                    "time": pa.array([1], pa.timestamp("ns"))})
    runner = QueryRunner()
    types = runner.parameter_types("db", {"cpu": lambda: cpu},
                                   "SELECT * FROM cpu WHERE usage > $10 AND host = $2 AND time > $t")
    assert list(types) == ["$2", "$10", "$t"]
    assert (types["$10"], types["$t"]) == (pa.float64(), pa.timestamp("ns"))
    assert pa.types.is_dictionary(types["$2"])
    assert runner.parameter_types("db", {}, "SELECT $1") == {"$1": None}
    assert runner.parameter_types("db", {}, "SELECT 1") == {}
    assert runner.parameter_types("db", {}, "SELECT * FROM nope WHERE x = $1") is None


def test_decode_message_reads_each_kind_as_prost_does():
    spec = {1: ("s", "str"), 2: ("ss", "strs"), 3: ("b", "bytes"), 4: ("n", "i32"), 5: ("on", "bool"),
            6: ("u", "varint"), 7: ("m", "msgs")}
    buf = (field_len(1, b"first") + field_len(1, b"last") + field_len(2, b"a") + field_len(2, b"b")
           + field_len(3, b"\xff\x00") + field_varint(4, -2) + field_varint(5, 2) + field_varint(6, 1 << 40)
           + field_len(7, b"x") + field_len(7, b"y") + field_varint(99, 1))  # 99: not in spec, skipped
    assert decode_message(buf, spec) == {"s": "last", "ss": ["a", "b"], "b": b"\xff\x00", "n": -2, "on": True,
                                         "u": 1 << 40, "m": [b"x", b"y"]}
    with pytest.raises(ProtobufError, match=r"^failed to decode Protobuf message: invalid wire type: 0 \(expected 2\)$"):
        decode_message(field_varint(1, 5), spec)
    with pytest.raises(ProtobufError, match="invalid string value: data is not UTF-8 encoded"):
        decode_message(field_len(1, b"\xff"), spec)
