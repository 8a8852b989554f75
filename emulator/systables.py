"""The engine's own system tables, as InfluxDB 3 Core registers them (influxdb3_system_tables @v3.10.1).

Every database (``_internal`` included) has ``system.queries``, ``last_caches``, ``distinct_caches``,
``parquet_files`` and ``influxdb_schema`` (the processing engine adds its ``processing_engine_*`` tables);
``_internal`` alone has ``databases``, ``tables``, ``nodes``, ``generation_durations`` and ``tokens``
(and ``plugin_files``, from the processing engine). Column names, order, types and nullability follow the
server's schemas (``Utf8View`` where the server has it, so information_schema shows the same types).

Caches are not implemented, so ``last_caches`` and ``distinct_caches`` are always empty; every table has the
schema the server gives it. This module is core: it imports no transport.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

INTERNAL_DB = "_internal"
#: how many finished queries ``system.queries`` keeps (the server's query log holds a bounded number too)
QUERY_LOG_SIZE = 1_000

_S = pa.string()  # the server's Utf8 columns (queries, parquet_files)
_V = pa.string_view()  # the server's Utf8View columns (the catalog-backed tables)
_U16_LIST = pa.list_(pa.field("item", pa.uint16()))
_STR_LIST = pa.list_(pa.field("item", _V))
_DURATION = pa.duration("ns")

QUERIES_SCHEMA = pa.schema([
    pa.field("id", _S, False), pa.field("phase", _S, False),
    pa.field("issue_time", pa.timestamp("ns"), False), pa.field("query_type", _S, False),
    pa.field("query_text", _S, False), pa.field("partitions", pa.int64()), pa.field("parquet_files", pa.int64()),
    pa.field("plan_duration", _DURATION), pa.field("permit_duration", _DURATION),
    pa.field("execute_duration", _DURATION), pa.field("end2end_duration", _DURATION),
    pa.field("compute_duration", _DURATION), pa.field("max_memory", pa.int64()),
    pa.field("success", pa.bool_(), False), pa.field("running", pa.bool_(), False),
    pa.field("cancelled", pa.bool_(), False), pa.field("trace_id", _S),
])
LAST_CACHES_SCHEMA = pa.schema([
    pa.field("table", _V, False), pa.field("name", _V, False),
    pa.field("key_column_ids", _U16_LIST, False), pa.field("key_column_names", _STR_LIST, False),
    pa.field("value_column_ids", _U16_LIST), pa.field("value_column_names", _STR_LIST),
    pa.field("count", pa.uint64(), False), pa.field("ttl", pa.uint64(), False),
])
DISTINCT_CACHES_SCHEMA = pa.schema([
    pa.field("table", _V, False), pa.field("name", _V, False),
    pa.field("column_ids", _U16_LIST, False), pa.field("column_names", _STR_LIST, False),
    pa.field("max_cardinality", pa.uint64(), False), pa.field("max_age_seconds", pa.uint64(), False),
])
PARQUET_FILES_SCHEMA = pa.schema([
    pa.field("table_name", _S, False), pa.field("path", _S, False), pa.field("size_bytes", pa.uint64(), False),
    pa.field("row_count", pa.uint64(), False), pa.field("min_time", pa.int64(), False),
    pa.field("max_time", pa.int64(), False),
])
INFLUXDB_SCHEMA_SCHEMA = pa.schema([
    pa.field("measurement", _V, False), pa.field("key", _V, False), pa.field("data_type", _V, False),
])
_DELETION_TIME = pa.timestamp("s", tz="UTC")
DATABASES_SCHEMA = pa.schema([
    pa.field("database_name", _V, False), pa.field("retention_period_ns", pa.uint64()),
    pa.field("deleted", pa.bool_(), False), pa.field("hard_deletion_time", _DELETION_TIME),
])
TABLES_SCHEMA = pa.schema([
    pa.field("database_name", _V, False), pa.field("table_name", _V, False),
    pa.field("column_count", pa.uint64(), False), pa.field("series_key_columns", _V, False),
    pa.field("last_cache_count", pa.uint64(), False), pa.field("distinct_cache_count", pa.uint64(), False),
    pa.field("deleted", pa.bool_(), False), pa.field("hard_deletion_time", _DELETION_TIME),
])
NODES_SCHEMA = pa.schema([
    pa.field("node_id", _V, False), pa.field("node_catalog_id", pa.uint32(), False),
    pa.field("instance_id", _V, False), pa.field("mode", _STR_LIST, False),
    pa.field("core_count", pa.uint64(), False), pa.field("state", _V, False),
    pa.field("updated_at", pa.timestamp("ms")), pa.field("cli_params", _V),
])
GENERATION_DURATIONS_SCHEMA = pa.schema([
    pa.field("level", pa.uint8(), False), pa.field("duration_seconds", pa.uint64(), False),
])
_TOKEN_FIELDS = [
    pa.field("token_id", pa.uint64(), False), pa.field("name", _V, False), pa.field("hash", _V, False),
    pa.field("created_at", pa.timestamp("ms"), False), pa.field("description", _V),
    pa.field("created_by_token_id", pa.uint64()), pa.field("updated_at", pa.timestamp("ms")),
    pa.field("updated_by_token_id", pa.uint64()), pa.field("expiry", pa.timestamp("ms")),
    pa.field("permissions", _V, False),
]
#: influxdb_schema's data_type words (influxdb3_system_tables ``column_type_to_influxdb_type``)
INFLUX_TYPE_WORDS = {"tag": "tag", "time": "time", "bool": "boolean", "int64": "integer", "uint64": "uinteger",
                     "float64": "float", "utf8": "string"}


#: serve flags whose values ``system.nodes.cli_params`` masks, and name parts that mask any flag
#: (influxdb3 ``commands/serve/cli_params.rs`` ``SENSITIVE_PARAMS``/``SENSITIVE_PATTERNS`` @v3.10.1)
SENSITIVE_PARAMS = frozenset({
    "aws-access-key-id", "aws-secret-access-key", "aws-session-token", "aws-credentials-file", "aws-endpoint",
    "aws-allow-http", "aws-default-region", "aws-skip-signature", "azure-endpoint", "azure-allow-http",
    "azure-storage-account", "azure-storage-access-key", "google-service-account", "tls-key", "tls-cert",
    "without-auth",
})
SENSITIVE_PATTERNS = ("password", "secret", "token", "credential", "auth", "key")
REDACTED = "*******"


def capture_cli_params(params: dict[str, str]) -> dict[str, str]:
    """``params`` (serve flag name without dashes -> value) with sensitive values shown as ``*******``."""
    def sensitive(name: str) -> bool:
        return name in SENSITIVE_PARAMS or any(p in name.lower() for p in SENSITIVE_PATTERNS)

    return {k: (REDACTED if sensitive(k) else v) for k, v in params.items()}


@dataclass
class QueryLogEntry:
    """One query as ``system.queries`` shows it."""

    id: str
    issue_time_ns: int
    query_type: str
    query_text: str
    phase: str = "received"
    end2end_ns: int | None = None
    success: bool = False
    running: bool = True


class QueryLog:
    """A bounded log of the queries the engine ran (newest last); thread-safe."""

    def __init__(self, size: int = QUERY_LOG_SIZE) -> None:
        self._entries: deque[QueryLogEntry] = deque(maxlen=size)
        self._lock = threading.Lock()

    def start(self, query_type: str, text: str) -> QueryLogEntry:
        """A new entry in phase ``received``, shown as running (the server records a query before planning
        it, and the query sees itself while it plans and runs)."""
        entry = QueryLogEntry(str(uuid.uuid4()), time.time_ns(), query_type, text)
        with self._lock:
            self._entries.append(entry)
        return entry

    def finish(self, entry: QueryLogEntry, success: bool) -> None:
        """Record ``entry`` as finished (phase ``success`` or ``fail``), moved to the newest end."""
        entry.end2end_ns = time.time_ns() - entry.issue_time_ns
        entry.phase = "success" if success else "fail"
        entry.success = success
        entry.running = False
        with self._lock:
            try:
                self._entries.remove(entry)
            except ValueError:  # pushed out by newer entries while it ran
                pass
            self._entries.append(entry)

    def snapshot(self) -> list[QueryLogEntry]:
        """The entries, oldest first."""
        with self._lock:
            return list(self._entries)


def queries_table(log: QueryLog) -> pa.Table:
    """``system.queries`` rows (:data:`QUERIES_SCHEMA`) from the query log; timings other than end2end are null."""
    rows = log.snapshot()
    return pa.table({
        "id": [e.id for e in rows], "phase": [e.phase for e in rows],
        "issue_time": [e.issue_time_ns for e in rows], "query_type": [e.query_type for e in rows],
        "query_text": [e.query_text for e in rows], "partitions": [None] * len(rows),
        "parquet_files": [None] * len(rows), "plan_duration": [None] * len(rows),
        "permit_duration": [None] * len(rows), "execute_duration": [None] * len(rows),
        "end2end_duration": [e.end2end_ns for e in rows], "compute_duration": [None] * len(rows),
        "max_memory": [None] * len(rows), "success": [e.success for e in rows],
        "running": [e.running for e in rows], "cancelled": [False] * len(rows), "trace_id": [None] * len(rows),
    }, schema=QUERIES_SCHEMA)


def _deletion_seconds(text: str | None) -> int | None:
    """A stored hard-deletion time (RFC 3339, UTC) as epoch seconds; None when never or unreadable."""
    if not text:
        return None
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def _retention_ns(text: str | None, parse: Callable[[str], int]) -> int | None:
    if not text:
        return None
    try:
        return parse(text)
    except ValueError:
        return None


def _columns(tdef: Any) -> list[tuple[str, str]]:
    """``(name, kind)`` of a table's columns in catalog order: tags, fields, then ``time``."""
    return [(t, "tag") for t in tdef.tags] + list(tdef.fields.items()) + [("time", "time")]


