"""The catalog: databases, tables, column types, limits, triggers and tokens, persisted as one JSON file.

Rules and texts follow InfluxDB 3 Core (reference §4, §5; influxdb3_catalog/src/error.rs):

* 5 databases (``_internal`` exists and does not count), 2000 tables per database, 500 columns per table
  (tags + fields + ``time``; a column is refused when the table already holds 500).
* A soft-deleted database or table is renamed ``<name>-<YYYYMMDDTHHMMSS>`` (UTC deletion time; ``-<id>`` is
  appended if that name is taken) and its name becomes free again.
* Column types use the server's ``InfluxColumnType`` names in error texts (``iox::column_type::tag``,
  ``iox::column_type::field::float`` ...).

The catalog is thread-safe (one ``RLock``) and persists with write-to-temp + fsync + atomic rename.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.errors import (
    ApiError,
    DamagedFileError,
    already_deleted,
    already_exists,
    json_error,
    not_found,
    text_error,
)

INTERNAL_DB = "_internal"
NUM_DBS_LIMIT = 5
NUM_TABLES_LIMIT = 2000
NUM_COLUMNS_PER_TABLE_LIMIT = 500
MAX_DB_NAME_LENGTH = 511
TIME_COLUMN = "time"
FIELD_TYPES = ("int64", "uint64", "float64", "utf8", "bool")

#: Display names of InfluxColumnType (schema crate), used verbatim in the server's error texts.
COLUMN_TYPE_NAMES = {
    "tag": "iox::column_type::tag",
    "time": "iox::column_type::timestamp",
    "int64": "iox::column_type::field::integer",
    "uint64": "iox::column_type::field::uinteger",
    "float64": "iox::column_type::field::float",
    "utf8": "iox::column_type::field::string",
    "bool": "iox::column_type::field::boolean",
}

_SOFT_DELETE_FORMAT = "%Y%m%dT%H%M%S"

# Texts of influxdb3_server http.rs ValidateDbNameError.
DB_NAME_EMPTY = "db name cannot be empty"
DB_NAME_BAD_START = "db name did not start with a number or letter"
DB_NAME_BAD_CHAR = (
    "invalid character in database or rp name: must be ASCII, containing only letters, numbers, "
    "underscores, or hyphens"
)
DB_NAME_BAD_RP = (
    "db name with invalid retention policy, if providing a retention policy name, must be of form "
    "'<db_name>/<rp_name>'"
)
DB_NAME_TOO_LONG = f"db name too long: max {MAX_DB_NAME_LENGTH}"


def too_many_dbs_text() -> str:
    return f"Adding a new database would exceed limit of {NUM_DBS_LIMIT} databases"


def too_many_tables_text(current: int) -> str:
    """The table-limit error; ``current`` = live tables of all user databases (influxdb3_catalog ``error.rs``
    ``TooManyTables``, v3.10.1; the count is catalog-wide: limits.rs)."""
    return ("Update to schema would exceed number of tables limit: attempted to create table but already have "
            f"{current} table(s) (limit: {NUM_TABLES_LIMIT})")


def too_many_columns_text() -> str:
    return f"Update to schema would exceed number of columns per table limit of {NUM_COLUMNS_PER_TABLE_LIMIT} columns"


def invalid_column_type_text(column: str, expected: str, got: str) -> str:
    return (
        f"invalid column type for column '{column}', expected {COLUMN_TYPE_NAMES[expected]}, "
        f"got {COLUMN_TYPE_NAMES[got]}"
    )


class SchemaError(Exception):
    """A per-line schema failure (type conflict, limit); ``message`` is the server's text."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


