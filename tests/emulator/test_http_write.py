"""Reference §6: the three write endpoints, their parameters, defaults, statuses and exact bodies."""

from __future__ import annotations

import json

from tests.support import RemoteServer, ServerProcess

Server = ServerProcess | RemoteServer
PARTIAL_BODY = (
    '{"error":"partial write of line protocol occurred","data":[{"error_message":"No fields were provided",'
    '"line_number":2,"original_line":"cpu,host=a val= 123"}]}'
)


def _rows(server: Server, db: str, sql: str) -> list[dict]:
    r = server.session.get(f"{server.url}/api/v3/query_sql", params={"db": db, "q": sql})
    assert r.status_code == 200, r.text
    return r.json()


def _assert_no_rows(server: Server, db: str, table: str) -> None:
    q = server.session.get(f"{server.url}/api/v3/query_sql", params={"db": db, "q": f"SELECT * FROM {table}"})
    if q.status_code == 200:  # the table may exist in the catalog, but without rows
        assert q.content == b"[]"
    else:
        assert q.status_code in (400, 404)


def test_write_lp_success_is_204_empty(server: Server, db: str) -> None:
    r = server.session.post(f"{server.url}/api/v3/write_lp?db={db}", data="cpu,host=a usage=0.5 1700000000")
    assert (r.status_code, r.content) == (204, b"")
    assert _rows(server, db, "SELECT host, usage, time FROM cpu") == [
        {"host": "a", "usage": 0.5, "time": "2023-11-14T22:13:20"}
    ]


def test_write_lp_without_query_string_is_400(server: Server) -> None:
    r = server.session.post(f"{server.url}/api/v3/write_lp", data="cpu f=1")
    assert (r.status_code, r.text) == (400, "missing query parameter 'db'")


def test_write_lp_without_db_is_serde_error(server: Server) -> None:
    r = server.session.post(f"{server.url}/api/v3/write_lp?precision=s", data="cpu f=1")
    assert (r.status_code, r.text) == (400, "serde error: missing field `db`")


def test_write_lp_unknown_precision_is_serde_error(server: Server, db: str) -> None:
    r = server.session.post(f"{server.url}/api/v3/write_lp?db={db}&precision=hours", data="cpu f=1")
    assert r.status_code == 400
    assert r.text.startswith("serde error: unknown variant `hours`, expected one of `auto`")


def test_write_lp_bad_bool_param_is_serde_error(server: Server, db: str) -> None:
    r = server.session.post(f"{server.url}/api/v3/write_lp?db={db}&no_sync=yes", data="cpu f=1")
    assert (r.status_code, r.text) == (400, "serde error: provided string was not `true` or `false`")


def test_write_lp_empty_body_is_400(server: Server, db: str) -> None:
    r = server.session.post(f"{server.url}/api/v3/write_lp?db={db}", data=b"")
    assert (r.status_code, r.text) == (400, "incoming write was empty")


def test_partial_write_stores_valid_lines_and_answers_400(server: Server, db: str) -> None:
    body = "cpu,host=a val=1i 1700000000\ncpu,host=a val= 123\ncpu,host=b val=2i 1700000000"
    r = server.session.post(f"{server.url}/api/v3/write_lp?db={db}", data=body)
    assert r.status_code == 400
    assert r.content == PARTIAL_BODY.encode()
    assert r.headers["Content-Type"] == "application/json"
    assert _rows(server, db, "SELECT host, val FROM cpu ORDER BY host") == [
        {"host": "a", "val": 1},
        {"host": "b", "val": 2},
    ]


def test_accept_partial_false_writes_nothing(server: Server, db: str) -> None:
    body = "cpu,host=a val=1i 1700000000\ncpu,host=a val= 123"
    r = server.session.post(f"{server.url}/api/v3/write_lp?db={db}&accept_partial=false", data=body)
    assert r.status_code == 400
    assert json.loads(r.content) == {
        "error": "line protocol parsing error",
        "data": {"error_message": "No fields were provided", "line_number": 2, "original_line": "cpu,host=a val= 123"},
    }
    _assert_no_rows(server, db, "cpu")


def test_original_line_is_cut_to_20_bytes(server: Server, db: str) -> None:
    r = server.session.post(
        f"{server.url}/api/v3/write_lp?db={db}", data="measurement_with_long_name,tag=value_long field="
    )
    assert r.status_code == 400
    assert r.json()["data"][0]["original_line"] == "measurement_with_lon"


