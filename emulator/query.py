"""SQL over a database's tables with DataFusion, as InfluxDB 3 Core plans it.

Each query gets a fresh ``SessionContext`` with default catalog/schema ``public.iox`` and the
information schema on, so a missing table reads ``Error during planning: table 'public.iox.x' not
found`` exactly as the server says. Every live table is registered from its cached Arrow table (no
copy); a ``system`` schema holds the tables registered through :meth:`QueryRunner.register_system_table`.

Errors keep DataFusion's text (the Python binding's ``DataFusion error: `` wrapper prefix removed) and
are classified by their prefix: planning/schema/SQL errors are ``plan`` (HTTP 400), ``This feature is
not implemented`` is ``not_implemented`` (405), anything else ``execution`` (500).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from datafusion import RuntimeEnvBuilder, SessionConfig, SessionContext, SQLOptions
from datafusion.catalog import Schema

from emulator import sqlfuncs
from emulator.errors import QueryError

log = logging.getLogger(__name__)

SystemTableProvider = Callable[[str], pa.Table | None]

_PY_PREFIX = "DataFusion error: "
_PLAN_PREFIXES = ("Error during planning", "Schema error", "SQL error", "Invalid or Unsupported Configuration")
_NOT_IMPLEMENTED_PREFIX = "This feature is not implemented"
#: statements that list tables, for which every system table must be registered
_DISCOVERY = re.compile(r"information_schema|\bshow\b", re.IGNORECASE)


def classify_error(message: str) -> QueryError:
    """Turn a DataFusion exception text into a :class:`QueryError` with the server's kind."""
    if message.startswith(_PY_PREFIX):
        message = message[len(_PY_PREFIX):]
    # a context chain ("type_coercion\ncaused by\nError during planning: …") is classified by its root
    root = message.rsplit("caused by\n", 1)[-1]
    if root.startswith(_NOT_IMPLEMENTED_PREFIX):
        return QueryError(message, "not_implemented")
    if root.startswith(_PLAN_PREFIXES):
        return QueryError(message, "plan")
    return QueryError(message, "execution")


#: what stands for NUL in column names while DataFusion holds them (see :func:`_ffi_safe`)
_NUL_STAND_IN = "\U0010fffe"
#: DataFusion refuses these (the server's planner does the same: DataFusion's ``SQLOptions`` with DDL, DML
#: and statements off, ``iox_query/src/exec/context.rs`` ``sql_to_logical_plan``): COPY, INSERT, DELETE,
#: UPDATE, CREATE/DROP TABLE/VIEW/EXTERNAL TABLE/SCHEMA, SET, PREPARE... answer
#: ``Error during planning: DDL not supported: CreateMemoryTable`` and the like (HTTP 400)
_SQL_OPTIONS = SQLOptions().with_allow_ddl(False).with_allow_dml(False).with_allow_statements(False)


