"""The SQL functions InfluxDB 3 registers on every query, on top of DataFusion's own.

The server's session (influxdata/influxdb ``iox_query/src/exec/context.rs``) registers the selector
aggregates, the IOx scalar functions and the IOx window functions of the ``query_functions`` crate, and the
``handle_gap_fill`` analyzer rule. Implemented here (DataFusion Python UDFs; facts from that crate):

* ``selector_first`` / ``selector_last`` / ``selector_min`` / ``selector_max`` (``selectors.rs``,
  ``selectors/internal.rs``): ``struct {value, time, other_1..}`` of the row with the earliest/latest time
  or the smallest/largest value (ties: the earliest time); rows with a null value are never selected;
  a group with no selectable row is a null struct;
* ``tz(time[, zone])`` (``tz.rs``): the same instant typed ``Timestamp(ns, zone)`` (UTC by default);
* ``date_bin_wallclock(stride, time[, origin])`` (``date_bin_wallclock.rs``): ``date_bin`` on wall-clock
  time in the zone of ``time``, with the crate's rules for skipped and repeated local times;
* ``date_bin_gapfill(stride, time[, origin])`` with ``locf(x)`` and ``interpolate(x)`` (``gapfill.rs``,
  ``iox_query/src/analyzer/handle_gapfill.rs``, ``exec/gapfill``): the aggregate is run with
  ``date_bin``; every series (the other GROUP BY columns) gets one row per bin from
  ``date_bin(lower time bound)`` to ``date_bin(upper time bound)`` of the WHERE clause; missing rows are
  null (``count`` 0), ``locf`` carries the last non-null value forward (nulls count as missing),
  ``interpolate`` fills rows between two non-null rows linearly (integers truncated); then the nodes
  above the aggregate (projection, ORDER BY, LIMIT, HAVING) run over the filled rows, as above the
  server's GapFill node.

DataFusion Python gives a UDF one exact signature and one return type, while these functions take any
type and return a type that depends on their arguments. So each distinct call in a query is planned under a
name of its own (``selector_max__f1``, see :func:`rename_calls`) with a probe whose signature nothing
matches; DataFusion's coercion error names the argument types of that call, and the call's function is
registered again with exactly those types before planning again. Result column names and error texts get
the server's names back (:func:`original_names`).
"""

from __future__ import annotations

import math
import re
import threading
import time
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
from datafusion import Accumulator, SessionContext, udaf, udf, udwf
from datafusion.expr import Expr, SortExpr
from datafusion.user_defined import WindowEvaluator


@dataclass(frozen=True)
class ResultLimits:
    """Bounds on materialising one query's result (emulator only; the server streams its results).

    ``max_bytes``: the most Arrow bytes (``RecordBatch.nbytes`` summed) a result may hold, None for no bound;
    ``cancelled``: a callable polled before each batch, true once the result is no longer wanted (e.g. the
    HTTP client disconnected); None when nobody can cancel."""

    max_bytes: int | None = None
    cancelled: Callable[[], bool] | None = None


NO_LIMITS = ResultLimits()


def _format_size(n: float) -> str:
    """``n`` bytes as DataFusion's ``human_readable_size`` spells it (``64.0 MB``, 1024-based units)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


class QueryCancelled(Exception):
    """The query's result was no longer wanted (:attr:`ResultLimits.cancelled` returned true)."""


def collect(df: Any, limits: ResultLimits = NO_LIMITS) -> pa.Table:
    """Run DataFrame ``df`` batch by batch (``execute_stream``) into one ``pa.Table``, the one place a query's
    rows are materialised. Past ``limits.max_bytes`` Arrow bytes it stops and raises ``Exception`` with a
    text in the form of DataFusion's memory-pool error (``Resources exhausted: ...``), so the engine
    classifies it as an execution error (HTTP 500). Raises :class:`QueryCancelled` when ``limits.cancelled``
    turns true (checked before each batch)."""
    batches: list[pa.RecordBatch] = []
    total = 0
    cancelled = limits.cancelled
    if cancelled is not None and cancelled():
        raise QueryCancelled("Query cancelled: the client disconnected")
    stream = df.execute_stream()
    for batch in stream:
        rb = batch.to_pyarrow()
        total += rb.nbytes
        if limits.max_bytes is not None and total > limits.max_bytes:
            del batches, rb
            raise Exception(
                f"Resources exhausted: query result reached {_format_size(total)}, over the "
                f"{_format_size(limits.max_bytes)} this engine may hold for one result (--exec-mem-pool-bytes; "
                "the server streams results, this emulator materialises them (embedded engine))")
        batches.append(rb)
        if cancelled is not None and cancelled():
            raise QueryCancelled("Query cancelled: the client disconnected")
    if not batches:
        return df.schema().empty_table()
    return pa.Table.from_batches(batches)


SELECTORS = ("selector_first", "selector_last", "selector_min", "selector_max")
GAPFILL = "date_bin_gapfill"
WALLCLOCK_GAPFILL = "date_bin_wallclock_gapfill"
FILLS = ("locf", "interpolate")
SCALARS = (GAPFILL, WALLCLOCK_GAPFILL, *FILLS, "tz", "date_bin_wallclock")
WINDOWS = ("derivative", "non_negative_derivative", "difference", "non_negative_difference")
OTHERS = ("to_timestamp", "sleep", "influx_regex_match", "influx_regex_not_match", "influx_window_bounds")
NAMES = (*SELECTORS, *SCALARS, *WINDOWS, *OTHERS)
_CALLED = re.compile(r"\b(" + "|".join(NAMES) + r")\s*\(", re.IGNORECASE)
_COERCE = re.compile(r"Failed to coerce arguments to satisfy a call to '(\w+)' function: coercion from (.*?) to "
                     r"the signature (.*?) failed")
_ZERO_ARGS = re.compile(r"'(\w+)' does not support zero arguments")
_GAP_CALL = re.compile(r"\b(date_bin(?:_wallclock)?_gapfill)__f\d+\(")
_PROBE_ARITY = 7
#: context chain of the server's analyzer rule (DataFusion wraps a rule's error in its name)
GAPFILL_CONTEXT = "handle_gap_fill\ncaused by\n"
MIXED_TYPES = ("This feature is not implemented: {name} called with different argument types in one query "
               "(embedded engine)")
NS = 1_000_000_000


class SqlFunctionError(Exception):
    """A planning or execution error with DataFusion's text (``Error during planning: …``)."""


# --------------------------------------------------------------------------------------------- type names
def parse_types(text: str) -> list[pa.DataType]:
    """DataFusion's display of a list of Arrow types (``Float64, Timestamp(ns, "UTC")``) as pyarrow types.

    Raises :class:`ValueError` for a type it does not know.
    """
    parser = _TypeParser(text)
    types = [parser.parse_type()]
    while parser.peek(","):
        parser.expect(",")
        types.append(parser.parse_type())
    parser.end()
    return types


_SIMPLE_TYPES: dict[str, pa.DataType] = {
    "Null": pa.null(), "Boolean": pa.bool_(), "Int8": pa.int8(), "Int16": pa.int16(), "Int32": pa.int32(),
    "Int64": pa.int64(), "UInt8": pa.uint8(), "UInt16": pa.uint16(), "UInt32": pa.uint32(),
    "UInt64": pa.uint64(), "Float16": pa.float16(), "Float32": pa.float32(), "Float64": pa.float64(),
    "Utf8": pa.string(), "LargeUtf8": pa.large_string(), "Utf8View": pa.string_view(), "Binary": pa.binary(),
    "LargeBinary": pa.large_binary(), "Date32": pa.date32(), "Date64": pa.date64(),
}
_UNITS = {"s": "s", "ms": "ms", "us": "us", "µs": "us", "ns": "ns", "Second": "s", "Millisecond": "ms",
          "Microsecond": "us", "Nanosecond": "ns"}


