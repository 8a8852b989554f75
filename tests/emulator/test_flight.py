"""Arrow Flight and Flight SQL on the HTTP port, with the real clients against ``python -m emulator serve``.

Contract: influxdb3 3.10.1 ``service_grpc_flight`` (statuses, ticket forms, database headers),
``influxdb3/tests/server/flight.rs`` (``flight``: rows and the missing-table error), ``authz`` /
``influxdb3_authz`` (tokens). Clients: influxdb3-python, ADBC Flight SQL, pyarrow.flight.

One test, two targets: with ``INFLUXDB3_URL`` (+ ``INFLUXDB3_AUTH_TOKEN``) the same tests run against that real
server, except those marked ``embedded_only`` (the documented differences of COVERAGE.md).
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.flight as fl
import pytest
import requests

from emulator.flight.protocol import decode_any, decode_fields, encode_any, field_len, field_varint
from tests.emulator.conftest import unique_name
from tests.flight_clients import adbc_query, assert_flight_clients_query, grpc_message, influxdb3_query
from tests.support import RemoteServer, ServerProcess, remote_server, remote_target, start_server

SQL_URL = "type.googleapis.com/arrow.flight.protocol.sql."
# influxdb3/tests/server/flight.rs `flight`: three rows written with second precision
FLIGHT_RS_LP = (
    "cpu,host=s1,region=us-east usage=0.9 2998574936\n"
    "cpu,host=s1,region=us-east usage=0.89 2998574937\n"
    "cpu,host=s1,region=us-east usage=0.85 2998574938"
)


embedded_only = pytest.mark.skipif(remote_target() is not None,
                                   reason="the embedded engine's documented difference (COVERAGE.md)")


@dataclass
class Target:
    """A server under test: HTTP and Flight on ``url``/``port``; ``db`` holds flight.rs's rows."""

    url: str
    port: int
    token: str | None
    session: requests.Session
    db: str


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """Auth on with an admin token (or the real server of INFLUXDB3_URL); a fresh database with flight.rs's rows."""
    db = unique_name("flight")
    with contextlib.ExitStack() as stack:
        remote = remote_server()
        if remote is not None:
            if not remote.token:
                pytest.skip("INFLUXDB3_AUTH_TOKEN is not set for the remote server")
            s: ServerProcess | RemoteServer = stack.enter_context(remote)
        else:
            s = stack.enter_context(start_server(tmp_path_factory.mktemp("flight"), auth=True))
        r = s.session.post(f"{s.url}/api/v3/write_lp", params={"db": db, "precision": "second"},
                           data=FLIGHT_RS_LP, timeout=30)
        assert r.status_code == 204, r.text
        yield Target(s.url, urlsplit(s.url).port or 8181, s.token, s.session, db)
        s.session.delete(f"{s.url}/api/v3/configure/database", params={"db": db}, timeout=30)


@pytest.fixture(scope="module")
def open_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with start_server(tmp_path_factory.mktemp("flight_open")) as s:
        r = s.session.post(f"{s.url}/api/v3/write_lp", params={"db": "foo"}, data="m v=1i 1", timeout=30)
        assert r.status_code == 204, r.text
        yield s


def client(s: Target | ServerProcess) -> fl.FlightClient:
    return fl.FlightClient(f"grpc://127.0.0.1:{s.port}")


def opts(token: str | None = None, **headers: str) -> fl.FlightCallOptions:
    pairs = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    if token is not None:
        pairs.append((b"authorization", f"Bearer {token}".encode()))
    return fl.FlightCallOptions(headers=pairs)


def ticket(**fields: object) -> fl.Ticket:
    return fl.Ticket(json.dumps(fields).encode())


def statement(sql: str) -> fl.FlightDescriptor:
    return fl.FlightDescriptor.for_command(encode_any(SQL_URL + "CommandStatementQuery", field_len(1, sql.encode())))


def status_of(call) -> tuple[type, str]:
    with pytest.raises((pa.ArrowException, fl.FlightError)) as info:
        call()
    text = str(info.value)
    assert "Traceback" not in text and "Detail: Python" not in text
    return type(info.value), grpc_message(info.value)


