"""Reference §7: /api/v3/query_sql (GET/POST, params, formats, Accept), errors; InfluxQL answers; the seed example."""

from __future__ import annotations

import io

import pyarrow.parquet as pq
import pytest

from tests.support import RemoteServer, ServerProcess

Server = ServerProcess | RemoteServer

SEED_LP = r"""home,room=Living\ Room temp=21.1,hum=35.9,co=0i 1742198400
home,room=Kitchen temp=21.0,hum=35.9,co=0i 1742198400
home,room=Living\ Room temp=21.4,hum=35.9,co=0i 1742202000
home,room=Kitchen temp=23.0,hum=36.2,co=0i 1742202000
home,room=Living\ Room temp=21.8,hum=36.0,co=0i 1742205600
home,room=Kitchen temp=22.7,hum=36.1,co=0i 1742205600
home,room=Living\ Room temp=22.2,hum=36.0,co=0i 1742209200
home,room=Kitchen temp=22.4,hum=36.0,co=0i 1742209200
home,room=Living\ Room temp=22.2,hum=35.9,co=0i 1742212800
home,room=Kitchen temp=22.5,hum=36.0,co=0i 1742212800
home,room=Living\ Room temp=22.4,hum=36.0,co=0i 1742216400
home,room=Kitchen temp=22.8,hum=36.5,co=1i 1742216400"""


@pytest.fixture
def cpu_db(server: Server, db: str) -> str:
    r = server.session.post(
        f"{server.url}/api/v3/write_lp?db={db}",
        data="cpu,host=a,region=us usage=0.9,system=1i 3000000000000000000\ncpu,host=b usage=1.0 3000000001000000000",
    )
    assert r.status_code == 204, r.text
    return db


def test_seed_example_accepted_and_averaged(server: Server, db: str) -> None:
    r = server.session.post(f"{server.url}/api/v3/write_lp?db={db}&precision=auto", data=SEED_LP)
    assert (r.status_code, r.content) == (204, b"")
    q = server.session.get(
        f"{server.url}/api/v3/query_sql",
        params={"db": db, "q": "SELECT room, avg(temp) AS t FROM home GROUP BY room ORDER BY room"},
    )
    assert q.status_code == 200
    assert q.headers["Content-Type"] == "application/json"
    rows = q.json()
    assert [r["room"] for r in rows] == ["Kitchen", "Living Room"]
    assert rows[0]["t"] == pytest.approx(134.4 / 6)
    assert rows[1]["t"] == pytest.approx(131.1 / 6)
    count = server.session.get(f"{server.url}/api/v3/query_sql", params={"db": db, "q": "SELECT count(*) AS n FROM home"})
    assert count.json() == [{"n": 12}]


def test_select_star_is_alphabetical_and_omits_nulls(server: Server, cpu_db: str) -> None:
    r = server.session.get(
        f"{server.url}/api/v3/query_sql", params={"db": cpu_db, "q": "SELECT * FROM cpu ORDER BY host"}
    )
    assert r.status_code == 200
    assert r.content == (
        b'[{"host":"a","region":"us","system":1,"time":"2065-01-24T05:20:00","usage":0.9},'
        b'{"host":"b","time":"2065-01-24T05:20:01","usage":1.0}]'
    )


def test_post_json_body_with_params(server: Server, cpu_db: str) -> None:
    r = server.session.post(
        f"{server.url}/api/v3/query_sql",
        json={"db": cpu_db, "q": "SELECT host FROM cpu WHERE host = $h", "params": {"h": "b"}},
    )
    assert (r.status_code, r.content) == (200, b'[{"host":"b"}]')


def test_get_params_as_json_string(server: Server, cpu_db: str) -> None:
    r = server.session.get(
        f"{server.url}/api/v3/query_sql",
        params={"db": cpu_db, "q": "SELECT host FROM cpu WHERE host = $h", "params": '{"h":"a"}'},
    )
    assert (r.status_code, r.content) == (200, b'[{"host":"a"}]')


@pytest.mark.parametrize(
    ("fmt", "ctype", "body"),
    [
        ("json", "application/json", b'[{"host":"a"}]'),
        ("jsonl", "application/jsonl", b'{"host":"a"}\n'),
        ("json_lines", "application/jsonl", b'{"host":"a"}\n'),
        ("csv", "text/csv", b"host\na\n"),
        ("pretty", "text/plain; charset=utf-8", b"+------+\n| host |\n+------+\n| a    |\n+------+"),
    ],
)
def test_formats(server: Server, cpu_db: str, fmt: str, ctype: str, body: bytes) -> None:
    r = server.session.get(
        f"{server.url}/api/v3/query_sql",
        params={"db": cpu_db, "q": "SELECT host FROM cpu WHERE host = 'a'", "format": fmt},
    )
    assert r.status_code == 200
    assert r.headers["Content-Type"] == ctype
    assert r.content == body


