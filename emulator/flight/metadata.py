"""Flight SQL metadata commands as the server answers them: GetSqlInfo, GetCatalogs, GetDbSchemas, GetTables,
GetTableTypes, GetPrimaryKeys/GetExportedKeys/GetImportedKeys/GetCrossReference and GetXdbcTypeInfo.

Contract: influxdb3 3.10.1, crate ``flightsql`` (``planner.rs`` ``get_schema`` for GetFlightInfo's schema,
``do_get`` and the ``plan_get_*`` functions for the rows, ``sql_info/`` and ``xdbc_type_info/`` for the fixed
answers) on arrow-flight 57's metadata builders (``arrow-flight/src/sql/metadata/``: filters and ordering),
and ``influxdb3/tests/server/flight.rs`` ``flight`` (GetSqlInfo, GetTables, GetCatalogs answers).

* Catalogs, schemas and tables come from the core (:meth:`emulator.engine.Engine.sql_objects`): catalog
  ``public``; schemas ``information_schema``, ``iox``, ``system``; DataFusion's seven information_schema views
  as ``VIEW``, the database's tables and system tables as ``BASE TABLE`` (``TABLE`` with the gRPC header
  ``x-influxdata-base-table-type: TABLE``).
* Filters as arrow-flight's builders: ``catalog`` is an exact match, the ``*_filter_pattern`` fields SQL
  ``LIKE`` patterns (``%``, ``_``, ``\\`` escapes; case-sensitive), ``table_types`` any of; rows sorted by all
  their name columns. GetTables' ``include_schema`` adds each table's Arrow schema as an IPC message.
* The server has no keys: GetPrimaryKeys/GetExportedKeys/GetImportedKeys/GetCrossReference answer no rows.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

from emulator.flight.protocol import FlightSqlCommand

_S = pa.string()


def _schema(*fields: tuple[str, pa.DataType, bool]) -> pa.Schema:
    return pa.schema([pa.field(name, typ, nullable) for name, typ, nullable in fields])


CATALOGS_SCHEMA = _schema(("catalog_name", _S, False))
DB_SCHEMAS_SCHEMA = _schema(("catalog_name", _S, True), ("db_schema_name", _S, False))
TABLES_SCHEMA = _schema(("catalog_name", _S, True), ("db_schema_name", _S, True), ("table_name", _S, False),
                        ("table_type", _S, False))
TABLES_SCHEMA_WITH_SCHEMA = TABLES_SCHEMA.append(pa.field("table_schema", pa.binary(), False))
TABLE_TYPES_SCHEMA = _schema(("table_type", _S, False))
_KEY_COLUMNS = (("pk_catalog_name", _S, False), ("pk_db_schema_name", _S, False), ("pk_table_name", _S, False),
                ("pk_column_name", _S, False), ("fk_catalog_name", _S, False), ("fk_db_schema_name", _S, False),
                ("fk_table_name", _S, False), ("fk_column_name", _S, False), ("key_sequence", pa.int32(), False),
                ("fk_key_name", _S, False), ("pk_key_name", _S, False), ("update_rule", pa.uint8(), False),
                ("delete_rule", pa.uint8(), False))
#: GetExportedKeys, GetImportedKeys and GetCrossReference share one schema
FOREIGN_KEYS_SCHEMA = _schema(*_KEY_COLUMNS)
PRIMARY_KEYS_SCHEMA = _schema(("catalog_name", _S, False), ("db_schema_name", _S, False), ("table_name", _S, False),
                              ("column_name", _S, False), ("key_name", _S, False), ("key_sequence", pa.int32(), False))
_I32 = pa.int32()
XDBC_TYPE_INFO_SCHEMA = _schema(
    ("type_name", _S, False), ("data_type", _I32, False), ("column_size", _I32, True),
    ("literal_prefix", _S, True), ("literal_suffix", _S, True),
    ("create_params", pa.list_(pa.field("item", _S, False)), True), ("nullable", _I32, False),
    ("case_sensitive", pa.bool_(), False), ("searchable", _I32, False), ("unsigned_attribute", pa.bool_(), True),
    ("fixed_prec_scale", pa.bool_(), False), ("auto_increment", pa.bool_(), True), ("local_type_name", _S, True),
    ("minimum_scale", _I32, True), ("maximum_scale", _I32, True), ("sql_data_type", _I32, False),
    ("datetime_subcode", _I32, True), ("num_prec_radix", _I32, True), ("interval_precision", _I32, True))

#: the dense union of GetSqlInfo's ``value`` (type ids 0-5 in this order)
SQL_INFO_VALUE_TYPE = pa.dense_union([
    pa.field("string_value", _S, False),
    pa.field("bool_value", pa.bool_(), False),
    pa.field("bigint_value", pa.int64(), False),
    pa.field("int32_bitmask", _I32, False),
    pa.field("string_list", pa.list_(pa.field("item", _S, True)), True),
    pa.field("int32_to_int32_list_map",
             pa.map_(pa.field("keys", _I32, False), pa.field("values", pa.list_(pa.field("item", _I32, True)), True)),
             True),
])
SQL_INFO_SCHEMA = _schema(("info_name", pa.uint32(), False), ("value", SQL_INFO_VALUE_TYPE, False))

#: which metadata commands the service answers here, by Flight SQL message name
METADATA_COMMANDS = ("CommandGetSqlInfo", "CommandGetCatalogs", "CommandGetDbSchemas", "CommandGetTables",
                     "CommandGetTableTypes", "CommandGetPrimaryKeys", "CommandGetExportedKeys",
                     "CommandGetImportedKeys", "CommandGetCrossReference", "CommandGetXdbcTypeInfo")

BASE_TABLE_TYPES = ("BASE TABLE", "TABLE")


class BaseTableTypeError(ValueError):
    """A ``x-influxdata-base-table-type`` header other than ``BASE TABLE``/``TABLE``; ``str()`` is the server's text."""


