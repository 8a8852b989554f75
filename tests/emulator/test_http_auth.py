"""Reference §12 (auth and tokens) and the auth parts of §1."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
import requests

from tests.support import RemoteServer, ServerProcess, start_server

Server = ServerProcess | RemoteServer
MALFORMED = (
    b'{"error": "Authorization header was malformed, the request was not in the form of '
    b"'Authorization: <auth-scheme> <token>', supported auth-schemes are Bearer, Token and Basic\"}"
)
UNAUTH = b'{"error": "the request was not authenticated"}'


def test_no_token_is_401_before_routing(auth_server: Server) -> None:
    for path in ("/health", "/ping", "/nope", "/api/v3/query_sql"):
        r = requests.get(auth_server.url + path)
        assert (r.status_code, r.content) == (401, UNAUTH), path


def test_wrong_token_is_401(auth_server: Server) -> None:
    r = requests.get(auth_server.url + "/health", headers={"Authorization": "Bearer apiv3_wrong"})
    assert (r.status_code, r.content) == (401, UNAUTH)


@pytest.mark.parametrize("header", ["bearer {t}", "Bearer", "Bearer {t} extra", "Bogus {t}"])
def test_malformed_header_is_400(auth_server: Server, header: str) -> None:
    r = requests.get(auth_server.url + "/health", headers={"Authorization": header.format(t=auth_server.token)})
    assert (r.status_code, r.content) == (400, MALFORMED)


def test_bearer_token_and_basic_schemes(auth_server: Server) -> None:
    basic = base64.b64encode(f"anyone:{auth_server.token}".encode()).decode()
    for header in (f"Bearer {auth_server.token}", f"Token {auth_server.token}", f"Basic {basic}"):
        r = requests.get(auth_server.url + "/health", headers={"Authorization": header})
        assert (r.status_code, r.content) == (200, b"OK"), header


def test_p_param_only_on_query_and_write(auth_server: Server) -> None:
    t = auth_server.token
    assert requests.get(f"{auth_server.url}/health", params={"p": t}).status_code == 401
    r = requests.post(f"{auth_server.url}/write", params={"db": "authp", "p": t}, data="m f=1i 1")
    assert r.status_code == 204
    r = requests.post(f"{auth_server.url}/api/v3/write_lp", params={"db": "authp", "p": t}, data="m f=1i 2")
    assert (r.status_code, r.content) == (401, UNAUTH)
    auth_server.session.delete(f"{auth_server.url}/api/v3/configure/database", params={"db": "authp"})


def test_options_needs_no_token(auth_server: Server) -> None:
    assert requests.options(auth_server.url + "/api/v3/write_lp").status_code == 204


def test_admin_token_exists_so_create_is_409(auth_server: Server) -> None:
    r = requests.post(auth_server.url + "/api/v3/configure/token/admin")
    assert (r.status_code, r.text) == (409, "token name already exists, _admin")


def test_named_admin_token_lifecycle(auth_server: Server) -> None:
    url = auth_server.url + "/api/v3/configure/token"
    r = auth_server.session.post(url + "/named_admin", json={"token_name": "ops1", "expiry_secs": None})
    assert r.status_code == 201
    assert r.headers["Content-Type"] == "json"
    body = r.json()
    assert list(body) == ["id", "name", "token", "hash", "created_at", "expiry"]
    assert body["name"] == "ops1" and body["expiry"] is None
    assert body["token"].startswith("apiv3_") and len(body["token"]) == 92
    assert len(body["hash"]) == 128
    new = requests.get(auth_server.url + "/health", headers={"Authorization": f"Bearer {body['token']}"})
    assert new.status_code == 200
    dup = auth_server.session.post(url + "/named_admin", json={"token_name": "ops1", "expiry_secs": None})
    assert dup.status_code == 409
    r = auth_server.session.delete(url, params={"token_name": "ops1"})
    assert (r.status_code, r.content) == (200, b"")
    gone = requests.get(auth_server.url + "/health", headers={"Authorization": f"Bearer {body['token']}"})
    assert gone.status_code == 401


def test_operator_token_cannot_be_deleted(auth_server: Server) -> None:
    r = auth_server.session.delete(auth_server.url + "/api/v3/configure/token", params={"token_name": "_admin"})
    assert (r.status_code, r.text) == (405, "cannot delete operator token")


def test_admin_create_then_regenerate(tmp_path) -> None:
    with start_server(tmp_path, auth=True, token_file=False) as fresh:
        r = requests.post(fresh.url + "/api/v3/configure/token/admin")
        assert r.status_code == 201
        assert r.headers["Content-Type"] == "json"
        body = r.json()
        assert (body["id"], body["name"], body["expiry"]) == (0, "_admin", None)
        assert body["created_at"].endswith("Z")
        again = requests.post(fresh.url + "/api/v3/configure/token/admin")
        assert (again.status_code, again.text) == (409, "token name already exists, _admin")
        old = {"Authorization": f"Bearer {body['token']}"}
        assert requests.post(fresh.url + "/api/v3/configure/token/admin/regenerate").status_code == 401
        regen = requests.post(fresh.url + "/api/v3/configure/token/admin/regenerate", headers=old)
        assert regen.status_code == 201
        new_token = regen.json()["token"]
        assert new_token != body["token"]
        assert requests.get(fresh.url + "/health", headers=old).status_code == 401
        ok = requests.get(fresh.url + "/health", headers={"Authorization": f"Bearer {new_token}"})
        assert ok.status_code == 200
    catalog = (fresh.data_dir / "catalog.json").read_text()
    assert body["token"] not in catalog and new_token not in catalog
    assert hashlib.sha512(new_token.encode()).hexdigest() in catalog


def test_without_auth_token_routes_are_405(server: Server) -> None:
    if getattr(server, "is_remote", False):
        pytest.skip("needs a server started with --without-auth")
    for method, path in (
        ("POST", "/api/v3/configure/token/admin"),
        ("POST", "/api/v3/configure/token/named_admin"),
        ("DELETE", "/api/v3/configure/token"),
        ("GET", "/api/v3/configure/token/anything"),
    ):
        r = server.session.request(method, server.url + path)
        assert (r.status_code, r.text) == (405, "endpoint disabled, started without auth"), path


def test_disable_authz_opens_health_and_ping(tmp_path) -> None:
    with start_server(tmp_path, auth=True, extra_args=("--disable-authz", "health,ping")) as srv:
        assert requests.get(srv.url + "/health").status_code == 200
        assert requests.get(srv.url + "/ping").status_code == 200
        assert requests.get(srv.url + "/metrics").status_code == 401
        token_file = json.loads((tmp_path / "admin-token.json").read_text())
        assert token_file["name"] == "_admin"