# -- the real clients ----------------------------------------------------------------------------------


def test_influxdb3_python_query_returns_flight_rs_rows(srv: Target) -> None:
    table = influxdb3_query(srv.url, srv.token, srv.db, "SELECT host, region, time, usage FROM cpu ORDER BY time")
    assert table.column_names == ["host", "region", "time", "usage"]
    assert table.column("usage").to_pylist() == [0.9, 0.89, 0.85]
    times = [t.isoformat() for t in table.column("time").to_pylist()]
    assert times == ["2065-01-07T17:28:56", "2065-01-07T17:28:57", "2065-01-07T17:28:58"]
    assert table.column("host").to_pylist() == ["s1"] * 3


def test_influxdb3_python_query_parameters_and_reader_mode(srv: Target) -> None:
    from influxdb_client_3 import InfluxDBClient3

    with InfluxDBClient3(host=srv.url, token=srv.token, database=srv.db) as c:
        t = c.query("SELECT usage FROM cpu WHERE usage > $min ORDER BY usage", query_parameters={"min": 0.86})
        assert t.column("usage").to_pylist() == [0.89, 0.9]
        reader = c.query("SELECT count(*) AS n FROM cpu", mode="reader")
        assert reader.read_all().column("n").to_pylist() == [3]


def test_adbc_flight_sql_query_returns_rows_and_sql_error(srv: Target) -> None:
    table = adbc_query(srv.port, srv.token, srv.db, "SELECT host, region, time, usage FROM cpu ORDER BY time")
    assert table.num_rows == 3 and table.column("usage").to_pylist() == [0.9, 0.89, 0.85]
    with pytest.raises(Exception) as info:
        adbc_query(srv.port, srv.token, srv.db, "SELECT * FROM invalid_table")
    assert "table 'public.iox.invalid_table' not found" in str(info.value)  # flight.rs `flight`
    assert "INVALID_ARGUMENT" in str(info.value)


def test_adbc_prepared_statement_with_named_parameters(srv: Target) -> None:
    # ADBC prepares every query (DoAction CreatePreparedStatement) and binds parameters with DoPut; the
    # server binds them by column name, so a record batch with a `min` column fills `$min`
    import adbc_driver_flightsql.dbapi as flightsql

    conn = flightsql.connect(f"grpc://127.0.0.1:{srv.port}", autocommit=True, db_kwargs={
        "adbc.flight.sql.authorization_header": f"Bearer {srv.token}",
        "adbc.flight.sql.rpc.call_header.database": srv.db})
    try:
        with conn.cursor() as cur:
            sql = "SELECT usage FROM cpu WHERE usage > $min ORDER BY usage"
            cur.execute(sql, pa.record_batch({"min": [0.86]}))
            assert cur.fetch_arrow_table().column("usage").to_pylist() == [0.89, 0.9]
            cur.execute(sql, pa.record_batch({"min": [0.895]}))
            assert cur.fetch_arrow_table().column("usage").to_pylist() == [0.9]
    finally:
        conn.close()


def test_prepared_statement_over_raw_flight(srv: Target) -> None:
    c = client(srv)
    h = opts(srv.token, database=srv.db)
    request = encode_any(SQL_URL + "ActionCreatePreparedStatementRequest", field_len(1, b"SELECT host, usage FROM cpu"))
    results = list(c.do_action(fl.Action("CreatePreparedStatement", request), h))
    type_url, value = decode_any(results[0].body.to_pybytes())
    assert type_url == SQL_URL + "ActionCreatePreparedStatementResult"
    fields = {n: v for n, _w, v in decode_fields(value)}
    assert pa.ipc.read_schema(pa.py_buffer(fields[2])).names == ["host", "usage"]
    command = encode_any(SQL_URL + "CommandPreparedStatementQuery", field_len(1, fields[1]))
    info = c.get_flight_info(fl.FlightDescriptor.for_command(command), h)
    assert c.do_get(info.endpoints[0].ticket, opts(srv.token)).read_all().num_rows == 3
    close = encode_any(SQL_URL + "ActionClosePreparedStatementRequest", field_len(1, fields[1]))
    assert [r.body.to_pybytes() for r in c.do_action(fl.Action("ClosePreparedStatement", close), h)] == [b""]
    # an action whose body is no Flight SQL command (ADBC's CloseSession): the server's decode error
    kind, msg = status_of(lambda: list(c.do_action(fl.Action("CloseSession", b""), h)))
    assert (kind, msg) == (pa.ArrowInvalid, "Error while planning Flight SQL : Unsupported FlightSQL message type: ")
    kind, msg = status_of(lambda: list(c.do_action(fl.Action("CreatePreparedStatement", request),
                                                   opts("wrong", database=srv.db))))
    assert (kind, msg) == (fl.FlightUnauthenticatedError, "Unauthenticated")