def test_precision_auto_and_explicit_units(server: Server, db: str) -> None:
    lines = [
        ("auto", "a f=1i 1700000000", "2023-11-14T22:13:20"),
        ("auto", "b f=1i 1700000000000", "2023-11-14T22:13:20"),
        ("auto", "c f=1i 1700000000000000", "2023-11-14T22:13:20"),
        ("auto", "d f=1i 1700000000000000000", "2023-11-14T22:13:20"),
        ("ms", "e f=1i 1700000000001", "2023-11-14T22:13:20.001"),
        ("second", "g f=1i 1700000000", "2023-11-14T22:13:20"),
        ("u", "h f=1i 1700000000000001", "2023-11-14T22:13:20.000001"),
        ("n", "i f=1i 1700000000000000001", "2023-11-14T22:13:20.000000001"),
    ]
    for precision, lp, _ in lines:
        r = server.session.post(f"{server.url}/api/v3/write_lp?db={db}&precision={precision}", data=lp)
        assert r.status_code == 204, (precision, r.text)
    for _, lp, expected in lines:
        table = lp.split()[0]
        assert _rows(server, db, f"SELECT time FROM {table}") == [{"time": expected}], lp


def test_no_sync_true_is_acknowledged(server: Server, db: str) -> None:
    r = server.session.post(f"{server.url}/api/v3/write_lp?db={db}&no_sync=true", data="cpu f=1i 1")
    assert (r.status_code, r.content) == (204, b"")


def test_v2_write_uses_bucket_and_default_ns(server: Server, db: str) -> None:
    r = server.session.post(f"{server.url}/api/v2/write?bucket={db}&org=ignored", data="m f=1i 1700000000000000000")
    assert (r.status_code, r.content) == (204, b"")
    assert _rows(server, db, "SELECT time FROM m") == [{"time": "2023-11-14T22:13:20"}]


def test_v2_write_rejects_auto_precision_with_code_message(server: Server, db: str) -> None:
    r = server.session.post(f"{server.url}/api/v2/write?bucket={db}&precision=auto", data="m f=1")
    assert r.status_code == 400
    body = r.json()
    assert list(body) == ["code", "message"]
    assert body["code"] == "invalid"
    assert body["message"].startswith("failed to deserialize org/bucket/precision in request: unknown variant `auto`")


def test_v2_write_bad_line_is_not_partial(server: Server, db: str) -> None:
    r = server.session.post(f"{server.url}/api/v2/write?bucket={db}", data="m f=1i 1\nm f= 2")
    assert r.status_code == 400
    assert r.json()["code"] == "invalid"
    _assert_no_rows(server, db, "m")  # accept_partial is forced false: nothing written


def test_v1_write_takes_db_and_precision(server: Server, db: str) -> None:
    r = server.session.post(f"{server.url}/write?db={db}&precision=s", data="m f=1i 1700000000")
    assert (r.status_code, r.content) == (204, b"")
    assert _rows(server, db, "SELECT time FROM m") == [{"time": "2023-11-14T22:13:20"}]


def test_v1_write_rejects_auto_precision(server: Server, db: str) -> None:
    r = server.session.post(f"{server.url}/write?db={db}&precision=auto", data="m f=1")
    assert r.status_code == 400
    assert r.json()["error"].startswith("failed to deserialize db/rp/precision in request: unknown variant `auto`")


def test_v1_write_parameter_errors_as_iox_http(server: Server) -> None:
    # iox_http write/v1.rs V1WriteParseError, answered {"error": …} (influxdb3_server RoutingError::LegacyWrite)
    r = server.session.post(f"{server.url}/write", data="m f=1")
    assert (r.status_code, r.json()) == (400, {"error": "no db destination provided"})
    r = server.session.post(f"{server.url}/write?rp=x", data="m f=1")
    assert (r.status_code, r.json()) == (400, {
        "error": "failed to deserialize db/rp/precision in request: missing field `db`"})


def test_v1_write_bad_line_uses_v3_shape(server: Server, db: str) -> None:
    r = server.session.post(f"{server.url}/write?db={db}", data="m f=1i 1\nm f= 2")
    assert r.status_code == 400
    assert r.json()["error"] == "line protocol parsing error"
    assert r.json()["data"]["line_number"] == 2


def test_column_type_conflict_is_rejected_per_line(server: Server, db: str) -> None:
    assert server.session.post(f"{server.url}/api/v3/write_lp?db={db}", data="m f=1i 1").status_code == 204
    r = server.session.post(f"{server.url}/api/v3/write_lp?db={db}", data='m f="x" 2')
    assert r.status_code == 400
    err = r.json()
    assert err["error"] == "partial write of line protocol occurred"
    assert err["data"][0]["line_number"] == 1
    # The server reports schema errors with its own rendering of the line (quotes dropped), not the input text.
    assert err["data"][0]["original_line"] == "m f=x 2"


def test_same_series_and_time_merges_fields(server: Server, db: str) -> None:
    url = f"{server.url}/api/v3/write_lp?db={db}"
    assert server.session.post(url, data="web,host=h2 a=24.0,b=7.0 1700000000").status_code == 204
    assert server.session.post(url, data="web,host=h2 a=15.0 1700000000").status_code == 204
    assert _rows(server, db, "SELECT a, b, host FROM web") == [{"a": 15.0, "b": 7.0, "host": "h2"}]


