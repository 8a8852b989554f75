"""Issue 9 over HTTP: SQL that would touch the host is refused as the server refuses it (item 5), odd table
names stay queryable (item 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import RemoteServer, ServerProcess

Server = ServerProcess | RemoteServer


@pytest.mark.parametrize(("statement", "text"), [
    ("COPY m TO '{out}'", "Error during planning: DML not supported: COPY"),
    ("INSERT INTO m (v, time) VALUES (2, 0)", "Error during planning: DML not supported: Insert Into"),
    ("DROP TABLE m", "Error during planning: DDL not supported: DropTable"),
    ("CREATE TABLE x AS SELECT 1", "Error during planning: DDL not supported: CreateMemoryTable"),
    ("CREATE VIEW x AS SELECT 1", "Error during planning: DDL not supported: CreateView"),
    ("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '{out}'",
     "Error during planning: DDL not supported: CreateExternalTable"),
    ("SET datafusion.execution.batch_size = 1", "Error during planning: Statement not supported: SetVariable"),
])
def test_query_sql_refuses_statements_that_touch_the_host(server: Server, db: str, tmp_path: Path,
                                                            statement: str, text: str) -> None:
    """The server plans SQL with DDL, DML and statements off (iox_query ``exec/context.rs``); a Plan error
    answers 400 with its text (influxdb3_server ``datafusion_error_status_code``)."""
    assert server.session.post(f"{server.url}/api/v3/write_lp?db={db}", data="m v=1 1").status_code == 204
    out = tmp_path / "x.csv"
    r = server.session.post(f"{server.url}/api/v3/query_sql", json={"db": db, "q": statement.format(out=out)})
    assert (r.status_code, r.text) == (400, text)
    assert not out.exists()
    r = server.session.get(f"{server.url}/api/v3/query_sql", params={"db": db, "q": "SELECT v FROM m"})
    assert (r.status_code, r.json()) == (200, [{"v": 1.0}])


def test_query_sql_tables_m_and_upper_m_and_a_dot_b(server: Server, db: str) -> None:
    r = server.session.post(f"{server.url}/api/v3/write_lp?db={db}&precision=s", data="m v=1 1\nM v=2 1\na.b v=3 1")
    assert r.status_code == 204, r.text
    for q, want in (("SELECT v FROM m", 1.0), ('SELECT v FROM "M"', 2.0), ('SELECT v FROM "a.b"', 3.0)):
        r = server.session.get(f"{server.url}/api/v3/query_sql", params={"db": db, "q": q})
        assert (r.status_code, r.json()) == (200, [{"v": want}]), q


# ---------------------------------------------------------------------------------------------- item 6
#: bodies Python's json took (or crashed on) and serde_json refuses, with serde_json 1.0's texts and positions
#: (src/error.rs Display, src/read.rs / src/de.rs positions); the server answers 400 ``serde json error: …``
_SERDE_REFUSALS = [
    (b"[" * 5000, "recursion limit exceeded at line 1 column 128"),
    (b'{"db":' * 5000 + b"1" + b"}" * 5000, "recursion limit exceeded at line 1 column 763"),
    (b'{"db":"\\ud800"}', "unexpected end of hex escape at line 1 column 14"),
    (b'{"db":"\\udc00"}', "lone leading surrogate in hex escape at line 1 column 13"),
    (b'{"db":"\\ud800\\u0041"}', "lone leading surrogate in hex escape at line 1 column 19"),
    (b'\xef\xbb\xbf{"db":"x"}', "expected value at line 1 column 1"),
    ('{"db":"x"}'.encode("utf-16"), "expected value at line 1 column 1"),
    ('{"db":"x"}'.encode("utf-16-le"), "key must be a string at line 1 column 2"),
    ('{"db":"x"}'.encode("utf-32"), "expected value at line 1 column 1"),
    (b'{"db":"\xff"}', "invalid unicode code point at line 1 column 9"),
    (b'{"db":"a\x01"}', "control character (\\u0000-\\u001F) found while parsing a string at line 1 column 9"),
    (b'{"db":"x",}', "trailing comma at line 1 column 11"),
    (b'{"db":1e400}', "number out of range at line 1 column 11"),
    (b'{"db":' + b"7" * 5000 + b"}", "number out of range at line 1 column 5006"),
]


@pytest.mark.parametrize(("body", "text"), _SERDE_REFUSALS, ids=[t.split(" at ")[0] for _, t in _SERDE_REFUSALS])
@pytest.mark.parametrize("path", ["/api/v3/configure/database", "/api/v3/configure/processing_engine_trigger",
                                  "/api/v3/plugin_test/wal", "/api/v3/query_sql"])
def test_json_routes_answer_serde_json_refusals(server: Server, path: str, body: bytes, text: str) -> None:
    r = server.session.post(f"{server.url}{path}", data=body, headers={"Content-Type": "application/json"})
    assert (r.status_code, r.text) == (400, f"serde json error: {text}")


def test_query_sql_params_string_is_read_by_serde_json(server: Server, db: str) -> None:
    r = server.session.get(f"{server.url}/api/v3/query_sql",
                           params={"db": db, "q": "SELECT 1", "params": '{"a":"\\ud800"}'})
    assert (r.status_code, r.text) == (400, "serde json error: unexpected end of hex escape at line 1 column 13")
    r = server.session.get(f"{server.url}/api/v3/query_sql",
                           params={"db": db, "q": "SELECT 1", "params": "[" * 200})
    assert (r.status_code, r.text) == (400, "serde json error: recursion limit exceeded at line 1 column 128")


def test_300_character_plugin_filename(tmp_path: Path) -> None:
    """A name over the file system's 255-byte limit: Rust's ``Path::exists`` is false on the error (Plugin not
    found), a write fails with the OS error in the server's words (influxdb3_processing_engine ``lib.rs``)."""
    from tests.support import start_server

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    name = "p" * 300 + ".py"
    with start_server(tmp_path, plugin_dir=plugins) as srv:
        assert srv.session.post(f"{srv.url}/api/v3/configure/database", json={"db": "d"}).status_code == 200
        not_found = f"Plugin error: reading plugin file: Plugin not found: {plugins}/{name}"
        r = srv.session.post(f"{srv.url}/api/v3/plugin_test/wal",
                             json={"filename": name, "database": "d", "input_lp": "m f=1"})
        assert (r.status_code, r.text) == (500, not_found)
        r = srv.session.post(f"{srv.url}/api/v3/plugin_test/schedule",
                             json={"filename": name, "database": "d", "schedule": "* * * * * *"})
        assert (r.status_code, r.text) == (500, not_found)
        r = srv.session.post(f"{srv.url}/api/v3/configure/processing_engine_trigger", json={
            "db": "d", "plugin_filename": name, "trigger_name": "t", "trigger_specification": "every:1h",
            "disabled": False, "trigger_settings": {"run_async": False, "error_behavior": "log"}})
        assert (r.status_code, r.text) == (500, not_found)
        r = srv.session.post(f"{srv.url}/api/v3/plugins/files", json={"plugin_name": name, "content": "x = 1"})
        assert (r.status_code, r.text) == (
            500, "Processing engine error: plugin error: reading plugin file: File name too long (os error 36)")
        r = srv.session.post(f"{srv.url}/api/v3/plugins/files", json={"plugin_name": ".", "content": "x = 1"})
        assert (r.status_code, r.text) == (
            500, "Processing engine error: plugin error: reading plugin file: Is a directory (os error 21)")
        assert list(plugins.iterdir()) == [plugins / ".venv"] or not any(
            p.name.startswith(".tmp") for p in plugins.iterdir())
        assert "internal error" not in srv.log_path.read_text()


def test_malformed_request_lines_never_put_a_token_in_the_log(tmp_path: Path) -> None:
    """aiohttp logs a request it cannot parse with the offending bytes; a bad Authorization line held the token."""
    import socket

    from tests.support import start_server

    with start_server(tmp_path, auth=True) as srv:
        token = srv.token.encode()
        for raw in (b"Authorization: Bearer " + token + b"\x01",  # a stray control character
                    b"Authorization : Bearer " + token,  # a space before the colon
                    b"Authorization: Bearer " + token + b"z" * 9000):  # over aiohttp's line limit
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + raw + b"\r\n\r\n")
                assert sock.recv(100).startswith(b"HTTP/1.0 400 Bad Request"), raw[:30]
        assert srv.session.get(f"{srv.url}/health", timeout=10).status_code == 200
        log = srv.log_path.read_text(errors="replace")
        assert srv.token not in log and "Traceback" not in log, log
        assert log.count("WARNING aiohttp.server: malformed HTTP request from 127.0.0.1: ") == 3, log