def test_both_clients_agree_with_http(srv: Target) -> None:
    assert assert_flight_clients_query(srv.port, srv.token, srv.db, "SELECT * FROM cpu") == 3


@embedded_only
def test_without_auth_needs_no_token(open_srv: ServerProcess) -> None:
    assert influxdb3_query(open_srv.url, None, "foo", "SELECT v FROM m").column("v").to_pylist() == [1]
    assert adbc_query(open_srv.port, None, "foo", "SELECT v FROM m").column("v").to_pylist() == [1]


# -- statuses (service_grpc_flight lib.rs) -------------------------------------------------------------


def test_unknown_database_is_internal_with_the_servers_text(srv: Target) -> None:
    kind, msg = status_of(lambda: client(srv).do_get(ticket(database="nodb", sql_query="SELECT 1"),
                                                     opts(srv.token)).read_all())
    assert kind is fl.FlightInternalError
    assert msg == "Cannot retrieve database: External error: database not found: nodb"


def test_sql_error_is_invalid_argument(srv: Target) -> None:
    kind, msg = status_of(lambda: client(srv).do_get(ticket(database=srv.db, sql_query="SELECT * FROM nope"),
                                                     opts(srv.token)).read_all())
    assert kind is pa.ArrowInvalid
    assert msg == "Error while logically planning query: Error during planning: table 'public.iox.nope' not found"


@embedded_only
def test_influxql_is_unimplemented(srv: Target) -> None:
    kind, msg = status_of(lambda: client(srv).do_get(
        ticket(database=srv.db, sql_query="SHOW MEASUREMENTS", query_type="influxql"), opts(srv.token)).read_all())
    assert kind is pa.ArrowNotImplementedError
    assert msg == "This feature is not implemented: InfluxQL queries (embedded engine)"


@pytest.mark.parametrize("raw", [b"not json", b'{"database":"foo"}', b'{"database":"foo","sql_query":"x","query_type":"sql2"}',
                                 b'{"database":"foo","bucket":"foo","sql_query":"SELECT 1"}'])
def test_bad_ticket_is_invalid_argument_before_auth(srv: Target, raw: bytes) -> None:
    kind, msg = status_of(lambda: client(srv).do_get(fl.Ticket(raw)).read_all())  # no token: decoded first
    assert (kind, msg) == (pa.ArrowInvalid, "Invalid ticket. Error: Invalid ticket")


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic Zm9v", "Digest abc", "Bearer "])
def test_missing_or_unknown_token_is_unauthenticated(srv: Target, auth: str | None) -> None:
    headers = [(b"authorization", auth.encode())] if auth is not None else []
    kind, msg = status_of(lambda: client(srv).do_get(ticket(database=srv.db, sql_query="SELECT 1"),
                                                     fl.FlightCallOptions(headers=headers)).read_all())
    assert (kind, msg) == (fl.FlightUnauthenticatedError, "Unauthenticated")