def quote_ident(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (``"`` doubled): DataFusion takes it as one exact,
    case-kept name, so ``M`` beside ``m`` and ``a.b`` (no schema ``a``) are tables of their own."""
    return '"' + name.replace('"', '""') + '"'


def _ffi_safe(table: pa.Table) -> pa.Table:
    """``table`` with NUL in column names replaced by :data:`_NUL_STAND_IN`. Arrow's C data interface, which
    hands tables to DataFusion, carries names as NUL-terminated strings, so ``v\x00`` arrives as ``v``
    (a duplicate of the field ``v``). The server's parser accepts NUL in tag and field keys
    (influxdb_line_protocol ``parse_where_nulls_accepted``) and its Rust planner keeps them."""
    names = table.column_names
    if not any("\x00" in n for n in names):
        return table
    return table.rename_columns([n.replace("\x00", _NUL_STAND_IN) for n in names])


#: the server's ``--exec-mem-pool-bytes`` default (influxdb3 ``commands/serve.rs``, 3.x: ``20%``)
DEFAULT_EXEC_MEM_POOL_PERCENT = 20


def total_memory_bytes() -> int:
    """The memory this process may use, in bytes: its cgroup's limit (v2 ``memory.max`` or v1
    ``memory.limit_in_bytes``) when lower than the machine's RAM, else the RAM. The server sizes percentages
    the same way (clap_blocks ``memory_size.rs`` ``total_mem_bytes``)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    return total


def default_exec_mem_pool_bytes() -> int:
    """The server's default query memory pool: 20% of :func:`total_memory_bytes`."""
    return total_memory_bytes() * DEFAULT_EXEC_MEM_POOL_PERCENT // 100


def _session(pool_bytes: int | None = None) -> SessionContext:
    """A fresh session as the server's: default catalog ``public``, schema ``iox``, information_schema on;
    with ``pool_bytes``, DataFusion's fair spill memory pool of that size (the server's executor runs every
    query under one pool of ``--exec-mem-pool-bytes``, ``iox_query`` ``exec.rs``; here each session has
    its own), so a sort or join past it fails with DataFusion's ``Resources exhausted: ...``."""
    config = SessionConfig().with_default_catalog_and_schema("public", "iox").with_information_schema(True)
    if pool_bytes is None:
        return SessionContext(config)
    return SessionContext(config, RuntimeEnvBuilder().with_fair_spill_pool(pool_bytes))


def _table_ident(name: str) -> str:
    """A live table's name as registered: quoted, so one table's name never breaks another's; NUL (a name the
    HTTP table API accepts) under its stand-in, as the statement's text is rewritten."""
    return quote_ident(name.replace("\x00", _NUL_STAND_IN))


def _register_schemas(ctx: SessionContext, tables: Mapping[str, Callable[[], pa.Table]]) -> None:
    """Register every live table with its schema and no rows (what planning alone needs)."""
    for name, get in tables.items():
        _register(ctx, _table_ident(name), get_schema_only(get))


def _register(ctx: SessionContext, name: str, table: pa.Table) -> None:
    table = _ffi_safe(table)
    batches = table.to_batches()
    if not batches:
        batches = [pa.RecordBatch.from_pylist([], schema=table.schema)]
    ctx.register_record_batches(name, [batches])


_SHOW_TABLES = re.compile(r"\s*show\s+tables\s*;?\s*", re.IGNORECASE)
#: the server lists tables sorted by name within ``iox`` then ``system``, then DataFusion's
#: information_schema views in its own order (query.rs ``api_v3_query_show_tables_ordering`` snapshot);
#: DataFusion's in-memory schemas here list in hash order, so SHOW TABLES is planned with that order
_SHOW_TABLES_SQL = (
    "SELECT table_catalog, table_schema, table_name, table_type FROM information_schema.tables ORDER BY "
    "CASE table_schema WHEN 'iox' THEN 0 WHEN 'system' THEN 1 ELSE 2 END, "
    "CASE WHEN table_schema = 'information_schema' THEN CASE table_name WHEN 'tables' THEN 0 "
    "WHEN 'views' THEN 1 WHEN 'columns' THEN 2 WHEN 'df_settings' THEN 3 WHEN 'schemata' THEN 4 "
    "WHEN 'routines' THEN 5 WHEN 'parameters' THEN 6 ELSE 7 END ELSE 0 END, table_name"
)


#: DataFusion's information_schema views, listed as the server's Flight SQL GetTables lists them (they are
#: "virtual" in DataFusion, so not in the catalog's own table list; flightsql ``planner.rs`` ``plan_get_tables``)
INFORMATION_SCHEMA_VIEWS = ("columns", "df_settings", "parameters", "routines", "tables", "views", "schemata")
_TABLE_KINDS = {"physical": "BASE TABLE", "view": "VIEW", "temporary": "LOCAL TEMPORARY"}


@dataclass(frozen=True)
class SqlTableInfo:
    """One table a database's SQL sees: ``catalog``.``schema``.``name``, its DataFusion table type
    (``BASE TABLE``, ``VIEW`` or ``LOCAL TEMPORARY``) and its Arrow schema."""

    catalog: str
    schema: str
    name: str
    table_type: str
    arrow_schema: pa.Schema


@dataclass(frozen=True)
class SqlObjects:
    """What a database's SQL session holds: catalog names, ``(catalog, schema)`` pairs (the virtual
    ``information_schema`` first in each catalog, then the catalog's own schemas, sorted) and tables."""

    catalogs: list[str]
    schemas: list[tuple[str, str]]
    tables: list[SqlTableInfo]


class QueryRunner:
    """Builds a session per query over tables supplied by the caller, plus the system tables.

    ``exec_mem_pool_bytes`` (bytes; default :func:`default_exec_mem_pool_bytes`, as the server's
    ``--exec-mem-pool-bytes``) sizes each session's DataFusion memory pool and also bounds the Arrow bytes
    of one materialised result (emulator only: the server streams results; see ``sqlfuncs.collect``)."""

    def __init__(self, exec_mem_pool_bytes: int | None = None) -> None:
        self._system: dict[str, SystemTableProvider] = {}
        self._lock = threading.Lock()
        self.exec_mem_pool_bytes = (default_exec_mem_pool_bytes() if exec_mem_pool_bytes is None
                                    else exec_mem_pool_bytes)

    def register_system_table(self, name: str, provider: SystemTableProvider) -> None:
        """Add ``system.<name>``; ``provider(db)`` returns its rows for the queried database, or None where
        the table does not exist (e.g. ``_internal``-only tables)."""
        with self._lock:
            self._system[name] = provider

    def system_tables(self) -> dict[str, SystemTableProvider]:
        with self._lock:
            return dict(self._system)

    def run(self, db: str, tables: Mapping[str, Callable[[], pa.Table]], sql: str,
            params: Mapping[str, Any] | None = None, *, schema_only: bool = False,
            cancelled: Callable[[], bool] | None = None) -> pa.Table:
        """Execute ``sql``. ``tables`` maps each live table name to a function giving its Arrow data;
        a table is materialised only when the statement may reference it. ``schema_only`` plans the
        statement without running it and returns an empty table with the result's schema (Flight SQL
        GetFlightInfo); planning errors are the same. ``cancelled``: polled between result batches; once
        it returns true the query stops with a :class:`QueryError` (kind ``execution``).

        A result over :attr:`exec_mem_pool_bytes` Arrow bytes raises :class:`QueryError` (``execution``,
        ``Resources exhausted: ...``)."""
        ctx = _session(self.exec_mem_pool_bytes)
        lowered = sql.lower()
        discovery = bool(_DISCOVERY.search(sql))
        for name, get in tables.items():
            ident = _table_ident(name)
            if discovery or name.lower() in lowered or name.replace('"', '""').lower() in lowered:
                _register(ctx, ident, get())
            else:
                # not named in the statement: an empty stand-in keeps planning errors identical
                _register(ctx, ident, get_schema_only(get))
        self._register_system(ctx, db, lowered, discovery)
        if _SHOW_TABLES.fullmatch(sql):
            sql = _SHOW_TABLES_SQL
        try:
            # the server's own functions (selectors, tz, gap filling, ...) join DataFusion's here
            limits = sqlfuncs.ResultLimits(self.exec_mem_pool_bytes, cancelled)
            result = sqlfuncs.execute(ctx, sql.replace("\x00", _NUL_STAND_IN), _SQL_OPTIONS, params,
                                      schema_only=schema_only, limits=limits)
        except Exception as exc:  # DataFusion raises ValueError/Exception with its own text
            raise classify_error(str(exc).replace(_NUL_STAND_IN, "\x00")) from None
        return _restore_nul(result, discovery)

    def objects(self, db: str, tables: Mapping[str, Callable[[], pa.Table]]) -> SqlObjects:
        """The catalogs, schemas and tables a query on ``db`` sees (data not read: schemas only), for Flight
        SQL's metadata commands. Tables of the catalog's schemas come with DataFusion's table type; the
        information_schema views, which DataFusion does not list in the catalog, are added as ``VIEW`` with
        the schema a ``SELECT *`` on them has (flightsql ``planner.rs`` ``plan_get_tables``)."""
        ctx = _session()
        _register_schemas(ctx, tables)
        self._register_system(ctx, db, "", True)
        catalogs = sorted(ctx.catalog_names())
        schemas: list[tuple[str, str]] = []
        infos: list[SqlTableInfo] = []
        for catalog_name in catalogs:
            catalog = ctx.catalog(catalog_name)
            schemas.append((catalog_name, "information_schema"))
            for view in INFORMATION_SCHEMA_VIEWS:
                try:
                    view_schema = ctx.sql(f"SELECT * FROM {quote_ident(catalog_name)}.information_schema.{view}").schema()
                except Exception:  # a view this DataFusion lacks is left out, as the server does
                    continue
                infos.append(SqlTableInfo(catalog_name, "information_schema", view, "VIEW", view_schema))
            for schema_name in sorted(catalog.schema_names()):
                schemas.append((catalog_name, schema_name))
                provider = catalog.schema(schema_name)
                for table_name in sorted(provider.table_names()):
                    table = provider.table(table_name)
                    arrow = table.schema
                    if any(_NUL_STAND_IN in n for n in arrow.names):
                        arrow = pa.schema([f.with_name(f.name.replace(_NUL_STAND_IN, "\x00")) for f in arrow])
                    infos.append(SqlTableInfo(catalog_name, schema_name, table_name.replace(_NUL_STAND_IN, "\x00"),
                                              _TABLE_KINDS.get(table.kind, "BASE TABLE"), arrow))
        return SqlObjects(catalogs, schemas, infos)

    def parameter_types(self, db: str, tables: Mapping[str, Callable[[], pa.Table]],
                        sql: str) -> dict[str, pa.DataType | None] | None:
        """The placeholders of ``sql`` (``$1``, ``$name``) with the type DataFusion's planner inferred for each
        (None where it inferred none), ordered by number, then name; None when the statement cannot be
        planned here without the server's extra functions (the caller then knows no types). The server builds
        a prepared statement's parameter schema from the same inference (``LogicalPlan::get_parameter_types``,
        flightsql ``planner.rs`` ``get_parameter_schema_for_plan``)."""
        ctx = _session()
        _register_schemas(ctx, tables)
        self._register_system(ctx, db, sql.lower(), bool(_DISCOVERY.search(sql)))
        try:
            plan = ctx.sql_with_options(sql.replace("\x00", _NUL_STAND_IN), _SQL_OPTIONS).logical_plan()
            found: dict[str, pa.DataType | None] = {}
            _plan_placeholders(plan, found, 0)
        except Exception:
            return None
        return dict(sorted(found.items(), key=lambda kv: _placeholder_order(kv[0])))

    def _register_system(self, ctx: SessionContext, db: str, lowered: str, discovery: bool) -> None:
        providers = self.system_tables()
        if not providers:
            return
        ctx.catalog("public").register_schema("system", Schema.memory_schema())
        for name, provider in providers.items():
            if not (discovery or name.lower() in lowered):
                continue
            try:
                table = provider(db)
            except Exception:
                log.exception("system table provider %s failed", name)
                raise
            if table is not None:  # None: the table does not exist in this database
                _register(ctx, f"system.{name}", table)


def _restore_nul(table: pa.Table, discovery: bool) -> pa.Table:
    """Undo :func:`_ffi_safe` in result column names (and, for SHOW/information_schema, in their values)."""
    names = table.column_names
    if any(_NUL_STAND_IN in n for n in names):
        table = table.rename_columns([n.replace(_NUL_STAND_IN, "\x00") for n in names])
    if discovery:
        for i, col in enumerate(table.columns):
            if pa.types.is_string(col.type) and pc.any(pc.match_substring(col, _NUL_STAND_IN)).as_py():
                fixed = pc.replace_substring(col, _NUL_STAND_IN, "\x00")
                table = table.set_column(i, table.field(i), fixed)
    return table


def get_schema_only(get: Callable[[], pa.Table]) -> pa.Table:
    """The empty table with ``get``'s schema; uses the schema hint when the getter offers one."""
    schema_fn = getattr(get, "schema", None)
    if callable(schema_fn):
        return schema_fn().empty_table()
    return get().schema.empty_table()


_CAST_LOCK = threading.Lock()
_CAST_CACHE: dict[tuple[str, str], bool] = {}


def castable(pairs: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
    """Whether DataFusion casts a value of the first Arrow type to the second, for each pair of type names
    as ``arrow_cast`` spells them (``Int64``, ``Interval(DayTime)``, ``Timestamp(Nanosecond, None)``...);
    found by running the cast on a typed NULL, once per process. Backs Flight SQL's ``SQL_SUPPORTS_CONVERT``,
    which the server derives from arrow's ``can_cast_types`` (flightsql ``sql_info/meta.rs``)."""
    with _CAST_LOCK:
        missing = [p for p in pairs if p not in _CAST_CACHE]
        if missing:
            ctx = SessionContext()
            for src, dst in missing:
                try:
                    ctx.sql(f"SELECT arrow_cast(arrow_cast(NULL, '{src}'), '{dst}')").collect()
                    _CAST_CACHE[(src, dst)] = True
                except Exception:
                    _CAST_CACHE[(src, dst)] = False
        return {p: _CAST_CACHE[p] for p in pairs}


#: expression kinds without sub-expressions (the walk stops there)
_LEAF_EXPRS = frozenset({"Column", "Literal", "ScalarVariable", "Wildcard", "OuterReferenceColumn"})
#: LogicalPlan node accessors that never hold expressions of the node itself
_NOT_EXPRS = frozenset({"input", "inputs", "schema", "to_variant", "subquery"})
_MAX_DEPTH = 200


def _placeholder_order(name: str) -> tuple[int, int, str]:
    digits = name[1:]
    return (0, int(digits), "") if digits.isdigit() else (1, 0, name)


def _plan_placeholders(plan: Any, found: dict[str, pa.DataType | None], depth: int) -> None:
    """Collect the placeholders of a DataFusion ``LogicalPlan`` (Python binding) with their inferred types:
    each node's expressions (whatever its accessors return) and its inputs, recursively."""
    if depth > _MAX_DEPTH:
        return
    node = plan.to_variant()
    for attr in dir(node):
        if attr.startswith("_") or attr in _NOT_EXPRS:
            continue
        try:
            value = getattr(node, attr)()
        except Exception:
            continue
        for item in value if isinstance(value, list | tuple) else (value,):
            expr = item.expr() if not hasattr(item, "variant_name") and callable(getattr(item, "expr", None)) \
                else item
            if hasattr(expr, "variant_name"):
                _expr_placeholders(expr, found, 0)
    for child in plan.inputs():
        _plan_placeholders(child, found, depth + 1)


def _expr_placeholders(expr: Any, found: dict[str, pa.DataType | None], depth: int) -> None:
    kind = expr.variant_name()
    if kind == "Placeholder":
        placeholder = expr.to_variant()
        field = placeholder.field()
        name = placeholder.id()
        if found.get(name) is None:
            found[name] = field.type if field is not None else None
        return
    if kind in _LEAF_EXPRS or depth > _MAX_DEPTH:
        return
    try:
        operands = expr.rex_call_operands()
    except Exception:
        return
    for operand in operands:
        _expr_placeholders(operand, found, depth + 1)
