"""Reference §1 (global request handling) and §3 (health, ping), asserted exactly."""

from __future__ import annotations

import gzip
import re

import requests

from tests.support import RemoteServer, ServerProcess

Server = ServerProcess | RemoteServer
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_health_ok_text(server: Server) -> None:
    for path in ("/health", "/api/v1/health"):
        r = server.session.get(server.url + path)
        assert (r.status_code, r.content) == (200, b"OK")
        assert r.headers["Content-Type"].startswith("text/plain")


def test_every_response_has_cluster_uuid_and_successes_have_cors(server: Server) -> None:
    ok = server.session.get(server.url + "/health")
    missing = server.session.get(server.url + "/nope")
    assert UUID_RE.match(ok.headers["cluster-uuid"])
    assert missing.headers["cluster-uuid"] == ok.headers["cluster-uuid"]
    assert ok.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Origin" not in missing.headers


def test_unknown_path_and_wrong_method_are_404_not_found(server: Server) -> None:
    for method, path in (("GET", "/nope"), ("DELETE", "/health"), ("GET", "/api/v3/write_lp"), ("GET", "/ready"),
                         ("PUT", "/api/v3/engine/x")):
        r = server.session.request(method, server.url + path)
        assert (r.status_code, r.content) == (404, b"Not found"), (method, path)


def test_options_is_204_with_cors_on_any_path(server: Server) -> None:
    r = requests.options(server.url + "/anything/at/all")
    assert r.status_code == 204
    assert r.content == b""
    for h in ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers"):
        assert r.headers[h] == "*"
    assert UUID_RE.match(r.headers["cluster-uuid"])


def test_ping_body_and_headers(server: Server) -> None:
    for method in ("GET", "POST"):
        r = server.session.request(method, server.url + "/ping")
        assert r.status_code == 200
        body = r.json()
        assert list(body) == ["product_name", "version", "revision", "process_id"]
        assert body["product_name"] == "InfluxDB 3 Core"
        assert UUID_RE.match(body["process_id"])
        assert r.headers["X-Influxdb-Build"] == "Core"
        assert r.headers["X-Influxdb-Version"] == body["version"]
        assert UUID_RE.match(r.headers["Request-Id"]) and r.headers["X-Request-Id"] == r.headers["Request-Id"]
    ids = {server.session.get(server.url + "/ping").headers["Request-Id"] for _ in range(3)}
    assert len(ids) == 3  # a new id per request


def test_metrics_is_prometheus_text(server: Server) -> None:
    server.session.get(server.url + "/health")
    r = server.session.get(server.url + "/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE " in r.text


def test_unacceptable_content_encoding_is_400(server: Server, db: str) -> None:
    r = server.session.post(
        f"{server.url}/api/v3/write_lp?db={db}", data=b"m f=1", headers={"Content-Encoding": "br"}
    )
    assert (r.status_code, r.text) == (400, "unacceptable content-encoding: br")


def test_gzip_and_identity_bodies_are_accepted(server: Server, db: str) -> None:
    r = server.session.post(
        f"{server.url}/api/v3/write_lp?db={db}", data=gzip.compress(b"m f=1i 1"), headers={"Content-Encoding": "gzip"}
    )
    assert (r.status_code, r.content) == (204, b"")
    r = server.session.post(
        f"{server.url}/api/v3/write_lp?db={db}", data=b"m f=2i 2", headers={"Content-Encoding": "identity"}
    )
    assert (r.status_code, r.content) == (204, b"")
    q = server.session.get(f"{server.url}/api/v3/query_sql", params={"db": db, "q": "SELECT f FROM m ORDER BY f"})
    assert q.json() == [{"f": 1}, {"f": 2}]


def test_request_over_max_size_is_413(server: Server, db: str) -> None:
    body = b"m f=1\n" * (10485760 // 6 + 1)
    assert len(body) > 10485760
    r = server.session.post(f"{server.url}/api/v3/write_lp?db={db}", data=body)
    assert (r.status_code, r.text) == (413, "max request size (10485760 bytes) exceeded")


def test_json_routes_need_json_content_type(server: Server, db: str) -> None:
    r = server.session.post(
        f"{server.url}/api/v3/configure/database", data=f'{{"db":"{db}"}}', headers={"Content-Type": "text/plain"}
    )
    assert (r.status_code, r.text) == (415, "unacceptable content-type, expected: application/json")
    r = server.session.post(
        f"{server.url}/api/v3/configure/database",
        data=f'{{"db":"{db}"}}',
        headers={"Content-Type": "application/vnd.x+json"},
    )
    assert (r.status_code, r.content) == (200, b"")


def test_bad_json_body_is_serde_json_error(server: Server) -> None:
    r = server.session.post(
        f"{server.url}/api/v3/configure/database", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.text == "serde json error: EOF while parsing an object at line 1 column 1"
