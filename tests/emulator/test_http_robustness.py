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