class _TypeParser:
    _TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|([A-Za-z_µ][\w]*)|(-?\d+)|([(),:]))')

    def __init__(self, text: str) -> None:
        self.tokens: list[str] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = self._TOKEN.match(text, pos)
            if not m:
                raise ValueError(f"cannot read type list {text!r}")
            self.tokens.append(next(g for g in m.groups() if g is not None))
            pos = m.end()
        self.i = 0

    def peek(self, tok: str) -> bool:
        return self.i < len(self.tokens) and self.tokens[self.i] == tok

    def next(self) -> str:
        if self.i >= len(self.tokens):
            raise ValueError("unexpected end of type list")
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, tok: str) -> None:
        if self.next() != tok:
            raise ValueError(f"expected {tok!r}")

    def end(self) -> None:
        if self.i != len(self.tokens):
            raise ValueError("trailing text in type list")

    def parse_type(self) -> pa.DataType:
        name = self.next()
        if name in _SIMPLE_TYPES and not self.peek("("):
            return _SIMPLE_TYPES[name]
        if name in ("nullable", "non-null"):
            return self.parse_type()
        self.expect("(")
        if name == "Timestamp":
            unit = _UNITS[self.next()]
            tz = None
            if self.peek(","):
                self.expect(",")
                tz = self.next().strip('"')
            self.expect(")")
            return pa.timestamp(unit, tz)
        if name == "Interval":
            kind = self.next()
            self.expect(")")
            return {"MonthDayNano": pa.month_day_nano_interval()}.get(kind) or _unknown(name)
        if name == "Dictionary":
            key = self.parse_type()
            self.expect(",")
            value = self.parse_type()
            self.expect(")")
            return pa.dictionary(key, value)
        if name in ("Decimal128", "Decimal256"):
            precision = int(self.next())
            self.expect(",")
            scale = int(self.next())
            self.expect(")")
            return (pa.decimal128 if name == "Decimal128" else pa.decimal256)(precision, scale)
        if name in ("List", "LargeList"):
            inner = self.parse_type()
            self.expect(")")
            return pa.list_(inner) if name == "List" else pa.large_list(inner)
        if name == "Struct":
            fields = []
            while not self.peek(")"):
                fname = self.next().strip('"')
                self.expect(":")
                fields.append(pa.field(fname, self.parse_type()))
                if self.peek(","):
                    self.expect(",")
            self.expect(")")
            return pa.struct(fields)
        return _unknown(name)


def _unknown(name: str) -> pa.DataType:
    raise ValueError(f"unsupported type {name}")


def df_type_name(typ: pa.DataType) -> str:
    """DataFusion 51's display of an Arrow type, for the server's error texts (``Float64``, ``Timestamp(ms)``)."""
    for name, simple in _SIMPLE_TYPES.items():
        if typ == simple:
            return name
    if pa.types.is_timestamp(typ):
        return f"Timestamp({typ.unit})" if typ.tz is None else f'Timestamp({typ.unit}, "{typ.tz}")'
    if pa.types.is_dictionary(typ):
        return f"Dictionary({df_type_name(typ.index_type)}, {df_type_name(typ.value_type)})"
    return str(typ)


_TIME_UNITS = {"s": "Second", "ms": "Millisecond", "us": "Microsecond", "ns": "Nanosecond"}


def arrow_type_debug(typ: pa.DataType) -> str:
    """arrow-rs ``{:?}`` of a ``DataType`` (derived Debug: ``Int32``, ``Timestamp(Millisecond, None)``).

    Exact for the flat types; for nested ones (List, Struct, Map) the Field details are approximated.
    """
    t = pa.types
    simple = [
        (t.is_null, "Null"), (t.is_boolean, "Boolean"), (t.is_int8, "Int8"), (t.is_int16, "Int16"),
        (t.is_int32, "Int32"), (t.is_int64, "Int64"), (t.is_uint8, "UInt8"), (t.is_uint16, "UInt16"),
        (t.is_uint32, "UInt32"), (t.is_uint64, "UInt64"), (t.is_float16, "Float16"),
        (t.is_float32, "Float32"), (t.is_float64, "Float64"), (t.is_string, "Utf8"),
        (t.is_large_string, "LargeUtf8"), (t.is_string_view, "Utf8View"), (t.is_binary, "Binary"),
        (t.is_large_binary, "LargeBinary"), (t.is_binary_view, "BinaryView"), (t.is_date32, "Date32"),
        (t.is_date64, "Date64"),
    ]
    for check, name in simple:
        if check(typ):
            return name
    if t.is_timestamp(typ):
        tz = "None" if typ.tz is None else f'Some("{typ.tz}")'
        return f"Timestamp({_TIME_UNITS[typ.unit]}, {tz})"
    if t.is_time32(typ) or t.is_time64(typ):
        return f"Time{typ.bit_width}({_TIME_UNITS[typ.unit]})"
    if t.is_duration(typ):
        return f"Duration({_TIME_UNITS[typ.unit]})"
    if t.is_interval(typ):
        return "Interval(MonthDayNano)"
    if t.is_fixed_size_binary(typ) and not t.is_decimal(typ):
        return f"FixedSizeBinary({typ.byte_width})"
    if t.is_decimal(typ):
        return f"Decimal{typ.bit_width}({typ.precision}, {typ.scale})"
    if t.is_dictionary(typ):
        return f"Dictionary({arrow_type_debug(typ.index_type)}, {arrow_type_debug(typ.value_type)})"
    if t.is_list(typ) or t.is_large_list(typ):
        kind = "List" if t.is_list(typ) else "LargeList"
        return f"{kind}({arrow_type_debug(typ.value_type)})"
    if t.is_struct(typ):
        inner = ", ".join(f"{typ.field(i).name}: {arrow_type_debug(typ.field(i).type)}"
                          for i in range(typ.num_fields))
        return f"Struct({inner})"
    return str(typ)


# ------------------------------------------------------------------------------------------------ probing
class _Probe(Accumulator):
    def state(self) -> list[pa.Scalar]:
        return [pa.scalar(None, pa.null())]

    def update(self, *values: pa.Array) -> None:
        return None

    def merge(self, states: list[pa.Array]) -> None:
        return None

    def evaluate(self) -> pa.Scalar:
        return pa.scalar(None, pa.null())


class _ProbeWindow(WindowEvaluator):
    def evaluate_all(self, values: list[pa.Array], num_rows: int) -> pa.Array:
        return pa.nulls(num_rows)


def _register_probe(ctx: SessionContext, name: str, alias: str) -> None:
    nulls = [pa.null()] * _PROBE_ARITY
    if name in SELECTORS:
        ctx.register_udaf(udaf(_Probe, nulls, pa.null(), [pa.null()], "stable", name=alias))
    elif name in WINDOWS:
        ctx.register_udwf(udwf(_ProbeWindow, nulls, pa.null(), "immutable", name=alias))
    else:
        ctx.register_udf(udf(lambda *a: pa.nulls(len(a[0])), nulls, pa.null(), "volatile", name=alias))


@dataclass
class Call:
    """One distinct call site: the server's function name, the call's text, the name it is planned under."""

    name: str
    text: str
    alias: str


@dataclass
class QueryFunctions:
    """Per-query state: the call sites, the argument types each was registered with, gapfill params."""

    calls: dict[str, Call]
    resolved: dict[str, list[pa.DataType]] = field(default_factory=dict)
    stride_ns: int | None = None
    #: the zone of a date_bin_wallclock_gapfill's time (None: date_bin_gapfill, or no zone)
    wallclock_zone: str | None = None
    origin_ns: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


_SCAN = re.compile(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/)|\b(" + "|".join(NAMES) + r")(\s*\()",
                   re.IGNORECASE | re.DOTALL)
_ALIAS = re.compile(r"\b(" + "|".join(NAMES) + r")__f\d+\b", re.IGNORECASE)


