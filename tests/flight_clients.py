"""The official Flight clients, as a user would call them, for tests against a running engine.

influxdb3-python (``InfluxDBClient3.query``: DoGet with a JSON ticket and ``authorization: Bearer``) and
ADBC's Flight SQL driver (``CommandStatementQuery`` through GetFlightInfo, then DoGet; the database in the
``database`` call header, as the InfluxDB docs configure it).
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import pyarrow as pa
import requests


def influxdb3_query(url: str, token: str | None, database: str, sql: str, **kwargs: Any) -> pa.Table:
    """Run ``sql`` with influxdb3-python; kwargs go to ``InfluxDBClient3.query`` (language, query_parameters)."""
    from influxdb_client_3 import InfluxDBClient3

    with InfluxDBClient3(host=url, token=token or "", database=database) as client:
        return client.query(sql, **kwargs)


def adbc_query(port: int, token: str | None, database: str, sql: str) -> pa.Table:
    """Run ``sql`` through ADBC Flight SQL on ``grpc://127.0.0.1:<port>``."""
    import adbc_driver_flightsql.dbapi as flightsql

    db_kwargs = {"adbc.flight.sql.rpc.call_header.database": database}
    if token:
        db_kwargs["adbc.flight.sql.authorization_header"] = f"Bearer {token}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Cannot disable autocommit": the server has no transactions
        conn = flightsql.connect(f"grpc://127.0.0.1:{port}", db_kwargs=db_kwargs, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetch_arrow_table()
    finally:
        conn.close()


def http_rows(url: str, token: str | None, database: str, sql: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.post(f"{url}/api/v3/query_sql", json={"db": database, "q": sql, "format": "json"},
                      headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def assert_flight_clients_query(port: int, token: str | None, database: str, sql: str) -> int:
    """Both clients answer ``sql`` with the rows HTTP gives (same count, same columns); returns the count."""
    url = f"http://127.0.0.1:{port}"
    expected = http_rows(url, token, database, sql)
    for table in (influxdb3_query(url, token, database, sql), adbc_query(port, token, database, sql)):
        assert table.num_rows == len(expected)
        if expected:
            assert set(table.column_names) >= set(expected[0])
    return len(expected)


def grpc_message(exc: BaseException) -> str:
    """The status message inside a pyarrow Flight client error (``… with message: <msg>[. gRPC client …]``)."""
    text = str(exc)
    m = re.search(r"with message: (.*?)(?:\. gRPC client debug context.*)?$", text, re.S)
    assert m, text
    return m.group(1)
