"""Reference §4 (databases) and §5 (tables): codes and texts exactly."""

from __future__ import annotations

import pytest

from tests.emulator.conftest import unique_name
from tests.support import RemoteServer, ServerProcess

Server = ServerProcess | RemoteServer
DB_URL = "/api/v3/configure/database"
TABLE_URL = "/api/v3/configure/table"


def _names(server: Server, show_deleted: bool = False) -> list[str]:
    params = {"format": "json"}
    if show_deleted:
        params["show_deleted"] = "true"
    r = server.session.get(server.url + DB_URL, params=params)
    assert r.status_code == 200
    return [row["iox::database"] for row in r.json()]


def test_create_list_delete_database(server: Server, db: str) -> None:
    r = server.session.post(server.url + DB_URL, json={"db": db, "retention_period": "30d"})
    assert (r.status_code, r.content) == (200, b"")
    names = _names(server)
    assert names[0] == "_internal"
    assert db in names
    assert names == sorted(names)
    r = server.session.delete(server.url + DB_URL, params={"db": db})
    assert (r.status_code, r.content) == (200, b"")
    assert db not in _names(server)


def test_list_format_json_exact_shape(server: Server, db: str) -> None:
    assert server.session.post(server.url + DB_URL, json={"db": db}).status_code == 200
    r = server.session.get(server.url + DB_URL, params={"format": "json"})
    assert r.headers["Content-Type"] == "application/json"
    assert {"iox::database": db} in r.json()
    assert {"iox::database": "_internal"} in r.json()


def test_list_requires_format(server: Server) -> None:
    r = server.session.get(server.url + DB_URL)
    assert (r.status_code, r.text) == (400, "serde error: missing field `format`")


def test_duplicate_database_is_409(server: Server, db: str) -> None:
    assert server.session.post(server.url + DB_URL, json={"db": db}).status_code == 200
    r = server.session.post(server.url + DB_URL, json={"db": db})
    assert (r.status_code, r.text) == (409, "attempted to create a resource that already exists")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("_x", "db name did not start with a number or letter"),
        (
            "a.b",
            "invalid character in database or rp name: must be ASCII, containing only letters, numbers, "
            "underscores, or hyphens",
        ),
        ("", "db name cannot be empty"),
    ],
)
def test_bad_database_names_are_400_json(server: Server, name: str, message: str) -> None:
    r = server.session.post(server.url + DB_URL, json={"db": name})
    assert r.status_code == 400
    assert r.content == f'{{"error":"{message}"}}'.encode()


def test_delete_unknown_is_404(server: Server) -> None:
    r = server.session.delete(server.url + DB_URL, params={"db": "never_made"})
    assert (r.status_code, r.text) == (404, "the requested resource was not found: never_made")


def test_delete_without_db_is_400(server: Server) -> None:
    r = server.session.delete(server.url + DB_URL, params={"x": "1"})
    assert (r.status_code, r.text) == (400, "serde error: missing field `db`")


def test_delete_internal_is_500(server: Server) -> None:
    r = server.session.delete(server.url + DB_URL, params={"db": "_internal"})
    assert (r.status_code, r.text) == (500, "cannot delete internal db")


def test_soft_deleted_name_is_reusable_and_listed_renamed(server: Server, db: str) -> None:
    assert server.session.post(server.url + DB_URL, json={"db": db}).status_code == 200
    assert server.session.delete(server.url + DB_URL, params={"db": db}).status_code == 200
    deleted = [n for n in _names(server, show_deleted=True) if n.startswith(db + "-")]
    assert len(deleted) == 1
    assert server.session.post(server.url + DB_URL, json={"db": db}).status_code == 200


def test_update_retention_and_retention_routes(server: Server, db: str) -> None:
    assert server.session.post(server.url + DB_URL, json={"db": db}).status_code == 200
    r = server.session.put(server.url + DB_URL, json={"db": db, "retention_period": "7d"})
    assert (r.status_code, r.content) == (200, b"")
    r = server.session.post(server.url + DB_URL + "/retention_period", params={"db": db, "duration": "30d"})
    assert (r.status_code, r.content) == (204, b"")
    r = server.session.delete(server.url + DB_URL + "/retention_period", params={"db": db})
    assert (r.status_code, r.content) == (204, b"")


def test_sixth_database_is_422(server: Server) -> None:
    if getattr(server, "is_remote", False):
        pytest.skip("depends on how many databases the real server already holds")
    made: list[str] = []
    try:
        status = 200
        while status == 200 and len(made) < 7:
            name = unique_name("lim")
            r = server.session.post(server.url + DB_URL, json={"db": name})
            status = r.status_code
            if status == 200:
                made.append(name)
        assert len([n for n in _names(server) if n != "_internal"]) == 5
        assert (r.status_code, r.content) == (422, b'{"error":"Adding a new database would exceed limit of 5 databases"}')
    finally:
        for name in made:
            server.session.delete(server.url + DB_URL, params={"db": name})