def test_token_schemes_like_the_server(srv: Target) -> None:
    t = ticket(database=srv.db, sql_query="SELECT count(*) AS n FROM cpu")
    basic = base64.b64encode(f"anyuser:{srv.token}".encode()).decode()
    for auth in (f"Bearer {srv.token}", f"Token {srv.token}", f"Basic {basic}"):
        table = client(srv).do_get(t, fl.FlightCallOptions(headers=[(b"authorization", auth.encode())])).read_all()
        assert table.column("n").to_pylist() == [3]


def test_expired_token_is_permission_denied(srv: Target) -> None:
    r = srv.session.post(f"{srv.url}/api/v3/configure/token/named_admin",
                         json={"token_name": unique_name("short"), "expiry_secs": 1}, timeout=30)
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    t = ticket(database=srv.db, sql_query="SELECT 1")
    assert client(srv).do_get(t, opts(token)).read_all().num_rows == 1
    deadline = time.monotonic() + 5
    while True:
        try:
            client(srv).do_get(t, opts(token)).read_all()
        except fl.FlightUnauthorizedError as exc:
            assert grpc_message(exc) == "Permission denied"
            return
        assert time.monotonic() < deadline, "token did not expire"
        time.sleep(0.1)  # poll interval while the 1 s expiry passes


def test_undecodable_flight_sql_command_is_invalid_argument(srv: Target) -> None:
    kind, msg = status_of(lambda: client(srv).get_flight_info(fl.FlightDescriptor.for_command(b"\x0a\x09ab"),
                                                              opts(srv.token, database=srv.db)))
    assert kind is pa.ArrowInvalid and msg.startswith("Error while planning Flight SQL : Invalid protobuf: ")


class _EchoAuth(fl.ClientAuthHandler):
    def __init__(self) -> None:
        super().__init__()
        self.reply = b""

    def authenticate(self, outgoing, incoming) -> None:
        outgoing.write(b"hello")
        self.reply = incoming.read()

    def get_token(self) -> bytes:
        return b""


def test_handshake_echoes_and_needs_a_message(srv: Target) -> None:
    # lib.rs `handshake`: the first message is echoed; a handshake without one is INVALID_ARGUMENT (so
    # pyarrow's authenticate_basic_token, which sends headers only, fails there as here)
    auth = _EchoAuth()
    client(srv).authenticate(auth)
    assert auth.reply == b"hello"
    kind, msg = status_of(lambda: client(srv).authenticate_basic_token("anyuser", srv.token))
    assert (kind, msg) == (pa.ArrowInvalid, "Invalid handshake. No payload provided")


# -- Flight SQL ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["database", "bucket", "bucket-name", "iox-namespace-name"])
def test_flight_sql_database_headers_and_ticket(srv: Target, header: str) -> None:
    c = client(srv)
    info = c.get_flight_info(statement("SELECT host, usage FROM cpu ORDER BY time"),
                             opts(srv.token, **{header.replace("-", "_"): srv.db}))
    assert info.schema.names == ["host", "usage"]
    assert info.total_records == -1 and len(info.endpoints) == 1 and not info.endpoints[0].locations
    table = c.do_get(info.endpoints[0].ticket, opts(srv.token)).read_all()  # the ticket names the database
    assert table.schema == info.schema
    assert table.column("usage").to_pylist() == [0.9, 0.89, 0.85]


def test_flight_sql_header_errors(srv: Target) -> None:
    c = client(srv)
    desc = statement("SELECT 1")
    kind, msg = status_of(lambda: c.get_flight_info(desc, opts(srv.token)))
    assert (kind, msg) == (pa.ArrowInvalid, "no 'database' header in request")
    kind, msg = status_of(lambda: c.get_flight_info(desc, opts(srv.token, database=srv.db, bucket="bar")))
    assert kind is pa.ArrowInvalid
    assert msg == 'More than one headers are found in request: ["database", "bucket"]. Please include only one of them'
    # the same name twice is fine
    assert c.get_flight_info(desc, opts(srv.token, database=srv.db, bucket=srv.db)).schema.names == ["Int64(1)"]