class CoreSystemTables:
    """Builds the engine's system tables from its catalog, storage and query log.

    ``engine`` is an :class:`emulator.engine.Engine`; ``parse_retention`` turns a stored retention text into
    nanoseconds. Register with :meth:`register`; each provider takes the queried database's name and
    returns None where the server has no such table (the ``_internal``-only ones elsewhere).
    """

    def __init__(self, engine: Any, parse_retention: Callable[[str], int]):
        self.engine = engine
        self.parse_retention = parse_retention

    def register(self, add: Callable[[str, Callable[[str], pa.Table | None]], None]) -> None:
        """Register every table through ``add(name, provider)`` (the engine's ``register_system_table``)."""
        add("queries", lambda db: queries_table(self.engine.query_log))
        add("last_caches", lambda db: LAST_CACHES_SCHEMA.empty_table())
        add("distinct_caches", lambda db: DISTINCT_CACHES_SCHEMA.empty_table())
        add("parquet_files", self.parquet_files)
        add("influxdb_schema", self.influxdb_schema)
        add("databases", self._internal_only(self.databases))
        add("tables", self._internal_only(self.tables))
        add("nodes", self._internal_only(self.nodes))
        add("generation_durations", self._internal_only(self.generation_durations))
        add("tokens", self._internal_only(self.tokens))

    @staticmethod
    def _internal_only(fn: Callable[[], pa.Table]) -> Callable[[str], pa.Table | None]:
        return lambda db: fn() if db == INTERNAL_DB else None

    def parquet_files(self, db: str) -> pa.Table:
        """Snapshot files of ``db``'s live tables (path relative to the data dir)."""
        catalog, storage = self.engine.catalog, self.engine.storage
        rows: dict[str, list[Any]] = {f.name: [] for f in PARQUET_FILES_SCHEMA}
        with catalog.lock:
            d = catalog.get_db(db)
            tables = [] if d is None else [(d.id, t) for t in d.tables.values()]
        for db_id, t in tables:
            for f in storage.snapshot_files(db_id, t.id):
                rows["table_name"].append(t.name)
                rows["path"].append(f"dbs/{db_id}/{t.id}/{f.name}")
                size = 0
                if storage.data_dir is not None:
                    try:
                        size = os.path.getsize(storage.data_dir / "dbs" / str(db_id) / str(t.id) / f.name)
                    except OSError:
                        size = 0
                rows["size_bytes"].append(size)
                rows["row_count"].append(f.rows)
                rows["min_time"].append(f.min_time)
                rows["max_time"].append(f.max_time)
        return pa.table(rows, schema=PARQUET_FILES_SCHEMA)

    def influxdb_schema(self, db: str) -> pa.Table:
        """One row per column of each live table: measurement, key, data_type (tag/time/float/…)."""
        catalog = self.engine.catalog
        rows: dict[str, list[Any]] = {"measurement": [], "key": [], "data_type": []}
        with catalog.lock:
            d = catalog.get_db(db)
            for t in [] if d is None else d.tables.values():
                for name, kind in _columns(t):
                    rows["measurement"].append(t.name)
                    rows["key"].append(name)
                    rows["data_type"].append(INFLUX_TYPE_WORDS.get(kind, kind))
        return pa.table(rows, schema=INFLUXDB_SCHEMA_SCHEMA)

    def databases(self) -> pa.Table:
        """Every database, soft-deleted ones included, in catalog (id) order."""
        rows: dict[str, list[Any]] = {f.name: [] for f in DATABASES_SCHEMA}
        for d in sorted(self.engine.catalog.databases(include_deleted=True), key=lambda d: d.id):
            rows["database_name"].append(d.name)
            rows["retention_period_ns"].append(_retention_ns(d.retention_period, self.parse_retention))
            rows["deleted"].append(bool(d.deleted))
            rows["hard_deletion_time"].append(_deletion_seconds(d.hard_delete_at) if d.deleted else None)
        return pa.table(rows, schema=DATABASES_SCHEMA)

    def tables(self) -> pa.Table:
        """Every table of every database, soft-deleted ones included."""
        rows: dict[str, list[Any]] = {f.name: [] for f in TABLES_SCHEMA}
        catalog = self.engine.catalog
        with catalog.lock:
            for d in sorted(catalog.databases(include_deleted=True), key=lambda d: d.id):
                tables = sorted([*d.tables.values(), *d.deleted_tables.values()], key=lambda t: t.id)
                for t in tables:
                    rows["database_name"].append(d.name)
                    rows["table_name"].append(t.name)
                    rows["column_count"].append(len(t.tags) + len(t.fields) + 1)
                    rows["series_key_columns"].append(", ".join(t.tags))
                    rows["last_cache_count"].append(0)
                    rows["distinct_cache_count"].append(0)
                    rows["deleted"].append(bool(t.deleted))
                    rows["hard_deletion_time"].append(_deletion_seconds(t.hard_delete_at) if t.deleted else None)
        return pa.table(rows, schema=TABLES_SCHEMA)

    def nodes(self) -> pa.Table:
        """This node: id, catalog id 0, a per-process instance id, mode ``core``, running."""
        e = self.engine
        return pa.table({
            "node_id": [e.node_id], "node_catalog_id": [0], "instance_id": [e.instance_id],
            "mode": [["core"]], "core_count": [os.cpu_count() or 1], "state": ["running"],
            "updated_at": [e.started_at_ms],
            "cli_params": [json.dumps(capture_cli_params(e.cli_params), separators=(",", ":")) if e.cli_params else None],
        }, schema=NODES_SCHEMA)

    def generation_durations(self) -> pa.Table:
        """One row: level 1 and the gen1 duration in seconds (``--gen1-duration``)."""
        return pa.table({"level": [1], "duration_seconds": [self.engine.tracker.gen1_duration_ns // 10**9]},
                        schema=GENERATION_DURATIONS_SCHEMA)

    def tokens(self) -> pa.Table:
        """The catalog's tokens; the ``hash`` column (first 9 hex digits) only when tokens exist (auth on)."""
        records = sorted(self.engine.catalog.list_tokens(), key=lambda r: int(r.get("id", 0)))
        with_hash = bool(records)
        fields = [f for f in _TOKEN_FIELDS if with_hash or f.name != "hash"]
        data: dict[str, list[Any]] = {f.name: [] for f in fields}
        for r in records:
            data["token_id"].append(int(r.get("id", 0)))
            data["name"].append(r.get("name", ""))
            if with_hash:
                data["hash"].append(str(r.get("hash", ""))[:9])
            data["created_at"].append(r.get("created_at"))
            data["description"].append(r.get("description"))
            data["created_by_token_id"].append(None)
            data["updated_at"].append(r.get("updated_at"))
            data["updated_by_token_id"].append(None)
            data["expiry"].append(r.get("expiry"))
            data["permissions"].append("*:*:*")
        return pa.table(data, schema=pa.schema(fields))