def _call_end(sql: str, open_idx: int) -> int:
    """Index just past the parenthesis closing the one at ``open_idx`` (quotes skipped)."""
    depth, i = 0, open_idx
    while i < len(sql):
        ch = sql[i]
        if ch in "'\"":
            j = sql.find(ch, i + 1)
            while j != -1 and j + 1 < len(sql) and sql[j + 1] == ch:
                j = sql.find(ch, j + 2)
            i = len(sql) if j == -1 else j + 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(sql)


def _key(text: str) -> str:
    """A call's text without whitespace outside quotes, so identical calls share one planned name."""
    parts = re.split(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")", text)
    return "".join(p if i % 2 else re.sub(r"\s+", "", p) for i, p in enumerate(parts))


def rename_calls(sql: str) -> tuple[str, dict[str, Call]]:
    """Give each distinct call of the server's functions its own name (``selector_max__f1``), so calls with
    different argument types each get their own exact signature. Identical calls (the same text, as in
    ``SELECT f(x)['a'], f(x)['b']`` or a GROUP BY repeating a SELECT expression) share one name."""
    calls: dict[str, Call] = {}
    by_key: dict[str, str] = {}
    edits: list[tuple[int, int, str]] = []
    for m in _SCAN.finditer(sql):
        if m.group(1) is not None:
            continue
        name = m.group(2).lower()
        text = sql[m.start(2):_call_end(sql, m.end() - 1)]
        key = name + _key(text[len(m.group(2)):])
        alias = by_key.get(key)
        if alias is None:
            alias = f"{name}__f{len(by_key) + 1}"
            by_key[key] = alias
            calls[alias] = Call(name, text, alias)
        edits.append((m.start(2), m.end(2), alias))
    for start, end, alias in reversed(edits):
        sql = sql[:start] + alias + sql[end:]
    return sql, calls


def original_names(text: str) -> str:
    """``text`` with the planned names (``selector_max__f1``) back to the server's (``selector_max``)."""
    return _ALIAS.sub(lambda m: m.group(1).lower(), text)


def execute(ctx: SessionContext, sql: str, options: Any, params: Mapping[str, Any] | None, *,
            schema_only: bool = False, limits: ResultLimits = NO_LIMITS) -> pa.Table:
    """Plan and run ``sql`` with the server's extra functions available; DataFusion's errors propagate
    (with the functions' own names). ``schema_only``: plan only, return the empty result table. Results are
    materialised through :func:`collect` under ``limits``.

    Raises :class:`SqlFunctionError` with the server's texts for misuse of these functions.
    """
    param_values = dict(params) if params else None
    planned_sql, calls = rename_calls(sql) if _CALLED.search(sql) else (sql, {})
    if not calls:
        df = ctx.sql_with_options(sql, options, param_values=param_values)
        return df.schema().empty_table() if schema_only else collect(df, limits)
    try:
        table = _execute_renamed(ctx, planned_sql, options, param_values, QueryFunctions(calls), schema_only,
                                 limits)
    except SqlFunctionError as exc:
        raise SqlFunctionError(original_names(str(exc))) from None
    except QueryCancelled:
        raise
    except Exception as exc:  # DataFusion's own error, naming the planned functions
        raise SqlFunctionError(original_names(_udf_error_text(str(exc)))) from None
    names = table.column_names
    fixed = [original_names(n) for n in names]
    return table.rename_columns(fixed) if fixed != names else table


_PY_ERR = re.compile(r"PyErr \{ type: <class '([\w.]+)'>, value: \w+\((['\"])(.*?)\2\)", re.DOTALL)


def _udf_error_text(text: str) -> str:
    """An error raised inside one of these Python UDFs, as the server's text (no Python traceback)."""
    m = _PY_ERR.search(text)
    if m is None:
        return text
    message = m.group(3).replace("\\'", "'").replace('\\"', '"').replace("\\n", "\n")
    if m.group(1).endswith("SqlFunctionError"):
        return message
    return f"Execution error: {message}"


def _execute_renamed(ctx: SessionContext, sql: str, options: Any, param_values: dict[str, Any] | None,
                     state: QueryFunctions, schema_only: bool, limits: ResultLimits = NO_LIMITS) -> pa.Table:
    for call in state.calls.values():
        _register_probe(ctx, call.name, call.alias)
    df = None
    for _attempt in range(len(state.calls) + 1):
        try:
            df = ctx.sql_with_options(sql, options, param_values=param_values)
            df.optimized_logical_plan()  # calls in WHERE/HAVING are typed by the analyzer, not the planner
            break
        except Exception as exc:  # DataFusion's planning error; only a probe's coercion error is ours
            text = str(exc)
            zero = _ZERO_ARGS.search(text)
            if zero and zero.group(1) in state.calls and state.calls[zero.group(1)].name in SELECTORS:
                name = state.calls[zero.group(1)].name
                raise SqlFunctionError(
                    f"Error during planning: '{name}' does not support zero arguments No function matches the "
                    f"given name and argument types '{name}()'. You might need to add explicit type casts.\n"
                    f"\tCandidate functions:\n\t{name}(Any, .., Any)") from None
            m = _COERCE.search(text)
            if not m or m.group(1) not in state.calls:
                raise
            call = state.calls[m.group(1)]
            if call.alias in state.resolved:
                raise SqlFunctionError(MIXED_TYPES.format(name=call.name)) from None
            try:
                types = parse_types(m.group(2))
            except ValueError:
                raise SqlFunctionError(f"This feature is not implemented: {call.name} of {m.group(2)} "
                                       "(embedded engine)") from None
            if call.name == "to_timestamp" and types and all(pa.types.is_string(t) for t in types):
                # strings: the server falls back to DataFusion's own to_timestamp
                sql = re.sub(rf"\b{call.alias}\b", "to_timestamp", sql)
            else:
                _register_real(ctx, call, types, state)
            state.resolved[call.alias] = types
    assert df is not None
    if schema_only:
        return df.schema().empty_table()
    if any(c.name in (GAPFILL, WALLCLOCK_GAPFILL, *FILLS) for c in state.calls.values()):
        return _run_gapfill(ctx, df, state, limits)
    return collect(df, limits)


def _register_real(ctx: SessionContext, call: Call, types: list[pa.DataType], state: QueryFunctions) -> None:
    name, alias = call.name, call.alias
    if name in SELECTORS:
        ctx.register_udaf(_selector_udaf(name, types, alias))
    elif name in WINDOWS:
        ctx.register_udwf(_window_udwf(name, types, alias))
    elif name == "to_timestamp":
        ctx.register_udf(_to_timestamp_udf(types, alias))
    elif name == "sleep":
        ctx.register_udf(_sleep_udf(types, alias))
    elif name in ("influx_regex_match", "influx_regex_not_match"):
        ctx.register_udf(_regex_udf(name, alias))
    elif name == "influx_window_bounds":
        ctx.register_udf(_window_bounds_udf(alias))
    elif name == "tz":
        ctx.register_udf(_tz_udf(types, call.text, alias))
    elif name == "date_bin_wallclock":
        ctx.register_udf(_wallclock_udf(types, alias))
    elif name == GAPFILL:
        ctx.register_udf(_gapfill_udf(types, state, alias))
    elif name == WALLCLOCK_GAPFILL:
        ctx.register_udf(_wallclock_udf(types, alias, state))
    elif name in FILLS:
        numeric = (pa.types.is_floating(types[0]) or pa.types.is_integer(types[0]) or (
            pa.types.is_struct(types[0]) and types[0].get_field_index("value") >= 0
            and types[0].field("value").type in _NUMERIC))  # a selector's struct: its value is interpolated
        if name == "interpolate" and not numeric:
            raise SqlFunctionError(
                f"Error during planning: Failed to coerce arguments to satisfy a call to 'interpolate' function: "
                f"coercion from {df_type_name(types[0])} to the signature OneOf([Exact([Float64]), Exact([Int64]), "
                "Exact([UInt64])]) failed")
        if len(types) != 1:
            raise SqlFunctionError(f"Error during planning: {name} should have at least 1 argument")
        ctx.register_udf(udf(lambda a: a, types, types[0], "volatile", name=alias))