def parse_base_table_type(value: str | None) -> str:
    """The table type GetTables/GetTableTypes give base tables: ``BASE TABLE`` (JDBC's, the default) or ``TABLE``
    (ODBC's), from the ``x-influxdata-base-table-type`` header, case-insensitive (flightsql ``lib.rs``
    ``BaseTableType::from_str``). Raises :class:`BaseTableTypeError`."""
    if value is None:
        return "BASE TABLE"
    if value.upper() in BASE_TABLE_TYPES:
        return value.upper()
    raise BaseTableTypeError(f"Invalid base table type: '{value}'. Valid values are 'BASE TABLE' or 'TABLE'")


def like_pattern(pattern: str) -> re.Pattern[str]:
    """A SQL ``LIKE`` pattern as arrow's ``like`` kernel reads it: ``%`` any run, ``_`` one character,
    ``\\`` escapes the next character; the whole value must match, case-sensitive."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _sorted_table(rows: list[tuple[Any, ...]], schema: pa.Schema, key_columns: int) -> pa.Table:
    rows = sorted(rows, key=lambda r: r[:key_columns])
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
    return pa.table([pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)], schema=schema)


def flight_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with dictionary fields as their value type (metadata kept), as the server describes results
    and parameters in GetFlightInfo and prepared statements (arrow_util ``prepare_schema_for_flight``)."""
    fields = [f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema]
    return pa.schema(fields, metadata=schema.metadata)


def result_schema(command: FlightSqlCommand) -> pa.Schema:
    """The schema GetFlightInfo reports for a metadata command (flightsql ``planner.rs`` ``get_schema``)."""
    name = command.name
    if name == "CommandGetSqlInfo":
        return SQL_INFO_SCHEMA
    if name == "CommandGetCatalogs":
        return CATALOGS_SCHEMA
    if name == "CommandGetDbSchemas":
        return DB_SCHEMAS_SCHEMA
    if name == "CommandGetTables":
        return TABLES_SCHEMA_WITH_SCHEMA if command.args.get("include_schema") else TABLES_SCHEMA
    if name == "CommandGetTableTypes":
        return TABLE_TYPES_SCHEMA
    if name == "CommandGetPrimaryKeys":
        return PRIMARY_KEYS_SCHEMA
    if name in ("CommandGetExportedKeys", "CommandGetImportedKeys", "CommandGetCrossReference"):
        return FOREIGN_KEYS_SCHEMA
    if name == "CommandGetXdbcTypeInfo":
        return XDBC_TYPE_INFO_SCHEMA
    raise ValueError(f"not a metadata command: {name}")