def db_name_error(name: str) -> str | None:
    """Return the server's error text for an invalid database name, or None if valid."""
    if not name:
        return DB_NAME_EMPTY
    if len(name.encode("utf-8")) > MAX_DB_NAME_LENGTH:
        return DB_NAME_TOO_LONG
    rp_seen = False
    for i, ch in enumerate(name):
        if len(ch.encode("utf-8")) > 1:
            return DB_NAME_BAD_CHAR
        if i == 0:
            if not (ch.isascii() and ch.isalnum()):
                return DB_NAME_BAD_START
            continue
        if ch == "/":
            if rp_seen:
                return DB_NAME_BAD_RP
            rp_seen = True
        elif not (ch.isascii() and (ch.isalnum() or ch in "_-")):
            return DB_NAME_BAD_CHAR
    if name.endswith("/"):
        return DB_NAME_BAD_RP
    return None


def validate_db_name(name: str) -> None:
    """Raise the server's 400 ``{"error":…}`` for an invalid database name."""
    message = db_name_error(name)
    if message is not None:
        raise json_error(400, message)


@dataclass
class TableDef:
    """One table: ordered tags, typed fields (insertion order), the ``time`` column implied."""

    id: int
    name: str
    tags: list[str] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    deleted: bool = False
    hard_delete_at: str | None = None
    #: bumped on every schema change, so caches keyed on it notice new columns
    version: int = 0

    def column_type(self, name: str) -> str | None:
        """``tag``, ``time``, a field type, or None when the column does not exist."""
        if name == TIME_COLUMN:
            return "time"
        ftype = self.fields.get(name)
        if ftype is not None:
            return ftype
        if name in self.tags:
            return "tag"
        return None

    @property
    def num_columns(self) -> int:
        """Tag and field columns: what the per-table limit counts (the v3 catalog exempts ``time``;
        influxdb3/tests/server/limits.rs, v3.10.1)."""
        return len(self.tags) + len(self.fields)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "tags": list(self.tags),
            "fields": dict(self.fields),
            "deleted": self.deleted,
            "hard_delete_at": self.hard_delete_at,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TableDef:
        return cls(
            id=obj["id"],
            name=obj["name"],
            tags=list(obj["tags"]),
            fields=dict(obj["fields"]),
            deleted=obj.get("deleted", False),
            hard_delete_at=obj.get("hard_delete_at"),
        )


@dataclass
class DatabaseDef:
    id: int
    name: str
    deleted: bool = False
    retention_period: str | None = None
    hard_delete_at: str | None = None
    #: live tables by name (soft-deleted ones are kept under their renamed name in ``deleted_tables``)
    tables: dict[str, TableDef] = field(default_factory=dict)
    deleted_tables: dict[str, TableDef] = field(default_factory=dict)
    next_table_id: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "deleted": self.deleted,
            "retention_period": self.retention_period,
            "hard_delete_at": self.hard_delete_at,
            "tables": [t.to_json() for t in self.tables.values()],
            "deleted_tables": [t.to_json() for t in self.deleted_tables.values()],
            "next_table_id": self.next_table_id,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DatabaseDef:
        db = cls(
            id=obj["id"],
            name=obj["name"],
            deleted=obj.get("deleted", False),
            retention_period=obj.get("retention_period"),
            hard_delete_at=obj.get("hard_delete_at"),
            next_table_id=obj.get("next_table_id", 0),
        )
        for t in obj.get("tables", []):
            td = TableDef.from_json(t)
            db.tables[td.name] = td
        for t in obj.get("deleted_tables", []):
            td = TableDef.from_json(t)
            db.deleted_tables[td.name] = td
        return db


def _soft_deleted_name(base: str, ident: int, taken: set[str], now: float | None = None) -> str:
    stamp = time.strftime(_SOFT_DELETE_FORMAT, time.gmtime(time.time() if now is None else now))
    name = f"{base}-{stamp}"
    if name in taken:
        name = f"{name}-{ident}"
    return name