def test_flight_sql_commands_and_errors(srv: Target) -> None:
    c = client(srv)
    h = opts(srv.token, database=srv.db)
    kind, msg = status_of(lambda: c.get_flight_info(fl.FlightDescriptor.for_command(
        encode_any("type.googleapis.com/x.Unknown", b"")), h))
    assert (kind, msg) == (pa.ArrowInvalid, "Error while planning Flight SQL : Unsupported FlightSQL message type: "
                                            "type.googleapis.com/x.Unknown")
    kind, msg = status_of(lambda: c.get_flight_info(fl.FlightDescriptor.for_path("cpu"), h))
    assert (kind, msg) == (pa.ArrowNotImplementedError, "Unsupported message type: FlightInfo with Path")
    kind, msg = status_of(lambda: c.get_flight_info(statement("SELECT * FROM nope"), h))
    assert (kind, msg) == (pa.ArrowInvalid, "Error while planning query: Error during planning: "
                                            "table 'public.iox.nope' not found")
    kind, msg = status_of(lambda: c.get_flight_info(statement("SELECT 1"), opts("wrong", database=srv.db)))
    assert (kind, msg) == (fl.FlightUnauthenticatedError, "Unauthenticated")
    kind, msg = status_of(lambda: c.get_flight_info(statement("SELECT 1"), opts(srv.token, database="nodb")))
    assert kind is fl.FlightInternalError and msg.endswith("database not found: nodb")
    kind, msg = status_of(lambda: list(c.list_flights(options=h)))
    assert (kind, msg) == (pa.ArrowNotImplementedError, "Not yet implemented: list_flights")


# -- Flight SQL metadata commands (flightsql planner.rs; flight.rs `flight`) ----------------------------------

#: influxdb3/tests/server/flight.rs `flight`: GetTables with no filters on a database holding `cpu`
FLIGHT_RS_TABLES = [
    *(("public", "information_schema", t, "VIEW")
      for t in ("columns", "df_settings", "parameters", "routines", "schemata", "tables", "views")),
    ("public", "iox", "cpu", "BASE TABLE"),
    *(("public", "system", t, "BASE TABLE")
      for t in ("distinct_caches", "influxdb_schema", "last_caches", "parquet_files", "processing_engine_logs",
                "processing_engine_trigger_arguments", "processing_engine_triggers", "queries")),
]


def sql_metadata(srv: Target, name: str, body: bytes = b"", **headers: str) -> tuple[pa.Schema, pa.Table]:
    """GetFlightInfo for the Flight SQL command ``name`` (fields ``body``), then DoGet its ticket."""
    c = client(srv)
    descriptor = fl.FlightDescriptor.for_command(encode_any(SQL_URL + name, body))
    info = c.get_flight_info(descriptor, opts(srv.token, database=srv.db, **headers))
    return info.schema, c.do_get(info.endpoints[0].ticket, opts(srv.token, **headers)).read_all()


def rows(table: pa.Table) -> list[tuple]:
    return [tuple(r.values()) for r in table.to_pylist()]


def test_get_tables_catalogs_and_sql_info_as_flight_rs(srv: Target) -> None:
    schema, table = sql_metadata(srv, "CommandGetTables")
    assert schema.names == ["catalog_name", "db_schema_name", "table_name", "table_type"]
    assert rows(table) == FLIGHT_RS_TABLES  # sorted by every column, as arrow-flight's GetTablesBuilder
    schema, table = sql_metadata(srv, "CommandGetCatalogs")
    assert (schema.names, rows(table)) == (["catalog_name"], [("public",)])
    _schema, table = sql_metadata(srv, "CommandGetSqlInfo", field_varint(1, 0))  # FLIGHT_SQL_SERVER_NAME
    assert table.to_pylist() == [{"info_name": 0, "value": "InfluxDB IOx"}]