def result_table(command: FlightSqlCommand, objects: Any, base_table_type: str = "BASE TABLE") -> pa.Table:
    """The rows DoGet answers for a metadata command. ``objects`` is the core's
    :class:`emulator.query.SqlObjects` of the database (read for GetCatalogs/GetDbSchemas/GetTables only)."""
    name, a = command.name, command.args
    if name == "CommandGetSqlInfo":
        return sql_info_table(a.get("info", []))
    if name == "CommandGetCatalogs":
        return _sorted_table([(c,) for c in objects.catalogs], CATALOGS_SCHEMA, 1)
    if name == "CommandGetDbSchemas":
        pattern = a.get("db_schema_filter_pattern")
        regex = like_pattern(pattern) if pattern is not None else None
        rows = [(c, s) for c, s in objects.schemas
                if ("catalog" not in a or c == a["catalog"]) and (regex is None or regex.fullmatch(s))]
        return _sorted_table(rows, DB_SCHEMAS_SCHEMA, 2)
    if name == "CommandGetTables":
        return _tables(objects, a, base_table_type)
    if name == "CommandGetTableTypes":
        # the server's own list, not the builder's (flightsql ``plan_get_table_types``; no LOCAL TEMPORARY)
        return pa.table([pa.array([base_table_type, "VIEW"], _S)], schema=TABLE_TYPES_SCHEMA)
    if name in ("CommandGetPrimaryKeys", "CommandGetExportedKeys", "CommandGetImportedKeys",
                "CommandGetCrossReference"):
        return result_schema(command).empty_table()
    if name == "CommandGetXdbcTypeInfo":
        return xdbc_type_info_table(a.get("data_type"))
    raise ValueError(f"not a metadata command: {name}")


def _tables(objects: Any, a: dict[str, Any], base_table_type: str) -> pa.Table:
    include_schema = bool(a.get("include_schema"))
    schema_re = like_pattern(a["db_schema_filter_pattern"]) if "db_schema_filter_pattern" in a else None
    table_re = like_pattern(a["table_name_filter_pattern"]) if "table_name_filter_pattern" in a else None
    types = a.get("table_types") or []
    rows = []
    for t in objects.tables:
        table_type = base_table_type if t.table_type == "BASE TABLE" else t.table_type
        if "catalog" in a and t.catalog != a["catalog"]:
            continue
        if types and table_type not in types:
            continue
        if schema_re is not None and not schema_re.fullmatch(t.schema):
            continue
        if table_re is not None and not table_re.fullmatch(t.name):
            continue
        row: tuple[Any, ...] = (t.catalog, t.schema, t.name, table_type)
        if include_schema:
            row += (t.arrow_schema.serialize().to_pybytes(),)
        rows.append(row)
    return _sorted_table(rows, TABLES_SCHEMA_WITH_SCHEMA if include_schema else TABLES_SCHEMA, 4)


# -- GetSqlInfo ---------------------------------------------------------------------------------------------