# ------------------------------------------------------------------------------------------------ selectors
def _selector_udaf(name: str, types: list[pa.DataType], alias: str) -> Any:
    """The server's selector UDAF for these argument types (``selectors/type_handling.rs`` checks)."""
    if len(types) < 2:
        raise SqlFunctionError(f"Error during planning: {name} requires at least 2 arguments, got {len(types)}")
    time_type = types[1]
    if not (pa.types.is_timestamp(time_type) and time_type.unit == "ns"):
        raise SqlFunctionError(f"Error during planning: {name} second argument must be a timestamp, but got "
                               f"{df_type_name(time_type)}")
    # a dictionary (tag) is selected as its string value
    value_types = [t.value_type if pa.types.is_dictionary(t) else t for t in [types[0], *types[2:]]]
    inputs = [value_types[0], time_type, *value_types[1:]]
    struct = pa.struct([pa.field("value", inputs[0]), pa.field("time", time_type)]
                       + [pa.field(f"other_{i + 1}", t) for i, t in enumerate(inputs[2:])])
    by_time = name in ("selector_first", "selector_last")
    smallest = name in ("selector_first", "selector_min")

    def make() -> Accumulator:
        return _Selector(by_time=by_time, smallest=smallest, struct=struct, inputs=inputs)

    return udaf(make, inputs, struct, inputs, "stable", name=alias)


class _Selector(Accumulator):
    """``selectors/internal.rs`` ``Selector``: one group's value, time and the other values of that row."""

    def __init__(self, *, by_time: bool, smallest: bool, struct: pa.StructType, inputs: list[pa.DataType]):
        self.by_time = by_time
        self.smallest = smallest
        self.struct = struct
        self.inputs = inputs
        self.value: Any = None
        self.time: int | None = None
        self.other: list[Any] = [None] * (len(inputs) - 2)

    def _better(self, old: Any, new: Any) -> bool:
        return new < old if self.smallest else old < new

    def update(self, *values: pa.Array) -> None:
        if len(values) < 2:
            return
        value_arr = values[0]
        if pa.types.is_dictionary(value_arr.type):
            value_arr = value_arr.cast(value_arr.type.value_type)
        times = values[1].cast(pa.int64()).to_pylist()
        vals = value_arr.to_pylist()
        others = [(a.cast(a.type.value_type) if pa.types.is_dictionary(a.type) else a).to_pylist()
                  for a in values[2:]]
        if self.by_time:
            candidates = [t for t, v in zip(times, vals, strict=True) if v is not None and t is not None]
            if not candidates:
                return
            cur = min(candidates) if self.smallest else max(candidates)
            if self.time is not None and not self._better(self.time, cur):
                return
            idx = next(i for i, (t, v) in enumerate(zip(times, vals, strict=True)) if v is not None and t == cur)
            self.time, self.value = cur, vals[idx]
            self.other = [o[idx] for o in others]
            return
        present = [v for v in vals if v is not None and v == v]  # NaN never selected (ordered comparisons)
        if not present:
            return
        cur = min(present) if self.smallest else max(present)
        if self.value is None or self._better(self.value, cur):
            self.value, self.time = cur, None
        elif cur != self.value:
            return
        matching = [(t, i) for i, (t, v) in enumerate(zip(times, vals, strict=True))
                    if v is not None and v == self.value and t is not None]
        if not matching:
            return
        best_t, idx = min(matching)
        if self.time is None or best_t < self.time:
            self.time = best_t
            if others:
                self.other = [o[idx] for o in others]

    def merge(self, states: list[pa.Array]) -> None:
        self.update(*states)

    def state(self) -> list[pa.Scalar]:
        return [pa.scalar(self.value, self.inputs[0]), pa.scalar(self.time, self.inputs[1]),
                *(pa.scalar(v, t) for v, t in zip(self.other, self.inputs[2:], strict=True))]

    def evaluate(self) -> pa.Scalar:
        if self.value is None:
            return pa.scalar(None, self.struct)
        row = {"value": self.value, "time": self.time}
        row.update({f"other_{i + 1}": v for i, v in enumerate(self.other)})
        return pa.scalar(row, self.struct)


# ------------------------------------------------------------------------------------------------ windows
_NUMERIC = (pa.int64(), pa.uint64(), pa.float64())


def _window_signature_error(name: str, types: list[pa.DataType]) -> SqlFunctionError:
    return SqlFunctionError(
        f"Error during planning: Failed to coerce arguments to satisfy a call to '{name}' function: coercion from "
        f"{', '.join(df_type_name(t) for t in types)} to the signature OneOf(...) failed. No function matches the "
        f"given name and argument types '{name}({', '.join(df_type_name(t) for t in types)})'. You might need to "
        "add explicit type casts.")


def _window_udwf(name: str, types: list[pa.DataType], alias: str) -> Any:
    """``derivative.rs``, ``difference.rs``, ``non_negative.rs``: window functions over each partition in
    ORDER BY order. derivative(value, time[, unit]) -> Float64 per unit (1 s); difference(value) -> the
    value's type; both skip nulls (the first non-null row and null rows give null); the non_negative_
    variants turn negative results into null."""
    derivative = name.endswith("derivative")
    non_negative = name.startswith("non_negative_")
    if derivative:
        ok = (len(types) in (2, 3) and types[0] in _NUMERIC and pa.types.is_timestamp(types[1])
              and types[1].unit == "ns" and (len(types) == 2 or pa.types.is_interval(types[2])))
    else:
        ok = len(types) == 1 and types[0] in _NUMERIC
    if not ok:
        raise _window_signature_error(name, types)
    out = pa.float64() if derivative else types[0]

    class Evaluator(WindowEvaluator):
        def evaluate_all(self, values: list[pa.Array], num_rows: int) -> pa.Array:
            vals = values[0].to_pylist()
            if derivative:
                unit = 1e9
                if len(values) > 2:
                    interval = values[2][0].as_py() if len(values[2]) else None
                    if interval is None:
                        raise SqlFunctionError("Execution error: derivative unit parameter must be a non-null literal "
                                               "interval")
                    if interval.months > 0 or interval.days > 0:
                        raise SqlFunctionError("Execution error: derivative unit parameter cannot contain months or "
                                               "days")
                    if interval.nanoseconds < 1:
                        raise SqlFunctionError("Execution error: derivative unit parameter must be positive")
                    unit = float(interval.nanoseconds)
                times = values[1].cast(pa.int64()).to_pylist()
                result = _derivative(vals, times, unit)
            else:
                result = _difference(vals, types[0])
            if non_negative:
                result = [None if r is not None and r < 0 else r for r in result]
            return pa.array(result, out)

    return udwf(Evaluator, types, out, "immutable", name=alias)


def _derivative(vals: list[Any], times: list[Any], unit: float) -> list[float | None]:
    out: list[float | None] = []
    last = last_t = None
    for v, t in zip(vals, times, strict=True):
        if v is None or t is None:
            out.append(None)
            continue
        if last is None:
            out.append(None)
        else:
            dv, dt = float(v) - float(last), float(t - last_t) / unit
            # f64 division as in Rust: a zero time step gives ±inf (NaN for no change), never an error
            out.append(dv / dt if dt else (math.copysign(math.inf, dv) if dv else math.nan))
        last, last_t = v, t
    return out