def test_v2_write_error_message_names_the_cause(server: Server, db: str) -> None:
    # influxdb3_server http.rs V2WriteApiError: the message is the error's Display (issue 10 item 6)
    url = f"{server.url}/api/v2/write"
    r = server.session.post(f"{url}?bucket={db}", data="cpu,host=a val= 1")
    assert (r.status_code, r.json()) == (400, {
        "code": "invalid", "message": "write buffer error: line protocol parse failed: No fields were provided"})
    r = server.session.post(f"{url}?bucket={db}", data="")
    assert (r.status_code, r.json()) == (400, {
        "code": "invalid", "message": "write buffer error: incoming write was empty"})
    r = server.session.post(url, data="m f=1")
    assert (r.status_code, r.json()) == (400, {"code": "invalid", "message": "no org/bucket destination provided"})
    r = server.session.post(f"{url}?org=o", data="m f=1")
    assert (r.status_code, r.json()) == (400, {"code": "invalid", "message": "missing bucket value"})


def test_v1_write_rp_autogen_default_and_empty_mean_no_rp(server: Server, db: str) -> None:
    # iox_http write/v1.rs RetentionPolicy: rp lower-cased; "", "''", autogen and default are no rp
    for rp in ("autogen", "AUTOGEN", "default", "", "''"):
        r = server.session.post(f"{server.url}/write", params={"db": db, "rp": rp, "precision": "s"},
                                data="m f=1i 1700000000")
        assert (r.status_code, r.content) == (204, b""), rp
    assert _rows(server, db, "SELECT count(*) AS n FROM m") == [{"n": 1}]
    names = [d["iox::database"] for d in server.session.get(
        f"{server.url}/api/v3/configure/database", params={"format": "json"}).json()]
    assert not [n for n in names if n.startswith(f"{db}/")]


def test_v1_write_named_rp_is_lower_cased_into_the_database_name(server: Server, db: str) -> None:
    r = server.session.post(f"{server.url}/write", params={"db": db, "rp": "Weekly"}, data="m f=1i 1")
    assert r.status_code == 204
    try:
        assert _rows(server, f"{db}/weekly", "SELECT f FROM m") == [{"f": 1}]
    finally:
        server.session.delete(f"{server.url}/api/v3/configure/database", params={"db": f"{db}/weekly"})


def test_write_timestamp_out_of_range_for_precision_is_rejected(server: Server, db: str) -> None:
    # influxdb3_types Precision::to_nanos (checked since 3.6): ns timestamps sent with precision=ms
    r = server.session.post(f"{server.url}/api/v3/write_lp?db={db}&precision=ms",
                            data="cpu,host=a usage=0.5 1700000000000000000\ncpu,host=a usage=0.6 1700000000000")
    assert r.status_code == 400
    assert r.json() == {"error": "partial write of line protocol occurred", "data": [{
        "error_message": "timestamp, 1700000000000000000, out of range for precision: Millisecond",
        "line_number": 1, "original_line": "cpu,host=a usage=0.5"}]}
    assert _rows(server, db, "SELECT usage FROM cpu") == [{"usage": 0.6}]


def test_write_duplicate_field_is_rejected_naming_it(server: Server, db: str) -> None:
    r = server.session.post(f"{server.url}/api/v3/write_lp?db={db}&accept_partial=false",
                            data="cpu,host=a usage=0.5,usage=0.6")
    assert r.status_code == 400
    assert r.json()["data"]["error_message"] == "invalid line protocol - multiple instances of 'usage' field found"
    _assert_no_rows(server, db, "cpu")


def test_write_body_not_utf8_is_400_and_writes_nothing(server: Server, db: str) -> None:
    # influxdb3_server http.rs write_lp_inner: std::str::from_utf8 -> Error::NonUtf8Body (text 400; v2 wraps it)
    url = server.url
    r = server.session.post(f"{url}/api/v3/write_lp?db={db}", data=b"cpu,host=\xff usage=1 1")
    assert (r.status_code, r.text) == (400, "body content is not valid utf8: invalid utf-8 sequence of 1 bytes "
                                            "from index 9")
    r = server.session.post(f"{url}/write?db={db}", data=b"cpu,host=a usage=1 1\ncpu,host=\xe2\x82")
    assert (r.status_code, r.text) == (400, "body content is not valid utf8: incomplete utf-8 byte sequence from "
                                            "index 30")
    r = server.session.post(f"{url}/api/v2/write?bucket={db}", data=b"cpu,host=\xe2\x82x usage=1 1")
    assert (r.status_code, r.json()) == (400, {"code": "invalid", "message": "body content is not valid utf8: "
                                               "invalid utf-8 sequence of 2 bytes from index 9"})
    _assert_no_rows(server, db, "cpu")