def test_parquet_format(server: Server, cpu_db: str) -> None:
    r = server.session.get(
        f"{server.url}/api/v3/query_sql", params={"db": cpu_db, "q": "SELECT host FROM cpu ORDER BY host", "format": "parquet"}
    )
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/vnd.apache.parquet"
    assert pq.read_table(io.BytesIO(r.content)).column("host").to_pylist() == ["a", "b"]


@pytest.mark.parametrize(
    ("accept", "ctype"),
    [
        ("application/json", "application/json"),
        ("*/*", "application/json"),
        ("text/html,application/xhtml+xml", "application/json"),
        ("text/csv", "text/csv"),
        ("text/plain", "text/plain; charset=utf-8"),
        ("application/vnd.apache.parquet", "application/vnd.apache.parquet"),
    ],
)
def test_accept_decides_format(server: Server, cpu_db: str, accept: str, ctype: str) -> None:
    r = server.session.get(
        f"{server.url}/api/v3/query_sql", params={"db": cpu_db, "q": "SELECT 1 AS one"}, headers={"Accept": accept}
    )
    assert r.status_code == 200
    assert r.headers["Content-Type"] == ctype


def test_unknown_accept_is_400_even_with_format(server: Server, cpu_db: str) -> None:
    r = server.session.get(
        f"{server.url}/api/v3/query_sql",
        params={"db": cpu_db, "q": "SELECT 1", "format": "json"},
        headers={"Accept": "application/xml"},
    )
    assert (r.status_code, r.text) == (400, "invalid mime type (application/xml)")


def test_get_without_query_string_is_400(server: Server) -> None:
    r = server.session.get(f"{server.url}/api/v3/query_sql")
    assert (r.status_code, r.text) == (400, "missing query parameters 'db' and 'q'")


def test_unknown_format_is_serde_error(server: Server, cpu_db: str) -> None:
    r = server.session.get(f"{server.url}/api/v3/query_sql", params={"db": cpu_db, "q": "SELECT 1", "format": "xml"})
    assert r.status_code == 400
    assert r.text.startswith("serde error: unknown variant `xml`, expected one of ")


def test_unknown_db_is_404_json(server: Server) -> None:
    r = server.session.get(f"{server.url}/api/v3/query_sql", params={"db": "nodb_here", "q": "SELECT 1"})
    assert r.status_code == 404
    assert r.content == b'{"error":"query error: database not found: nodb_here"}'


def test_unknown_table_is_400_plain_datafusion_text(server: Server, cpu_db: str) -> None:
    r = server.session.get(f"{server.url}/api/v3/query_sql", params={"db": cpu_db, "q": "SELECT * FROM not_here"})
    assert r.status_code == 400
    assert r.text == "Error during planning: table 'public.iox.not_here' not found"


def test_empty_result_is_empty_array(server: Server, cpu_db: str) -> None:
    r = server.session.get(
        f"{server.url}/api/v3/query_sql", params={"db": cpu_db, "q": "SELECT host FROM cpu WHERE host = 'zz'"}
    )
    assert (r.status_code, r.content) == (200, b"[]")


def test_information_schema_lists_tables(server: Server, cpu_db: str) -> None:
    r = server.session.get(
        f"{server.url}/api/v3/query_sql",
        params={"db": cpu_db, "q": "SELECT table_name FROM information_schema.tables WHERE table_schema = 'iox'"},
    )
    assert (r.status_code, r.json()) == (200, [{"table_name": "cpu"}])


def test_influxql_is_not_implemented_405(server: Server, cpu_db: str) -> None:
    if getattr(server, "is_remote", False):
        pytest.skip("the real server implements InfluxQL")
    for path in ("/api/v3/query_influxql", "/query"):
        r = server.session.get(f"{server.url}{path}", params={"db": cpu_db, "q": "SELECT * FROM cpu"})
        assert r.status_code == 405, path
        assert r.text == "This feature is not implemented: InfluxQL queries (embedded engine)"


def test_system_queries_logs_a_query_that_failed_planning_as_fail(server: Server, db: str) -> None:
    # influxdb3_query_executor query_database_sql records the query before planning; a planning error is token.fail()
    url = f"{server.url}/api/v3/query_sql"
    assert server.session.post(f"{server.url}/api/v3/write_lp", params={"db": db}, data="m f=1i 1").status_code == 204
    marker = f"SELECT * FROM nope_{db}"
    assert server.session.get(url, params={"db": db, "q": marker}).status_code == 400
    r = server.session.get(url, params={"db": db, "format": "json", "q": (
        f"SELECT phase, query_type, success, running FROM system.queries WHERE query_text = '{marker}'")})
    assert r.json() == [{"phase": "fail", "query_type": "sql", "success": False, "running": False}]