def _difference(vals: list[Any], typ: pa.DataType) -> list[Any]:
    out: list[Any] = []
    last = None
    for v in vals:
        if v is None or last is None:
            out.append(None)
            if v is not None:
                last = v
            continue
        d = v - last
        if pa.types.is_integer(typ):  # wrapping, as arrow's sub_wrapping
            bits = 64
            d &= (1 << bits) - 1
            if pa.types.is_signed_integer(typ) and d >= 1 << (bits - 1):
                d -= 1 << bits
        out.append(d)
        last = v
    return out


# ------------------------------------------------------------------------------------------------ others
def _to_timestamp_udf(types: list[pa.DataType], alias: str) -> Any:
    """``to_timestamp.rs``: one Int64 is nanoseconds (DataFusion's would read seconds), a timestamp is cast
    to ``Timestamp(ns)``; strings go to DataFusion's own (see :func:`_execute_renamed`); else a plan error."""
    if len(types) != 1 or not (types[0] == pa.int64() or pa.types.is_timestamp(types[0])):
        shown = ", ".join(_rust_debug(t) for t in types)
        raise SqlFunctionError(
            "Error during planning: to_timestamp supports either 1 argument (being Int64 or Timestamp), or multiple "
            f"arguments, all of which being Utf8. Could not coerce the provided [{shown}] to these types.")
    out = pa.timestamp("ns")

    def convert(arr: pa.Array) -> pa.Array:
        if pa.types.is_timestamp(arr.type):
            return arr.cast(pa.timestamp("ns", arr.type.tz)).cast(pa.int64()).view(out)
        return arr.view(out)

    return udf(convert, types, out, "immutable", name=alias)


def _rust_debug(typ: pa.DataType) -> str:
    return arrow_type_debug(typ) if pa.types.is_timestamp(typ) else df_type_name(typ)


_SLEEP_TYPES = (pa.null(), pa.float32(), pa.float64(), pa.int64())


def _sleep_udf(types: list[pa.DataType], alias: str) -> Any:
    """``sleep.rs`` and iox_query's sleep rewrite: waits for the duration (seconds as a float, or a
    duration), then answers NULL."""
    if len(types) != 1 or not (types[0] in _SLEEP_TYPES or pa.types.is_duration(types[0])):
        raise SqlFunctionError(
            "Error during planning: Failed to coerce arguments to satisfy a call to 'sleep' function: coercion "
            f"from {', '.join(df_type_name(t) for t in types)} to the signature Uniform(1, [Null, Duration(s), "
            "Duration(ms), Duration(ms), Duration(us), Duration(ns), Float32, Float64]) failed")

    def pause(arr: pa.Array) -> pa.Array:
        if pa.types.is_duration(arr.type):
            seconds = [None if v is None else v.total_seconds() for v in arr.to_pylist()]
        else:
            seconds = [None if v is None else float(v) for v in arr.to_pylist()]
        longest = max((s for s in seconds if s is not None), default=0.0)
        if longest > 0:
            time.sleep(longest)
        return pa.nulls(len(arr))

    return udf(pause, types, pa.null(), "volatile", name=alias)


_ESCAPABLE = set("0123456789xuUpPdswDSW") | set("\\.+*?()|[]{}^$#&-~")