def test_get_tables_filters_and_table_schemas(srv: Target) -> None:
    body = field_len(2, b"i%") + field_len(3, b"c_u") + field_varint(5, 1)  # schema LIKE, table LIKE, include_schema
    schema, table = sql_metadata(srv, "CommandGetTables", body)
    assert schema.names[-1] == "table_schema" and schema.field("table_schema").type == pa.binary()
    assert rows(table.drop_columns(["table_schema"])) == [("public", "iox", "cpu", "BASE TABLE")]
    cpu = pa.ipc.read_schema(pa.py_buffer(table.column("table_schema")[0].as_py()))
    assert cpu.names == ["host", "region", "time", "usage"] and cpu.field("usage").type == pa.float64()
    _schema, views = sql_metadata(srv, "CommandGetTables", field_len(4, b"VIEW"))
    assert {r[3] for r in rows(views)} == {"VIEW"} and len(views) == 7
    _schema, none = sql_metadata(srv, "CommandGetTables", field_len(1, b"other"))  # catalog: exact match
    assert none.num_rows == 0


def test_get_db_schemas_and_table_types(srv: Target) -> None:
    schema, table = sql_metadata(srv, "CommandGetDbSchemas")
    assert schema.names == ["catalog_name", "db_schema_name"]
    assert rows(table) == [("public", "information_schema"), ("public", "iox"), ("public", "system")]
    _schema, table = sql_metadata(srv, "CommandGetDbSchemas", field_len(2, b"%s%"))
    assert rows(table) == [("public", "information_schema"), ("public", "system")]
    _schema, table = sql_metadata(srv, "CommandGetTableTypes")
    assert rows(table) == [("BASE TABLE",), ("VIEW",)]


def test_base_table_type_header(srv: Target) -> None:
    # ODBC tools ask for "TABLE" (flightsql BaseTableType); any case; anything else is refused by every DoGet
    _schema, table = sql_metadata(srv, "CommandGetTableTypes", x_influxdata_base_table_type="table")
    assert rows(table) == [("TABLE",), ("VIEW",)]
    _schema, table = sql_metadata(srv, "CommandGetTables", field_len(3, b"cpu"), x_influxdata_base_table_type="TABLE")
    assert rows(table) == [("public", "iox", "cpu", "TABLE")]
    kind, msg = status_of(lambda: sql_metadata(srv, "CommandGetTableTypes", x_influxdata_base_table_type="x"))
    assert (kind, msg) == (pa.ArrowInvalid, "Invalid argument: Invalid base table type: 'x'. "
                                            "Valid values are 'BASE TABLE' or 'TABLE'")


def test_key_commands_answer_no_rows_and_xdbc_types(srv: Target) -> None:
    table_cpu = field_len(3, b"cpu")
    for name, first in (("CommandGetPrimaryKeys", "catalog_name"), ("CommandGetExportedKeys", "pk_catalog_name"),
                        ("CommandGetImportedKeys", "pk_catalog_name"),
                        ("CommandGetCrossReference", "pk_catalog_name")):
        schema, table = sql_metadata(srv, name, table_cpu)
        assert schema.names[0] == first and table.num_rows == 0, name
    schema, table = sql_metadata(srv, "CommandGetXdbcTypeInfo")
    assert table.column("type_name").to_pylist() == ["INTEGER", "FLOAT", "INTERVAL", "VARCHAR", "TIMESTAMP"]
    _schema, table = sql_metadata(srv, "CommandGetXdbcTypeInfo", field_varint(1, 12))  # XDBC_VARCHAR
    assert table.column("type_name").to_pylist() == ["VARCHAR"]


def test_adbc_browses_catalog_and_reads_info(srv: Target) -> None:
    import adbc_driver_flightsql.dbapi as flightsql

    conn = flightsql.connect(f"grpc://127.0.0.1:{srv.port}", autocommit=True, db_kwargs={
        "adbc.flight.sql.authorization_header": f"Bearer {srv.token}",
        "adbc.flight.sql.rpc.call_header.database": srv.db})
    try:
        info = conn.adbc_get_info()
        assert (info["vendor_name"], info["vendor_version"], info["vendor_arrow_version"]) == ("InfluxDB IOx", "2",
                                                                                               "1.3")
        objects = conn.adbc_get_objects(depth="all", db_schema_filter="iox").read_all().to_pylist()
        [catalog] = objects
        assert catalog["catalog_name"] == "public"
        [iox] = catalog["catalog_db_schemas"]
        [cpu] = iox["db_schema_tables"]
        assert (cpu["table_name"], cpu["table_type"]) == ("cpu", "BASE TABLE")
        assert [c["column_name"] for c in cpu["table_columns"]] == ["host", "region", "time", "usage"]
        assert conn.adbc_get_table_schema("cpu", db_schema_filter="iox").names == ["host", "region", "time", "usage"]
        assert conn.adbc_get_table_types() == ["BASE TABLE", "VIEW"]
    finally:
        conn.close()


