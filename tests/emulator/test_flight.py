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

from emulator.flight.protocol import decode_any, decode_fields, encode_any, field_len
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


@embedded_only
def test_flight_sql_metadata_commands_are_unimplemented(srv: Target) -> None:
    kind, msg = status_of(lambda: client(srv).get_flight_info(fl.FlightDescriptor.for_command(
        encode_any(SQL_URL + "CommandGetTables", b"")), opts(srv.token, database=srv.db)))
    assert (kind, msg) == (pa.ArrowNotImplementedError,
                           "This feature is not implemented: Flight SQL CommandGetTables (embedded engine)")


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