class Catalog:
    """Databases, tables, triggers and tokens. ``path`` None keeps everything in memory."""

    def __init__(self, path: Path | None):
        self.path = path
        self.lock = threading.RLock()
        self._dbs: dict[int, DatabaseDef] = {}
        self._by_name: dict[str, int] = {}
        self._next_db_id = 1
        self._triggers: dict[str, dict[str, dict[str, Any]]] = {}  # db name -> trigger name -> record
        self._tokens: list[dict[str, Any]] = []
        self._extra: dict[str, Any] = {}
        self._add_db(DatabaseDef(id=0, name=INTERNAL_DB))
        if path is not None and path.exists():
            self._load()

    # ------------------------------------------------------------------ persistence
    def _load(self) -> None:
        assert self.path is not None
        obj = read_json_file(self.path, dict)
        try:
            self._load_obj(obj)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DamagedFileError(self.path, 0, f"not a catalog: {type(exc).__name__} {exc}") from None

    def _load_obj(self, obj: dict[str, Any]) -> None:
        self._dbs.clear()
        self._by_name.clear()
        for d in obj.get("databases", []):
            self._add_db(DatabaseDef.from_json(d))
        if INTERNAL_DB not in self._by_name:
            self._add_db(DatabaseDef(id=0, name=INTERNAL_DB))
        self._next_db_id = obj.get("next_db_id", max(self._dbs) + 1)
        self._triggers = obj.get("triggers", {})
        self._tokens = obj.get("tokens", [])
        self._extra = obj.get("extra", {})

    def save(self) -> None:
        """Write the catalog atomically (temp file, fsync, rename, fsync dir). No-op in memory."""
        if self.path is None:
            return
        with self.lock:
            obj = {
                "version": 1,
                "next_db_id": self._next_db_id,
                "databases": [d.to_json() for d in self._dbs.values()],
                "triggers": self._triggers,
                "tokens": self._tokens,
                "extra": self._extra,
            }
            data = json.dumps(obj, indent=1, sort_keys=True).encode("utf-8")
            atomic_write(self.path, data)

    def _add_db(self, db: DatabaseDef) -> None:
        self._dbs[db.id] = db
        if not db.deleted:
            self._by_name[db.name] = db.id

    # ------------------------------------------------------------------ databases
    def db_exists(self, db: str) -> bool:
        with self.lock:
            return db in self._by_name

    def get_db(self, name: str) -> DatabaseDef | None:
        """The live database named ``name`` (not a copy: callers hold ``lock`` while reading it)."""
        with self.lock:
            ident = self._by_name.get(name)
            return None if ident is None else self._dbs[ident]

    def db_by_id(self, ident: int) -> DatabaseDef | None:
        with self.lock:
            return self._dbs.get(ident)

    def databases(self, include_deleted: bool = False) -> list[DatabaseDef]:
        with self.lock:
            return [d for d in self._dbs.values() if include_deleted or not d.deleted]

    def live_table_count(self) -> int:
        """Live tables of live user databases: what the table limit counts (``_internal`` and soft-deleted
        databases and tables excluded; influxdb3_catalog v3 ``current_usage``)."""
        with self.lock:
            return sum(len(d.tables) for d in self._dbs.values() if not d.deleted and d.name != INTERNAL_DB)

    def _user_db_count(self) -> int:
        return sum(1 for d in self._dbs.values() if not d.deleted and d.name != INTERNAL_DB)

    def create_database(self, name: str, retention_period: str | None = None, *, exist_ok: bool = False) -> DatabaseDef:
        """Create a database. Raises 409 if it exists (unless ``exist_ok``), 422 past the limit."""
        with self.lock:
            existing = self.get_db(name)
            if existing is not None:
                if exist_ok:
                    return existing
                raise already_exists()
            if self._user_db_count() >= NUM_DBS_LIMIT:
                raise json_error(422, too_many_dbs_text())
            db = DatabaseDef(id=self._next_db_id, name=name, retention_period=retention_period)
            self._next_db_id += 1
            self._add_db(db)
            self.save()
            return db

    def set_retention(self, name: str, retention_period: str | None) -> None:
        with self.lock:
            db = self._require_db(name)
            db.retention_period = retention_period
            self.save()

    def soft_delete_database(self, name: str, hard_delete_at: str | None = None) -> DatabaseDef:
        with self.lock:
            if name == INTERNAL_DB:
                raise text_error(500, "cannot delete internal db")
            db = self._require_db(name)
            taken = {d.name for d in self._dbs.values()}
            del self._by_name[name]
            db.name = _soft_deleted_name(name, db.id, taken)
            db.deleted = True
            db.hard_delete_at = hard_delete_at
            self._triggers.pop(name, None)
            self.save()
            return db

    def deleted_db(self, name: str) -> DatabaseDef | None:
        """The soft-deleted database now named ``name`` (``<db>-<time>``), if any."""
        with self.lock:
            return next((d for d in self._dbs.values() if d.deleted and d.name == name), None)

    def reschedule_deleted_db(self, name: str, hard_delete_at: str | None) -> bool:
        """Set a new hard-deletion time on the soft-deleted database ``name``; False when there is none or
        the time is unchanged (the caller then answers as for any deleted database)."""
        with self.lock:
            db = self.deleted_db(name)
            if db is None or db.hard_delete_at == hard_delete_at:
                return False
            db.hard_delete_at = hard_delete_at
            self.save()
            return True

    def _require_db(self, name: str) -> DatabaseDef:
        """The live database ``name``; 409 ``attempted to modify resource that was already deleted: <name>``
        for a soft-deleted one (influxdb3_catalog v3 ``require_active_db``, CatalogError ``AlreadyDeleted``
        answered 409 by the server), else 404."""
        db = self.get_db(name)
        if db is None:
            if self.deleted_db(name) is not None:
                raise already_deleted(name)
            raise not_found(name)
        return db

    # ------------------------------------------------------------------ tables
    def table_schema(self, db: str, table: str) -> dict[str, Any] | None:
        with self.lock:
            d = self.get_db(db)
            t = None if d is None else d.tables.get(table)
            if t is None:
                return None
            return {"tags": list(t.tags), "fields": dict(t.fields)}

    def get_table(self, db: str, table: str) -> TableDef | None:
        with self.lock:
            d = self.get_db(db)
            return None if d is None else d.tables.get(table)

    def new_table(self, db: DatabaseDef, name: str) -> TableDef:
        """Add an empty table to ``db`` (limit checked); the caller saves."""
        with self.lock:
            current = self.live_table_count()
            if current >= NUM_TABLES_LIMIT:
                raise SchemaError(too_many_tables_text(current))
            t = TableDef(id=db.next_table_id, name=name)
            db.next_table_id += 1
            db.tables[name] = t
            return t

    def create_table(self, db_name: str, table: str, tags: list[str], fields: list[tuple[str, str]]) -> TableDef:
        """The configure/table route: auto-creates the db; 409 if the table exists."""
        with self.lock:
            db = self.create_database(db_name, exist_ok=True)
            if table in db.tables:
                raise already_exists()
            names = list(tags) + [n for n, _ in fields]
            if len(set(names)) != len(names) or TIME_COLUMN in names:
                dup = next((n for n in names if n == TIME_COLUMN or names.count(n) > 1), "")
                raise text_error(400, f"'{dup}' is a reserved column" if dup == TIME_COLUMN
                                 else f"duplicate column name: {dup}")
            if len(names) > NUM_COLUMNS_PER_TABLE_LIMIT:  # ``time`` is not counted
                raise json_error(422, too_many_columns_text())
            try:
                t = self.new_table(db, table)
            except SchemaError as e:
                raise json_error(422, e.message) from None
            t.tags.extend(tags)
            for n, ftype in fields:
                t.fields[n] = ftype
            t.version += 1
            self.save()
            return t

    def soft_delete_table(self, db_name: str, table: str, hard_delete_at: str | None = None) -> TableDef:
        """Soft delete a table (renamed ``<table>-<time>``). Errors as the v3 catalog's ``active_table``
        (influxdb3_catalog ``ops/mod.rs`` @v3.10.1): ``_internal`` 500 ``cannot modify internal db``; unknown
        database 404 ``Database not found <db>``; unknown table 404 ``Table <t> not in DB schema for <db>``; a
        soft-deleted database or table (under its new name) 409 ``attempted to modify resource that was
        already deleted: <name>``."""
        with self.lock:
            if db_name == INTERNAL_DB:
                raise text_error(500, "cannot modify internal db")
            db = self.get_db(db_name)
            if db is None:
                if self.deleted_db(db_name) is not None:
                    raise already_deleted(db_name)
                raise text_error(404, f"Database not found {db_name}")
            t = db.tables.get(table)
            if t is None:
                if table in db.deleted_tables:
                    raise already_deleted(table)
                raise text_error(404, f"Table {table} not in DB schema for {db_name}")
            taken = set(db.tables) | set(db.deleted_tables)
            del db.tables[table]
            t.name = _soft_deleted_name(table, t.id, taken)
            t.deleted = True
            t.hard_delete_at = hard_delete_at
            db.deleted_tables[t.name] = t
            self.save()
            return t

    # ------------------------------------------------------------------ triggers (opaque records)
    def put_trigger(self, db: str, name: str, record: dict[str, Any]) -> None:
        with self.lock:
            self._triggers.setdefault(db, {})[name] = copy.deepcopy(record)
            self.save()

    def get_trigger(self, db: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            rec = self._triggers.get(db, {}).get(name)
            return None if rec is None else copy.deepcopy(rec)

    def delete_trigger(self, db: str, name: str) -> None:
        with self.lock:
            triggers = self._triggers.get(db, {})
            if triggers.pop(name, None) is not None:
                self.save()

    def list_triggers(self, db: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
        with self.lock:
            out = []
            for dbn, triggers in self._triggers.items():
                if db is not None and dbn != db:
                    continue
                for name, rec in triggers.items():
                    out.append((dbn, name, copy.deepcopy(rec)))
            return out

    # ------------------------------------------------------------------ tokens (opaque records)
    def put_token(self, record: dict[str, Any]) -> None:
        """Insert or replace (by ``name``) a token record; only hashes belong in it."""
        with self.lock:
            self._tokens = [t for t in self._tokens if t.get("name") != record.get("name")]
            self._tokens.append(copy.deepcopy(record))
            self.save()

    def get_token_by_hash(self, sha512_hex: str) -> dict[str, Any] | None:
        with self.lock:
            for t in self._tokens:
                if t.get("hash") == sha512_hex:
                    return copy.deepcopy(t)
            return None

    def list_tokens(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self._tokens)

    def delete_token(self, name: str) -> None:
        with self.lock:
            before = len(self._tokens)
            self._tokens = [t for t in self._tokens if t.get("name") != name]
            if len(self._tokens) != before:
                self.save()

    # ------------------------------------------------------------------ misc persisted state
    def get_extra(self, key: str, default: Any = None) -> Any:
        with self.lock:
            return copy.deepcopy(self._extra.get(key, default))

    def put_extra(self, key: str, value: Any) -> None:
        with self.lock:
            self._extra[key] = copy.deepcopy(value)
            self.save()


def read_json_file(path: Path, kind: type = dict) -> Any:
    """The JSON value in ``path``; raises :class:`DamagedFileError` with the byte offset where it stops
    being valid UTF-8 JSON of type ``kind`` (a truncated or overwritten file; they are written atomically,
    so their contents were acknowledged)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DamagedFileError(path, exc.start, "not UTF-8") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        offset = len(text[: exc.pos].encode("utf-8"))
        reason = "file is empty" if not data else f"invalid JSON: {exc.msg}; the file has {len(data)} bytes"
        raise DamagedFileError(path, offset, reason) from None
    if not isinstance(obj, kind):
        raise DamagedFileError(path, 0, f"not a JSON {'object' if kind is dict else kind.__name__}")
    return obj


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file, fsync it, rename over, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = [
    "ApiError",
    "COLUMN_TYPE_NAMES",
    "Catalog",
    "DatabaseDef",
    "FIELD_TYPES",
    "INTERNAL_DB",
    "SchemaError",
    "TableDef",
    "atomic_write",
    "db_name_error",
    "invalid_column_type_text",
    "validate_db_name",
]