def test_prepared_statement_parameter_schema_is_inferred(srv: Target) -> None:
    # the server types each placeholder as DataFusion inferred it (dictionary tags as strings) and refuses to
    # prepare a statement with a placeholder it cannot type (flightsql planner.rs get_parameter_schema_for_plan)
    import adbc_driver_flightsql.dbapi as flightsql

    conn = flightsql.connect(f"grpc://127.0.0.1:{srv.port}", autocommit=True, db_kwargs={
        "adbc.flight.sql.authorization_header": f"Bearer {srv.token}",
        "adbc.flight.sql.rpc.call_header.database": srv.db})
    try:
        with conn.cursor() as cur:
            params = cur.adbc_prepare("SELECT * FROM cpu WHERE usage > $2 AND host = $1")
            assert [(f.name, f.type, f.nullable) for f in params] == [("$1", pa.string(), True),
                                                                      ("$2", pa.float64(), True)]
            assert cur.adbc_prepare("SELECT host FROM cpu").names == []
            with pytest.raises(Exception) as info:
                cur.adbc_prepare("SELECT $1 AS x")
            assert "INTERNAL" in str(info.value)
            assert ("Error while planning query: External error: Unable to infer the type of parameter '$1' in "
                    "prepared statement") in str(info.value)
    finally:
        conn.close()


def test_flight_queries_in_system_queries_as_the_server_logs_them(srv: Target) -> None:
    c = client(srv)
    marker = unique_name("q")
    json_sql = f"SELECT '{marker}-json' AS m"
    assert c.do_get(ticket(database=srv.db, sql_query=json_sql), opts(srv.token)).read_all().num_rows == 1
    info = c.get_flight_info(statement(f"SELECT '{marker}-fsql' AS m"), opts(srv.token, database=srv.db))
    assert c.do_get(info.endpoints[0].ticket, opts(srv.token)).read_all().num_rows == 1
    sql_metadata(srv, "CommandGetCatalogs")
    _schema, table = sql_metadata(srv, "CommandStatementQuery", field_len(1, (
        f"SELECT query_type, query_text, phase FROM system.queries WHERE query_text LIKE '%{marker}%' "
        "OR query_text = 'CommandGetCatalogs' ORDER BY issue_time").encode()))
    logged = rows(table)
    assert ("sql", json_sql, "success") in logged  # a JSON ticket's query_type (default sql)
    assert ("flightsql", f"CommandStatementQuery SELECT '{marker}-fsql' AS m", "success") in logged
    assert ("flightsql", "CommandGetCatalogs", "success") in logged


# -- one port for both ---------------------------------------------------------------------------------


def _raw_http(port: int, chunks: list[bytes]) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for chunk in chunks:
            s.sendall(chunk)
            time.sleep(0.02)  # separate TCP segments, so the sniffer sees a short first read
        return s.recv(4096)


@embedded_only
def test_http_requests_starting_like_the_preface_still_reach_http(open_srv: ServerProcess) -> None:
    body = b"m v=2i 2"
    post = (f"POST /api/v3/write_lp?db=foo HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body
    assert _raw_http(open_srv.port, [post[:1], post[1:]]).startswith(b"HTTP/1.1 204")
    # a request line that shares the preface's first bytes is HTTP, answered by aiohttp
    answer = _raw_http(open_srv.port, [b"PRI * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"])
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0], answer
    assert open_srv.session.get(f"{open_srv.url}/health", timeout=5).status_code == 200