_I32_MAX = 2**31 - 1
#: SqlSupportsConvert codes and the Arrow type the server maps each to (flightsql ``sql_info/meta.rs``), as
#: DataFusion's ``arrow_cast`` names them; BINARY, LONGVARBINARY and VARBINARY are not mapped
_CONVERT_TYPES = {
    0: "Int64", 2: "Boolean", 3: "Utf8", 4: "Date32", 5: "Decimal128(38, 2)", 6: "Float32", 7: "Int32",
    8: "Interval(DayTime)", 9: "Interval(YearMonth)", 11: "Utf8", 12: "Decimal128(38, 2)", 13: "Float32",
    14: "Int16", 15: "Time64(Nanosecond)", 16: "Timestamp(Nanosecond, None)", 17: "Int8", 19: "Utf8",
}
_KEYWORDS = """absolute action add all allocate alter and any are as asc assertion at authorization avg begin between
bit bit_length both by cascade cascaded case cast catalog char char_length character character_length check close
coalesce collate collation column commit connect connection constraint constraints continue convert corresponding
count create cross current current_date current_time current_timestamp current_user cursor date day deallocate dec
decimal declare default deferrable deferred delete desc describe descriptor diagnostics disconnect distinct domain
double drop else end end-exec escape except exception exec execute exists external extract false fetch first float
for foreign found from full get global go goto grant group having hour identity immediate in indicator initially
inner input insensitive insert int integer intersect interval into is isolation join key language last leading left
level like local lower match max min minute module month names national natural nchar next no not null nullif numeric
octet_length of on only open option or order outer output overlaps pad partial position precision prepare preserve
primary prior privileges procedure public read real references relative restrict revoke right rollback rows schema
scroll second section select session session_user set size smallint some space sql sqlcode sqlerror sqlstate
substring sum system_user table temporary then time timestamp timezone_hour timezone_minute to trailing transaction
translate translation trim true union unique unknown update upper usage user using value values varchar varying view
when whenever where with work write year zone""".split()
_NUMERIC_FUNCTIONS = ("abs acos asin atan atan2 ceil cos exp floor ln log log10 log2 pow power round signum sin sqrt "
                      "tan trunc").split()
_STRING_FUNCTIONS = ("arrow_typeof ascii bit_length btrim char_length character_length chr concat concat_ws digest "
                     "from_unixtime initcap left length lower lpad ltrim md5 octet_length random regexp_match "
                     "regexp_replace repeat replace reverse right rpad rtrim sha224 sha256 sha384 sha512 split_part "
                     "starts_with strpos substr to_hex translate trim upper uuid").split()
_DATETIME_FUNCTIONS = ("current_date current_time date_bin date_part date_trunc datepart datetrunc from_unixtime now "
                       "to_timestamp to_timestamp_micros to_timestamp_millis to_timestamp_seconds").split()
_SYSTEM_FUNCTIONS = ["array", "arrow_typeof", "struct"]


def _sql_info_values() -> dict[int, Any]:
    """What the server reports, by SqlInfo code (flightsql ``sql_info/mod.rs``): str, bool, int (int64),
    ``("i32", n)`` (int32 bitmask), list[str], or dict[int, list[int]]."""
    b32 = lambda n: ("i32", n)  # noqa: E731
    values: dict[int, Any] = {
        0: "InfluxDB IOx", 1: "2", 2: "1.3", 3: True, 4: True, 5: False, 8: b32(0), 9: False,
        100: b32(0), 101: b32(0),
        500: False, 501: False, 502: False, 503: b32(3), 504: '"', 505: b32(1), 506: True, 507: b32(0),
        508: _KEYWORDS, 509: _NUMERIC_FUNCTIONS, 510: _STRING_FUNCTIONS, 511: _SYSTEM_FUNCTIONS,
        512: _DATETIME_FUNCTIONS, 513: "\\", 514: "", 515: True, 516: True, 517: _supports_convert(),
        518: False, 519: False, 520: True, 521: True, 522: b32(3), 523: True, 524: True, 525: b32(1),
        526: b32(0b111), 527: False, 528: b32(2), 529: "schema", 530: "procedure", 532: False,
        533: b32(0), 534: b32(0), 535: b32(0), 536: False, 537: False, 538: b32(15), 539: True, 540: b32(3),
        556: True, 562: 0, 563: False, 564: b32(0), 565: False, 566: True, 567: b32(0),
        568: b32(0), 569: b32(0), 570: b32(0), 571: b32(0), 572: False, 573: False, 574: False, 575: False,
        576: False,
    }
    for code in (*range(541, 556), *range(557, 562)):  # the maximum lengths: i32::MAX as an int64
        values[code] = _I32_MAX
    return values


def _supports_convert() -> dict[int, list[int]]:
    """SQL_SUPPORTS_CONVERT: for each SQL type, the SQL types its Arrow type casts to (DataFusion's casts)."""
    from emulator.query import castable

    pairs = [(a, b) for a in _CONVERT_TYPES.values() for b in _CONVERT_TYPES.values()]
    ok = castable(sorted(set(pairs)))
    out: dict[int, list[int]] = {}
    for src, src_type in _CONVERT_TYPES.items():
        targets = [dst for dst, dst_type in _CONVERT_TYPES.items() if ok[(src_type, dst_type)]]
        if targets:
            out[src] = targets
    return out