def clean_non_meta_escapes(pattern: str) -> str:
    """``regex.rs`` ``clean_non_meta_escapes``: a backslash before a character that needs no escape in Rust
    regex syntax is dropped (``\\@`` -> ``@``); ``\\\\`` stays."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt == "\\" or nxt in _ESCAPABLE:
                out.append(ch + nxt)
            else:
                out.append(nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _regex_udf(name: str, alias: str) -> Any:
    """``influx_regex_match`` / ``influx_regex_not_match`` (string, pattern) -> Boolean, unanchored; the
    pattern must be a literal (Python's ``re`` stands in for Rust's ``regex``)."""
    matches = name == "influx_regex_match"

    def run(values: pa.Array, patterns: pa.Array) -> pa.Array:
        pattern = patterns[0].as_py() if len(patterns) else None
        if pattern is None:
            raise SqlFunctionError("This feature is not implemented: NULL patterns not supported in regex match")
        try:
            compiled = re.compile(clean_non_meta_escapes(pattern))
        except re.error as exc:
            raise SqlFunctionError(f"Internal error: error compiling regex pattern: {exc}") from None
        return pa.array([None if v is None else bool(compiled.search(v)) == matches for v in values.to_pylist()],
                        pa.bool_())

    return udf(run, [pa.string(), pa.string()], pa.bool_(), "stable", name=alias)


_WINDOW_BOUNDS_TYPES = [pa.timestamp("ns"), pa.string(), pa.int64(), pa.bool_(), pa.string(), pa.int64(), pa.bool_()]


def _window_bounds_udf(alias: str) -> Any:
    """``window.rs`` ``influx_window_bounds(time, every_type, every, every_negative, offset_type, offset,
    offset_negative)``: the stop of the earliest Flux window holding ``time`` (InfluxRPC's encoding of
    ``every``/``offset``). Fixed durations only; calendar-month windows answer 405."""

    def bounds(time: pa.Array, *encoded: pa.Array) -> pa.Array:
        vals = [a[0].as_py() if len(a) else None for a in encoded]
        every_ty, every, _neg, offset_ty, offset, _oneg = vals
        if every_ty != "fixed" or offset_ty != "fixed":
            raise SqlFunctionError("This feature is not implemented: influx_window_bounds with calendar months "
                                   "(embedded engine)")
        if not every:
            raise SqlFunctionError("Internal error: duration used as an interval cannot be zero")
        offset = offset or 0
        out = []
        for t in time.cast(pa.int64()).to_pylist():
            if t is None:
                out.append(None)
                continue
            shifted = t - offset
            out.append(shifted - shifted % every + every + offset)  # Python's % is Flux's truncate here
        return pa.array(out, pa.int64()).cast(pa.timestamp("ns"))

    return udf(bounds, _WINDOW_BOUNDS_TYPES, pa.timestamp("ns"), "stable", name=alias)


# ------------------------------------------------------------------------------------------------ tz
_TZ_CALL = re.compile(r"\btz\s*\((?:[^()']|\([^()]*\)|'(?:[^']|'')*')*?,\s*'((?:[^']|'')*)'\s*\)", re.IGNORECASE)
_FIXED_OFFSET = re.compile(r"^[+-]\d{2}(?::?\d{2})?$")


def _valid_zone(name: str) -> bool:
    if _FIXED_OFFSET.match(name):
        return True
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _tz_udf(types: list[pa.DataType], call_text: str, alias: str) -> Any:
    """``tz.rs``: 1 or 2 arguments; the zone must be a string literal naming a valid time zone."""
    if len(types) not in (1, 2) or not (pa.types.is_timestamp(types[0]) and types[0].unit == "ns") or (
            len(types) == 2 and not pa.types.is_string(types[1])):
        raise SqlFunctionError(
            "Error during planning: Failed to coerce arguments to satisfy a call to 'tz' function: coercion from "
            f"{', '.join(df_type_name(t) for t in types)} to the signature OneOf([Exact([Timestamp(ns)]), "
            'Exact([Timestamp(ns, "+TZ")]), Exact([Timestamp(ns), Utf8]), Exact([Timestamp(ns, "+TZ"), Utf8])]) '
            "failed")
    zone = "UTC"
    if len(types) == 2:
        m = _TZ_CALL.fullmatch(call_text.strip())
        if m is None:
            raise SqlFunctionError("Error during planning: tz requires its second argument to be a timezone "
                                   "string, got None")
        zone = m.group(1).replace("''", "'")
        if not _valid_zone(zone):
            raise SqlFunctionError(f'Error during planning: TZ requires a valid timezone string, got "{zone}"')
    out = pa.timestamp("ns", zone)

    def convert(time: pa.Array, *_zone: pa.Array) -> pa.Array:
        return time.view(out)

    return udf(convert, types, out, "immutable", name=alias)


# ------------------------------------------------------------------------------------------------ date_bin
def _interval_ns(arr: pa.Array, name: str) -> int:
    value = arr[0].as_py() if len(arr) else None
    if value is None:
        raise SqlFunctionError(f"Execution error: {name.upper()} requires scalar interval value")
    months, days, nanos = value.months, value.days, value.nanoseconds
    if months:
        raise SqlFunctionError(f"This feature is not implemented: {name} with a month interval (embedded engine)")
    stride = days * 86_400 * NS + nanos
    if stride <= 0:
        raise SqlFunctionError("Execution error: DATE_BIN stride must be non-zero")
    return stride


def date_bin_ns(t: int, stride: int, origin: int) -> int:
    """DataFusion ``date_bin`` for a nanosecond stride: the bin start at or before ``t``."""
    return origin + ((t - origin) // stride) * stride


def _origin_ns(arrs: tuple[pa.Array, ...]) -> int:
    if not arrs or not len(arrs[0]):
        return 0
    value = arrs[0].cast(pa.int64())[0].as_py()
    return 0 if value is None else value


def _gapfill_udf(types: list[pa.DataType], state: QueryFunctions, alias: str) -> Any:
    if len(types) not in (2, 3):
        raise SqlFunctionError(f"{GAPFILL_CONTEXT}handle_aggregate\ncaused by\nbuild_gapfill_node\ncaused by\n"
                               f"Error during planning: DATE_BIN_GAPFILL expects 2 or 3 arguments, got {len(types)}")
    out = pa.timestamp("ns", types[1].tz if pa.types.is_timestamp(types[1]) else None)
    # date_bin's signature: a string origin (or time) is coerced to a timestamp, as DataFusion does
    types = [pa.month_day_nano_interval(), out, *([out] if len(types) == 3 else [])]

    def binned(stride: pa.Array, time: pa.Array, *origin: pa.Array) -> pa.Array:
        stride_ns = _interval_ns(stride, GAPFILL)
        origin_ns = _origin_ns(origin)
        with state.lock:
            state.stride_ns, state.origin_ns = stride_ns, origin_ns
        ints = time.cast(pa.int64()).to_pylist()
        return pa.array([None if t is None else date_bin_ns(t, stride_ns, origin_ns) for t in ints], pa.int64()
                        ).cast(out)

    return udf(binned, types, out, "volatile", name=alias)


# ------------------------------------------------------------------------------------------------ wallclock
_UTC_NAMES = {"+00", "+0000", "+00:00", "-00", "-0000", "-00:00", "00", "0000", "00:00", "Etc/GMT", "Etc/GMT0",
              "Etc/GMTMinus0", "Etc/GMTPlus0", "Etc/Greenwich", "Etc/UCT", "Etc/UTC", "Etc/Universal", "Etc/Zulu",
              "GMT", "GMT0", "GMTMinus0", "GMTPlus0", "Greenwich", "UCT", "UTC", "Universal", "Zulu"}
_EPOCH = datetime(1970, 1, 1)


def _zone(name: str) -> Any:
    m = _FIXED_OFFSET.match(name)
    if m:
        sign = -1 if name[0] == "-" else 1
        digits = name[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) > 2 else 0)
        return timezone(sign * timedelta(minutes=minutes))
    return zoneinfo.ZoneInfo(name)


def _offset_from_utc_ns(utc_ns: int, zone: Any) -> int:
    """``local - utc`` (ns) in ``zone`` at the instant ``utc_ns`` (whole seconds, as chrono's offset)."""
    offset = datetime.fromtimestamp(utc_ns // NS, UTC).astimezone(zone).utcoffset()
    return int(offset.total_seconds()) * NS if offset is not None else 0


def _local_offsets(local_ns: int, zone: Any) -> list[int]:
    """``utc - local`` offsets (ns) at which the wall-clock time ``local_ns`` exists in ``zone``, smallest
    (the earlier instant) first: one, two (a repeated hour) or none (a skipped hour)."""
    naive = _EPOCH + timedelta(microseconds=local_ns // 1000)
    found = set()
    for fold in (0, 1):
        candidate = naive.replace(tzinfo=zone, fold=fold)
        if candidate.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive:
            offset = candidate.utcoffset()
            if offset is not None:
                found.add(-int(offset.total_seconds()) * NS)
    return sorted(found)


def _offset_from_local_ns(local_ns: int, zone: Any, interval_ns: int | None, utc_offset_ns: int) -> int:
    """``offset_from_local_ns`` of ``date_bin_wallclock.rs``: a repeated wall-clock time takes the earlier
    instant unless the stride is no longer than the repeat (then the input's own offset); a skipped one
    takes the offset from 24 hours before."""
    offsets = _local_offsets(local_ns, zone)
    if len(offsets) == 1:
        return offsets[0]
    if len(offsets) == 2:
        earliest, latest = offsets
        if interval_ns is not None and interval_ns <= latest - earliest:
            return -utc_offset_ns
        return earliest
    return _offset_from_local_ns(local_ns - 24 * 3600 * NS, zone, interval_ns, utc_offset_ns)


def wallclock_bin(utc_ns: int, stride_ns: int, origin_ns: int, zone_name: str) -> int:
    """``date_bin_wallclock`` of one instant (``date_bin_wallclock.rs``)."""
    if zone_name in _UTC_NAMES:
        return date_bin_ns(utc_ns, stride_ns, origin_ns)
    zone = _zone(zone_name)
    utc_offset = _offset_from_utc_ns(utc_ns, zone)
    local = date_bin_ns(utc_ns + utc_offset, stride_ns, origin_ns)
    return local + _offset_from_local_ns(local, zone, stride_ns, utc_offset)


def _wallclock_udf(types: list[pa.DataType], alias: str, gapfill: QueryFunctions | None = None) -> Any:
    """``date_bin_wallclock`` (or, with ``gapfill``, ``date_bin_wallclock_gapfill``, which also records its
    stride, origin and zone for the gap filler)."""
    if len(types) not in (2, 3) or not pa.types.is_timestamp(types[1]):
        raise SqlFunctionError(
            "Error during planning: Failed to coerce arguments to satisfy a call to 'date_bin_wallclock' function: "
            f"coercion from {', '.join(df_type_name(t) for t in types)} to the signature OneOf([Exact([Interval("
            "MonthDayNano), Timestamp(ns)]), Exact([Interval(MonthDayNano), Timestamp(ns), Timestamp(ns)]), "
            'Exact([Interval(MonthDayNano), Timestamp(ns, "+TZ")]), Exact([Interval(MonthDayNano), '
            'Timestamp(ns, "+TZ"), Timestamp(ns)])]) failed')
    out = pa.timestamp("ns", types[1].tz)
    zone = out.tz
    types = [pa.month_day_nano_interval(), out, *([pa.timestamp("ns")] if len(types) == 3 else [])]

    def binned(stride: pa.Array, time: pa.Array, *origin: pa.Array) -> pa.Array:
        stride_ns = _interval_ns(stride, "date_bin_wallclock")
        origin_ns = _origin_ns(origin)
        if gapfill is not None:
            with gapfill.lock:
                gapfill.stride_ns, gapfill.origin_ns, gapfill.wallclock_zone = stride_ns, origin_ns, zone
        ints = time.cast(pa.int64()).to_pylist()
        if zone is None:
            vals = [None if t is None else date_bin_ns(t, stride_ns, origin_ns) for t in ints]
        else:
            vals = [None if t is None else wallclock_bin(t, stride_ns, origin_ns, zone) for t in ints]
        return pa.array(vals, pa.int64()).cast(out)

    return udf(binned, types, out, "immutable", name=alias)


# ------------------------------------------------------------------------------------------------ gap filling
def _plan_nodes(plan: Any) -> list[Any]:
    """The chain of plan nodes from the root down (first input only)."""
    chain = [plan]
    while chain[-1].inputs():
        chain.append(chain[-1].inputs()[0])
    return chain


def _variant(plan: Any) -> tuple[str, Any]:
    v = plan.to_variant()
    return type(v).__name__, v


def _split_args(text: str) -> list[str]:
    args, depth, cur, quote = [], 0, "", False
    for ch in text:
        if ch == '"':
            quote = not quote
        if not quote and ch in "([{":
            depth += 1
        elif not quote and ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0 and not quote:
            args.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        args.append(cur.strip())
    return args


def _gapfill_error(*contexts: str, message: str) -> SqlFunctionError:
    chain = "".join(f"{c}\ncaused by\n" for c in contexts)
    return SqlFunctionError(f"{GAPFILL_CONTEXT}{chain}Error during planning: {message}")


def _find_aggregate(chain: list[Any]) -> tuple[int, Any] | None:
    for i, node in enumerate(chain):
        kind, v = _variant(node)
        if kind == "Aggregate" and any(_GAP_CALL.search(e.schema_name()) for e in v.group_by_exprs()):
            return i, v
    return None


def _time_bounds(plan: Any, time_col: str) -> tuple[tuple[int, bool] | None, tuple[int, bool] | None]:
    """(lower, upper) time bounds ``(ns, inclusive)`` from the filters below the aggregate."""
    conjuncts: list[Any] = []

    def split(expr: Any) -> None:
        if expr.variant_name() == "BinaryExpr":
            b = expr.to_variant()
            if b.op().upper() == "AND":
                split(b.left())
                split(b.right())
                return
        conjuncts.append(expr)

    def walk(node: Any) -> None:
        kind, v = _variant(node)
        if kind == "Filter":
            split(v.predicate())
        elif kind == "TableScan":
            for f in v.filters():
                split(f)
        for child in node.inputs():
            walk(child)

    walk(plan)
    lower: tuple[int, bool] | None = None
    upper: tuple[int, bool] | None = None
    flip = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "=": "="}
    for expr in conjuncts:
        if expr.variant_name() != "BinaryExpr":
            continue
        b = expr.to_variant()
        op, left, right = b.op(), b.left(), b.right()
        if op not in flip:
            continue
        if left.variant_name() == "Literal" and right.variant_name() == "Column":
            left, right, op = right, left, flip[op]
        if left.variant_name() != "Column" or right.variant_name() != "Literal":
            continue
        if left.to_variant().name() != time_col:
            continue
        lit = right.to_variant()
        if not pa.types.is_timestamp(_arrow_type(lit)):
            continue
        ns = lit.value_timestamp()[0]
        if ns is None:
            continue
        if op in (">", ">=", "="):
            cand = (ns + 1, True) if op == ">" else (ns, True)
            lower = cand if lower is None or cand[0] > lower[0] else lower
        if op in ("<", "<=", "="):
            cand = (ns - 1, True) if op == "<" else (ns, True)
            upper = cand if upper is None or cand[0] < upper[0] else upper
    return lower, upper


def _arrow_type(lit: Any) -> pa.DataType:
    try:
        return parse_types(str(lit.data_type()))[0]
    except ValueError:
        return pa.null()


def _fill_strategies(upper_nodes: list[tuple[str, Any]], agg_names: list[str]) -> dict[str, str]:
    """``{aggregate column name: 'locf' | 'interpolate'}`` from the projection above the aggregate."""
    strategies: dict[str, str] = {}
    for kind, v in upper_nodes:
        if kind != "Projection":
            continue
        for expr in v.projections():
            for m in re.finditer(r"\b(locf|interpolate)__f\d+\((.*)\)", expr.canonical_name()):
                inner = m.group(2)
                if inner in agg_names:
                    if strategies.get(inner, m.group(1)) != m.group(1):
                        raise SqlFunctionError(
                            f"{GAPFILL_CONTEXT}handle_projection\ncaused by\nThis feature is not implemented: "
                            f"multiple fill strategies for the same column")
                    strategies[inner] = m.group(1)
    return strategies


def _check_misuse(chain: list[Any]) -> None:
    text = str(chain[0].display_indent())
    misplaced = _GAP_CALL.search(text)
    if misplaced:
        raise _gapfill_error(message=f"{misplaced.group(1)} may only be used as a GROUP BY expression")
    for fill in FILLS:
        if re.search(rf"\b{fill}__f\d+\(", text):
            raise _gapfill_error(message=f"{fill} may only be used in the SELECT list of a gap-filling query")


def _run_gapfill(ctx: SessionContext, df: Any, state: QueryFunctions, limits: ResultLimits = NO_LIMITS) -> pa.Table:
    plan = df.optimized_logical_plan()
    chain = _plan_nodes(plan)
    found = _find_aggregate(chain)
    if found is None:
        _check_misuse(chain)
        return collect(df, limits)
    index, agg = found
    groups = [e.schema_name() for e in agg.group_by_exprs()]
    gap_positions = [i for i, g in enumerate(groups) if _GAP_CALL.search(g)]
    if sum(len(_GAP_CALL.findall(g)) for g in groups) > 1:
        raise _gapfill_error("handle_aggregate", "replace_date_bin_gapfill",
                             message="DATE_BIN_GAPFILL specified more than once")
    gap = gap_positions[0]
    head = _GAP_CALL.match(groups[gap])
    if head is None:
        raise _gapfill_error("handle_aggregate", "replace_date_bin_gapfill",
                             message="DATE_BIN_GAPFILL must be a top-level expression in the GROUP BY clause when "
                                     "gap filling. It cannot be part of another expression or cast")
    args = _split_args(groups[gap][head.end():-1])
    source = args[1] if len(args) > 1 else ""
    # get_column: a column, possibly under CAST or tz()
    for _ in range(4):
        source = re.sub(r"^tz(?:__f\d+)?\((.*?)(?:,.*)?\)$", r"\1", source)
        source = re.sub(r"^CAST\((.*?) AS .*\)$", r"\1", source)
    if not re.fullmatch(r"[\w.\"]+", source):
        raise _gapfill_error("handle_aggregate", "build_gapfill_node", "get time column",
                             message="DATE_BIN_GAPFILL requires a column as the source argument")
    time_col = source.rsplit(".", 1)[-1].strip('"')
    lower, upper = _time_bounds(chain[index].inputs()[0], time_col)
    if lower is None or upper is None:
        which = ("both upper and lower time bounds" if lower is None and upper is None
                 else "lower time bound" if lower is None else "upper time bound")
        raise _gapfill_error("handle_aggregate", "build_gapfill_node", "validate time range",
                             message=f"gap-filling query is missing {which}")
    upper_nodes = [_variant(node) for node in chain[:index]]
    for kind, _v in upper_nodes:
        if kind not in ("Projection", "Sort", "Limit", "Filter"):
            raise SqlFunctionError(f"This feature is not implemented: gap filling below a {kind} "
                                   "(embedded engine)")
    table = collect(ctx.create_dataframe_from_logical_plan(chain[index]), limits)
    agg_names = [e.schema_name() for e in agg.aggregate_exprs()]
    strategies = _fill_strategies(upper_nodes, agg_names)
    filled = _fill(table, gap, len(groups), lower[0], upper[0], state, strategies, agg_names)
    return _run_upper(filled, chain[index], upper_nodes, limits)


def _fill(table: pa.Table, gap: int, n_groups: int, lower: int, upper: int, state: QueryFunctions,
          strategies: dict[str, str], agg_names: list[str]) -> pa.Table:
    """The server's GapFill over the aggregate's output (``exec/gapfill``)."""
    if table.num_rows == 0 or state.stride_ns is None:
        return table
    stride, origin = state.stride_ns, state.origin_ns
    zone = state.wallclock_zone
    if zone is not None and zone not in _UTC_NAMES:
        first = wallclock_bin(lower, stride, origin, zone)
        last = wallclock_bin(upper, stride, origin, zone)
        all_bins = _wallclock_bins(first, last, stride, zone)
    else:
        first = date_bin_ns(lower, stride, origin)
        last = date_bin_ns(upper, stride, origin)
        all_bins = set(range(first, last + 1, stride))
    names = table.column_names
    series_idx = [i for i in range(n_groups) if i != gap]
    cols = [c.to_pylist() for c in table.columns]
    times = table.column(gap).cast(pa.int64()).to_pylist()
    by_series: dict[tuple, dict[int, int]] = {}
    order: list[tuple] = []
    for row in range(table.num_rows):
        key = tuple(cols[i][row] for i in series_idx)
        if key not in by_series:
            by_series[key] = {}
            order.append(key)
        if times[row] is not None:
            by_series[key][times[row]] = row
    order.sort(key=lambda k: tuple((v is not None, v) for v in k))
    out: list[list[Any]] = [[] for _ in names]
    for key in order:
        rows = by_series[key]
        bins = sorted(all_bins | set(rows))
        for c in range(n_groups, len(names)):
            agg = agg_names[c - n_groups]
            kind = strategies.get(agg)
            values = [cols[c][rows[b]] if b in rows else None for b in bins]
            if kind == "locf":
                prev = None
                for j, v in enumerate(values):
                    if v is None:
                        values[j] = prev
                    else:
                        prev = v
            elif kind == "interpolate" and pa.types.is_struct(table.schema.field(c).type):
                values = _interpolate_selector(bins, rows, cols[c], table.schema.field(c).type)
            elif kind == "interpolate":
                values = _interpolate(bins, rows, cols[c], table.schema.field(c).type)
            elif agg.startswith("count("):
                values = [0 if b not in rows else v for b, v in zip(bins, values, strict=True)]
            out[c].extend(values)
        for j, i in enumerate(series_idx):
            out[i].extend([key[j]] * len(bins))
        out[gap].extend(bins)
    arrays = []
    for c in range(len(names)):
        typ = table.schema.field(c).type
        if c == gap:
            arrays.append(pa.array(out[c], pa.int64()).cast(typ))
        elif pa.types.is_dictionary(typ):
            arrays.append(pa.array(out[c], typ.value_type).dictionary_encode().cast(typ))
        elif pa.types.is_struct(typ):
            arrays.append(_struct_array(out[c], typ))
        else:
            arrays.append(pa.array(out[c], typ))
    schema = pa.schema([f.with_nullable(True) for f in table.schema])
    return pa.Table.from_arrays(arrays, schema=schema)


def _wallclock_bins(first: int, last: int, stride: int, zone_name: str) -> set[int]:
    """Bins from ``first`` up to ``last`` stepping in wall-clock time (``date_bin_wallclock_gap_expander.rs``
    ``TimestampIterator``: a step across an offset change moves by the change when it is shorter than the
    stride; a step into a skipped local time keeps the old offset until the next step)."""
    zone = _zone(zone_name)
    end = _wallclock_steps(last, stride, zone, 2)[-1]
    out = set()
    for ts in _wallclock_steps(first, stride, zone, None):
        if ts >= end:
            break
        out.add(ts)
    return out


def _wallclock_steps(ts: int, stride: int, zone: Any, count: int | None) -> list[int] | Any:
    def steps() -> Any:
        cur, offset = ts, _offset_from_utc_ns(ts, zone)
        while True:
            yield cur
            cur += stride
            nxt = _offset_from_utc_ns(cur, zone)
            if nxt == offset:
                continue
            diff = abs(offset - nxt)
            if diff >= stride:
                offset = nxt
            elif nxt < offset:  # leaving DST: make up for the gained time
                cur += offset - nxt
                offset = nxt
            elif _offset_from_utc_ns(cur - diff, zone) == nxt:  # entered DST away from the change
                cur += offset - nxt
                offset = nxt
    if count is None:
        return steps()
    gen = steps()
    return [next(gen) for _ in range(count)]


def _struct_array(values: list[Any], typ: pa.StructType) -> pa.StructArray:
    """A struct column whose null rows have null fields too (as arrow-rs builds a null struct scalar), so a
    field read from a filled row is null."""
    mask = pa.array([v is None for v in values])
    children = [pa.array([None if v is None else v.get(f.name) for v in values], f.type) for f in typ]
    return pa.StructArray.from_arrays(children, fields=list(typ), mask=mask)


def _interpolate_selector(bins: list[int], rows: dict[int, int], column: list[Any],
                          typ: pa.StructType) -> list[dict[str, Any]]:
    """``algo/interpolate.rs`` for a selector struct: only ``value`` is interpolated; on filled rows the
    other fields are null; the struct itself is never null (no validity buffer)."""
    value_type = typ.field("value").type if typ.get_field_index("value") >= 0 else pa.float64()
    inner = [None if d is None else d.get("value") for d in column]
    values = _interpolate(bins, rows, inner, value_type)
    out = []
    for b, v in zip(bins, values, strict=True):
        base = column[rows[b]] if b in rows and column[rows[b]] is not None else {}
        row = {f.name: (base.get(f.name) if b in rows else None) for f in typ}
        if "value" in row:
            row["value"] = v
        out.append(row)
    return out


def _interpolate(bins: list[int], rows: dict[int, int], column: list[Any], typ: pa.DataType) -> list[Any]:
    """``algo/interpolate.rs``: between two consecutive input rows with values, linear in time; an input
    row holding null ends a segment; integers truncated toward zero."""
    points = sorted((t, column[r]) for t, r in rows.items())
    out: list[Any] = []
    for b in bins:
        if b in rows:
            out.append(column[rows[b]])
            continue
        before = [p for p in points if p[0] < b]
        after = [p for p in points if p[0] > b]
        if not before or not after or before[-1][1] is None or after[0][1] is None:
            out.append(None)
            continue
        (t0, v0), (t1, v1) = before[-1], after[0]
        value = (v1 - v0) / (t1 - t0) * (b - t0) + v0
        out.append(int(value) if pa.types.is_integer(typ) else value)
    return out


def _run_upper(filled: pa.Table, agg_plan: Any, upper_nodes: list[tuple[str, Any]],
               limits: ResultLimits = NO_LIMITS) -> pa.Table:
    """Run the plan nodes above the aggregate (bottom up) over the filled rows, in a session where the rows
    carry the aggregate's column qualifier."""
    qualifiers = set()
    _kind, agg = _variant(agg_plan)
    for e in agg.group_by_exprs():
        if e.variant_name() == "Column":
            rel = e.to_variant().relation()
            if rel:
                qualifiers.add(rel)
    if len(qualifiers) > 1:
        raise SqlFunctionError("This feature is not implemented: gap filling over columns of several tables "
                               "(embedded engine)")
    relation = qualifiers.pop() if qualifiers else "gapfill"
    ctx2 = SessionContext()
    batches = filled.to_batches() or [pa.RecordBatch.from_pylist([], schema=filled.schema)]
    ctx2.register_record_batches('"' + relation.replace('"', '""') + '"', [batches])
    out = ctx2.table('"' + relation.replace('"', '""') + '"')
    for kind, v in reversed(upper_nodes):
        if kind == "Projection":
            # names as in the original plan (the filled rows carry one qualifier for all their columns)
            out = out.select(*(Expr(e) if e.variant_name() in ("Alias", "Column")
                               else Expr(e).alias(e.schema_name()) for e in v.projections()))
        elif kind == "Filter":
            out = out.filter(Expr(v.predicate()))
        elif kind == "Sort":
            out = out.sort(*(SortExpr(Expr(e.expr()), e.ascending(), e.nulls_first()) for e in v.sort_exprs()))
            if v.get_fetch_val():
                out = out.limit(v.get_fetch_val())
        elif kind == "Limit":
            fetch = v.fetch().python_value() if v.fetch() is not None else None
            skip = v.skip().python_value() if v.skip() is not None else 0
            out = out.limit(fetch, skip or 0)
    return collect(out, limits)