def test_create_and_delete_table(server: Server, db: str) -> None:
    body = {"db": db, "table": "t1", "tags": ["host"], "fields": [{"name": "usage", "type": "float64"}]}
    r = server.session.post(server.url + TABLE_URL, json=body)
    assert (r.status_code, r.content) == (200, b"")
    r = server.session.post(server.url + TABLE_URL, json=body)
    assert (r.status_code, r.text) == (409, "attempted to create a resource that already exists")
    q = server.session.get(
        f"{server.url}/api/v3/query_sql",
        params={
            "db": db,
            "q": "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 't1' ORDER BY column_name",
        },
    )
    cols = {row["column_name"]: row["data_type"] for row in q.json()}
    assert list(cols) == ["host", "time", "usage"]
    assert (cols["host"], cols["usage"]) == ("Dictionary(Int32, Utf8)", "Float64")
    assert cols["time"].startswith("Timestamp(")
    r = server.session.delete(server.url + TABLE_URL, params={"db": db, "table": "t1"})
    assert (r.status_code, r.content) == (200, b"")


def test_create_table_requires_tags_and_fields(server: Server, db: str) -> None:
    r = server.session.post(server.url + TABLE_URL, json={"db": db, "table": "t"})
    assert r.status_code == 400
    assert r.text.startswith("serde json error: missing field `tags`")


def test_create_table_unknown_field_type(server: Server, db: str) -> None:
    r = server.session.post(
        server.url + TABLE_URL, json={"db": db, "table": "t", "tags": [], "fields": [{"name": "f", "type": "text"}]}
    )
    assert r.status_code == 400
    assert r.text.startswith(
        "serde json error: unknown variant `text`, expected one of `utf8`, `int64`, `uint64`, `float64`, `bool`"
    )


def test_delete_unknown_table_is_404(server: Server, db: str) -> None:
    assert server.session.post(server.url + DB_URL, json={"db": db}).status_code == 200
    r = server.session.delete(server.url + TABLE_URL, params={"db": db, "table": "nope"})
    assert r.status_code == 404
    r = server.session.delete(server.url + TABLE_URL, params={"db": "no_such_db", "table": "nope"})
    assert r.status_code == 404


def test_operations_on_a_soft_deleted_database(server, db) -> None:
    # the soft-deleted database keeps its new name `<db>-<time>`: writes to it are refused (influxdb3_write
    # validator.rs DatabaseDeleted), deleting it again or changing its retention is 409 AlreadyDeleted
    # (influxdb3_catalog require_active_db / SoftDeleteDatabaseOp), as the server answers them
    base = server.url
    assert server.session.post(f"{base}/api/v3/write_lp", params={"db": db}, data="t f=1i 1").status_code == 204
    assert server.session.delete(f"{base}/api/v3/configure/database", params={"db": db}).status_code == 200
    listing = server.session.get(f"{base}/api/v3/configure/database",
                                 params={"format": "json", "show_deleted": "true"}).json()
    gone = next(d["iox::database"] for d in listing if d["iox::database"].startswith(f"{db}-"))
    flags = [d["deleted"] for d in listing]
    assert flags == sorted(flags)  # live databases first, then the deleted ones (each group by name)
    assert {"iox::database": gone, "deleted": True} in listing
    r = server.session.post(f"{base}/api/v3/write_lp", params={"db": gone}, data="t f=1i 2")
    assert (r.status_code, r.json()) == (400, {
        "error": f"cannot write to soft-deleted database '{gone}' - it is marked for deletion"})
    r = server.session.delete(f"{base}/api/v3/configure/database", params={"db": gone})
    assert (r.status_code, r.text) == (409, f"attempted to modify resource that was already deleted: {gone}")
    r = server.session.delete(f"{base}/api/v3/configure/database", params={"db": gone, "hard_delete_at": "never"})
    assert r.status_code == 200  # another hard-deletion time reschedules it; the same time again is 409
    r = server.session.delete(f"{base}/api/v3/configure/database", params={"db": gone, "hard_delete_at": "never"})
    assert r.status_code == 409
    r = server.session.put(f"{base}/api/v3/configure/database", json={"db": gone, "retention_period": "1d"})
    assert (r.status_code, r.text) == (409, f"attempted to modify resource that was already deleted: {gone}")
    names = [d["iox::database"] for d in server.session.get(
        f"{base}/api/v3/configure/database", params={"format": "json"}).json()]
    assert gone not in names  # the refused write created nothing