_SQL_INFO: pa.Table | None = None


def sql_info_table(info: list[int]) -> pa.Table:
    """GetSqlInfo's rows for the requested codes (all when none; unknown codes give no row), by code."""
    global _SQL_INFO
    if _SQL_INFO is None:
        _SQL_INFO = _build_sql_info(_sql_info_values())
    if not info:
        return _SQL_INFO
    wanted = set(info)
    mask = pa.array([code in wanted for code in _SQL_INFO.column("info_name").to_pylist()])
    return _SQL_INFO.filter(mask)


def _build_sql_info(values: dict[int, Any]) -> pa.Table:
    children: list[list[Any]] = [[] for _ in range(6)]
    type_ids, offsets = [], []
    for code in sorted(values):
        value = values[code]
        if isinstance(value, tuple):
            tid, value = 3, value[1]
        elif isinstance(value, bool):
            tid = 1
        elif isinstance(value, str):
            tid = 0
        elif isinstance(value, int):
            tid = 2
        elif isinstance(value, list):
            tid = 4
        else:
            tid, value = 5, sorted(value.items())
        type_ids.append(tid)
        offsets.append(len(children[tid]))
        children[tid].append(value)
    child_arrays = [pa.array(c, type=f.type) for c, f in zip(children, SQL_INFO_VALUE_TYPE, strict=True)]
    union = pa.UnionArray.from_dense(pa.array(type_ids, pa.int8()), pa.array(offsets, pa.int32()), child_arrays,
                                     [f.name for f in SQL_INFO_VALUE_TYPE])
    union = union.view(SQL_INFO_VALUE_TYPE) if union.type != SQL_INFO_VALUE_TYPE else union
    return pa.table([pa.array(sorted(values), pa.uint32()), union], schema=SQL_INFO_SCHEMA)


# -- GetXdbcTypeInfo ----------------------------------------------------------------------------------------

#: the server's five types (flightsql ``xdbc_type_info/mod.rs``), sorted by data_type then type_name
_XDBC_ROWS = [
    # type_name, data_type, column_size, prefix, suffix, create_params, case_sensitive, unsigned, auto_inc,
    # datetime_subcode, num_prec_radix
    ("INTEGER", 4, 32, None, None, None, False, False, False, None, 2),
    ("FLOAT", 6, 24, None, None, None, False, False, False, None, 2),
    ("INTERVAL", 10, _I32_MAX, "'", "'", None, False, None, None, 0, None),
    ("VARCHAR", 12, _I32_MAX, "'", "'", ["length"], True, None, None, None, None),
    ("TIMESTAMP", 93, _I32_MAX, "'", "'", None, False, None, None, None, None),
]


def xdbc_type_info_table(data_type: int | None) -> pa.Table:
    """GetXdbcTypeInfo's rows, all or those of one XDBC ``data_type``."""
    rows = [r for r in _XDBC_ROWS if data_type is None or r[1] == data_type]
    cols: dict[str, list[Any]] = {f.name: [] for f in XDBC_TYPE_INFO_SCHEMA}
    for name, dtype, size, prefix, suffix, params, case, unsigned, auto, subcode, radix in rows:
        for key, value in (("type_name", name), ("data_type", dtype), ("column_size", size),
                           ("literal_prefix", prefix), ("literal_suffix", suffix), ("create_params", params),
                           ("nullable", 1), ("case_sensitive", case), ("searchable", 3),
                           ("unsigned_attribute", unsigned), ("fixed_prec_scale", False), ("auto_increment", auto),
                           ("local_type_name", name), ("minimum_scale", None), ("maximum_scale", None),
                           ("sql_data_type", dtype), ("datetime_subcode", subcode), ("num_prec_radix", radix),
                           ("interval_precision", None)):
            cols[key].append(value)
    return pa.table(cols, schema=XDBC_TYPE_INFO_SCHEMA)
