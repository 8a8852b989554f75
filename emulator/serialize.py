"""Arrow query results -> response bodies in the five formats of ``/api/v3/query_sql``.

Rendering rules (http reference §7, arrow-rs as InfluxDB 3 Core uses it):

* ``json``: a compact array of row objects, ``[]`` when empty; ``jsonl``: one object per line,
  each ending in ``\\n``. Keys follow the column order; null cells are left out of the object
  (arrow-json ``explicit_nulls=false``). NaN and ±inf floats are written as ``null`` (arrow-json).
* timestamps render as ``YYYY-MM-DDTHH:MM:SS`` with no ``Z``; a fraction appears only when
  non-zero, with 3, 6 or 9 digits (chrono ``%.f``, used by arrow-cast's display). Zoned
  timestamps (not InfluxDB's ``time``; e.g. ``now()``) get their offset, ``Z`` for UTC (inferred).
* floats: shortest round-trip digits in ryu style (``1.0``, ``0.9``, ``1e20``, ``1.5e-7``); ints
  as integers; bools ``true``/``false``; dictionary (tag) columns as their string values.
* ``csv``: arrow-csv: header row, ``,`` separator, ``\\n`` line ends, fields quoted only when they
  contain ``,``, ``"``, ``\\r`` or ``\\n`` (quotes doubled), nulls empty, NaN as ``NaN``.
* ``pretty``: arrow's pretty table (``+---+`` borders, one space padding, left-aligned, nulls
  blank), no trailing newline.
* ``parquet``: the table written by pyarrow.

Column conversion is vectorised with pyarrow.compute where the rule allows it (times, ints,
bools, plain strings); floats and strings needing JSON escapes go through Python per value.
"""

from __future__ import annotations

import datetime
import io
import json
import math
import zoneinfo
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from emulator.errors import text_error

__all__ = [
    "CONTENT_TYPES",
    "FORMATS",
    "UnknownFormatError",
    "choose_format",
    "serialize",
]

#: Response Content-Type by format.
CONTENT_TYPES: dict[str, str] = {
    "json": "application/json",
    "jsonl": "application/jsonl",
    "csv": "text/csv",
    "pretty": "text/plain; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
#: Accepted ``format`` values mapped to the canonical name.
FORMATS: dict[str, str] = {
    "json": "json",
    "jsonl": "jsonl",
    "json_lines": "jsonl",
    "csv": "csv",
    "pretty": "pretty",
    "parquet": "parquet",
}
_ACCEPT_EXACT = {
    "application/json": "json",
    "text/csv": "csv",
    "text/plain": "pretty",
    "application/vnd.apache.parquet": "parquet",
}


class UnknownFormatError(ValueError):
    """A ``format`` value the server does not know (the HTTP layer answers its serde 400)."""


def choose_format(format_param: str | None, accept_header: str | None) -> str:
    """The response format from ``format`` and ``Accept`` (reference §7).

    An ``Accept`` value the server does not recognise is 400 ``invalid mime type (<v>)`` even
    when ``format`` is given; otherwise ``format`` wins, then ``Accept``, then json.
    """
    from_accept = "json"
    if accept_header is not None:  # an empty header value is an unknown mime type too
        if "*/*" in accept_header or "text/html" in accept_header:
            from_accept = "json"
        else:
            try:
                from_accept = _ACCEPT_EXACT[accept_header]
            except KeyError:
                raise text_error(400, f"invalid mime type ({accept_header})") from None
    if format_param is None:
        return from_accept
    try:
        return FORMATS[format_param]
    except KeyError:
        raise UnknownFormatError(format_param) from None


def serialize(table: pa.Table, fmt: str) -> tuple[bytes, str]:
    """Render ``table`` in ``fmt`` (a canonical or alias format name); returns (body, content type)."""
    try:
        canonical = FORMATS[fmt]
    except KeyError:
        raise UnknownFormatError(fmt) from None
    body = _WRITERS[canonical](table)
    return body, CONTENT_TYPES[canonical]


# --- scalar renderings ------------------------------------------------------------------------


def ryu_float(value: float) -> str:
    """A float as Rust's ``ryu`` prints it (shortest digits; ``1.0``, ``1e20``, ``1.5e-7``)."""
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = repr(value)
    if "e" not in text:
        return text
    mantissa, _, exp_text = text.partition("e")
    exponent = int(exp_text)
    if -5 <= exponent < 0:
        # ryu writes 1e-5 .. 9.99e-5 as plain decimals (Python switches to exponent form earlier)
        sign = "-" if mantissa.startswith("-") else ""
        digits = mantissa.lstrip("-").replace(".", "")
        return f"{sign}0.{'0' * (-exponent - 1)}{digits}"
    if mantissa.endswith(".0"):
        mantissa = mantissa[:-2]
    return f"{mantissa}e{exponent}"


def _json_float(value: float) -> str:
    if value != value or math.isinf(value):
        return "null"
    return ryu_float(value)


# --- column -> string array conversion --------------------------------------------------------


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _decode(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Dictionary columns (tags) as their plain values."""
    if pa.types.is_dictionary(column.type):
        return column.cast(column.type.value_type)
    return column


def _pad(values: pa.ChunkedArray | pa.Array, width: int) -> pa.ChunkedArray | pa.Array:
    return pc.utf8_lpad(pc.cast(values, pa.string()), width=width, padding="0")


def _time_text(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """``YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|.fffffffff]`` for a timestamp column (chrono ``%.f``).

    Naive timestamps (InfluxDB's ``time``) get no zone suffix. Zoned ones (e.g. from ``now()``)
    get their UTC offset, ``Z`` for zero (inferred: arrow-cast RFC 3339 with ``use_z``).
    Built from vectorised date parts (pyarrow's strftime is several times slower)."""
    tz = column.type.tz
    if column.type.unit != "ns":
        try:
            column = column.cast(pa.timestamp("ns", tz))
        except pa.ArrowInvalid:  # outside the ns range (years 1677-2262): render per value
            return _zoned_time_texts(column, tz, naive=tz is None)
    if tz is None:
        return _naive_time_text(column)
    if tz in ("UTC", "+00:00", "Z", "Etc/UTC"):
        return pc.binary_join_element_wise(_naive_time_text(column.cast(pa.timestamp("ns"))), "Z", "")
    return _zoned_time_texts(column, tz)


def _tzinfo(name: str) -> datetime.tzinfo:
    """A fixed ``±HH:MM`` offset or an IANA zone name, as Arrow timestamp types carry them."""
    if name[:1] in "+-" and len(name) == 6 and name[3] == ":":
        sign = -1 if name[0] == "-" else 1
        return datetime.timezone(sign * datetime.timedelta(hours=int(name[1:3]), minutes=int(name[4:6])))
    return zoneinfo.ZoneInfo(name)


def _fraction(frac: int) -> str:
    """chrono ``%.f``: nothing for zero, else 3, 6 or 9 digits."""
    if not frac:
        return ""
    if frac % 1_000_000 == 0:
        return f".{frac // 1_000_000:03d}"
    if frac % 1_000 == 0:
        return f".{frac // 1_000:06d}"
    return f".{frac:09d}"


_UNIT_NANOS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


def _zoned_time_texts(column: pa.ChunkedArray, tz: str | None, *, naive: bool = False) -> pa.Array:
    """Per-value rendering: wall-clock time in the column's zone with its offset (``Z`` for a zero
    offset), or without any suffix when ``naive``."""
    zone = datetime.UTC if tz is None else _tzinfo(tz)
    factor = _UNIT_NANOS[column.type.unit]
    out: list[str | None] = []
    for value in column.cast(pa.int64()).to_pylist():
        if value is None:
            out.append(None)
            continue
        secs, frac = divmod(value * factor, 1_000_000_000)
        local = datetime.datetime.fromtimestamp(secs, zone)
        if naive:
            out.append(local.replace(tzinfo=None).isoformat(timespec="seconds") + _fraction(frac))
            continue
        offset = local.utcoffset() or datetime.timedelta(0)
        text = local.replace(tzinfo=None).isoformat(timespec="seconds") + _fraction(frac)
        if not offset:
            out.append(text + "Z")
            continue
        minutes = int(offset.total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        out.append(f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}")
    return pa.array(out, pa.string())


#: below this, flooring a Timestamp(ns) to whole seconds leaves the int64 range (the first second after
#: i64::MIN, 1677-09-21T00:12:43.145224192 and on): such columns are rendered value by value
_FLOOR_SAFE_NS = -9_223_372_036_000_000_000


def _naive_time_text(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    low = pc.min(column.cast(pa.int64())).as_py()
    if low is not None and low < _FLOOR_SAFE_NS:
        return _zoned_time_texts(column, None, naive=True)  # floor_temporal would wrap to 2262
    whole = pc.floor_temporal(column, unit="second")  # Timestamp(ns) spans years 1677-2262 only
    text = pc.binary_join_element_wise(
        _pad(pc.year(whole), 4), "-", _pad(pc.month(whole), 2), "-", _pad(pc.day(whole), 2), "T",
        _pad(pc.hour(whole), 2), ":", _pad(pc.minute(whole), 2), ":", _pad(pc.second(whole), 2), "",
    )  # fmt: skip
    frac = pc.subtract(column.cast(pa.int64()), whole.cast(pa.int64()))
    if not pc.any(pc.not_equal(frac, 0)).as_py():
        return text
    millis_only = pc.equal(pc.subtract(frac, pc.multiply(pc.divide(frac, 1_000_000), 1_000_000)), 0)
    micros_only = pc.equal(pc.subtract(frac, pc.multiply(pc.divide(frac, 1_000), 1_000)), 0)
    fraction = pc.case_when(
        pc.make_struct(pc.equal(frac, 0), millis_only, micros_only),
        "",
        pc.binary_join_element_wise(".", _pad(pc.divide(frac, 1_000_000), 3), ""),
        pc.binary_join_element_wise(".", _pad(pc.divide(frac, 1_000), 6), ""),
        pc.binary_join_element_wise(".", _pad(frac, 9), ""),
    )
    return pc.binary_join_element_wise(text, fraction, "")


def _float_text(column: pa.ChunkedArray | pa.Array, python_fn: Callable[[float], str]) -> pa.Array:
    """Floats as ryu text: Arrow's cast where it provably matches (round-trips, no exponent,
    magnitude in [1e-4, 1e15) or zero, ``.0`` appended to whole numbers), Python elsewhere."""
    column = column.cast(pa.float64())
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    text = pc.cast(column, pa.string())
    magnitude = pc.abs(column)
    ok = pc.and_(
        pc.equal(pc.cast(text, pa.float64()), column),
        pc.and_(
            pc.invert(pc.match_substring(text, "e")),
            pc.or_(
                pc.equal(magnitude, 0),
                pc.and_(pc.greater_equal(magnitude, 1e-4), pc.less(magnitude, 1e15)),
            ),
        ),
    )
    ok = pc.fill_null(ok, True)  # null cells stay null below
    text = pc.if_else(pc.match_substring(text, "."), text, pc.binary_join_element_wise(text, ".0", ""))
    bad = pc.invert(ok)
    if pc.any(bad).as_py():
        slow_values = column.filter(bad).to_pylist()
        replacement = pa.array([python_fn(v) for v in slow_values], pa.string())
        text = pc.replace_with_mask(text, bad, replacement)
    return text


def _python_map(column: pa.ChunkedArray, fn: Callable[[object], str]) -> pa.Array:
    return pa.array([None if v is None else fn(v) for v in column.to_pylist()], pa.string())


def _json_string(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """JSON string literals (serde_json escaping, non-ASCII kept) for a utf8 column."""
    column = column.cast(pa.string())
    if pc.any(pc.match_substring_regex(column, pattern=r"[\x00-\x1f]")).as_py():
        return _python_map(column, lambda v: json.dumps(v, ensure_ascii=False))
    escaped = pc.replace_substring(column, pattern="\\", replacement="\\\\")
    escaped = pc.replace_substring(escaped, pattern='"', replacement='\\"')
    return pc.binary_join_element_wise('"', escaped, '"', "")


def _json_values(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """JSON value texts (null where the cell is null) for one column."""
    column = _decode(column)
    t = column.type
    if pa.types.is_timestamp(t):
        return pc.binary_join_element_wise('"', _time_text(column), '"', "")
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return column.cast(pa.string())
    if pa.types.is_floating(t):
        return _float_text(column, _json_float)
    if _is_text(t):
        return _json_string(column)
    if pa.types.is_null(t):
        return pa.nulls(len(column), pa.string())
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _python_map(column, lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":")))
    if pa.types.is_struct(t):
        return _struct_texts(column, _json_values, json_keys=True)
    return _python_map(column, lambda v: json.dumps(str(v), ensure_ascii=False))


def _struct_texts(column: pa.ChunkedArray | pa.Array, child_texts: Callable[[Any], Any], *,
                  json_keys: bool) -> pa.Array:
    """Struct cells (e.g. the selector functions' ``{value, time}``) as arrow-json objects
    (``{"value":23.0,"time":"…"}``, null fields left out) or arrow-cast display (``{value: 23.0, time: …}``)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(array) == 0:
        return pa.array([], pa.string())
    parts = []
    for i, fld in enumerate(array.type):
        child = pc.struct_field(array, [i])
        texts = child_texts(pa.chunked_array([child]))
        texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
        if json_keys:
            parts.append(pc.fill_null(pc.binary_join_element_wise(
                json.dumps(fld.name, ensure_ascii=False) + ":", texts, ",", ""), ""))
        else:
            parts.append(pc.binary_join_element_wise(f"{fld.name}: ", pc.fill_null(texts, ""), "", ""))
    if json_keys:
        inner = pc.replace_substring_regex(pc.binary_join_element_wise(*parts, ""), pattern=",$", replacement="")
    else:
        inner = pc.binary_join_element_wise(*parts, ", ")
    out = pc.binary_join_element_wise("{", inner, "}", "")
    return pc.if_else(pc.is_valid(array), out, pa.nulls(len(array), pa.string()))


def _display_values(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """arrow-cast display texts (null where the cell is null), as csv and pretty show them."""
    column = _decode(column)
    t = column.type
    if pa.types.is_timestamp(t):
        return _time_text(column)
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return column.cast(pa.string())
    if pa.types.is_floating(t):
        return _float_text(column, ryu_float)
    if pa.types.is_null(t):
        return pa.nulls(len(column), pa.string())
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        # arrow-cast shows a list as ``[a, b]`` (system.nodes ``mode``, system.last_caches columns)
        return _python_map(column, lambda v: "[" + ", ".join("" if x is None else str(x) for x in v) + "]")
    if pa.types.is_struct(t):
        return _struct_texts(column, _display_values, json_keys=False)
    return column.cast(pa.string())


def _concat_rows(rows: pa.ChunkedArray | pa.Array) -> bytes:
    """Concatenate a string array's values (no separators) into bytes."""
    if isinstance(rows, pa.ChunkedArray):
        return b"".join(_concat_rows(chunk) for chunk in rows.chunks)
    if len(rows) == 0:
        return b""
    rows = rows.cast(pa.string())
    offsets = rows.buffers()[1]
    data = rows.buffers()[2]
    start = int.from_bytes(offsets.to_pybytes()[rows.offset * 4 : rows.offset * 4 + 4], "little", signed=True)
    end_pos = (rows.offset + len(rows)) * 4
    end = int.from_bytes(offsets.to_pybytes()[end_pos : end_pos + 4], "little", signed=True)
    return data.to_pybytes()[start:end] if data is not None else b""


def _row_objects(table: pa.Table, terminator: str) -> pa.ChunkedArray | pa.Array:
    """One ``{…}`` + terminator string per row, nulls left out."""
    parts = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        prefix = json.dumps(name, ensure_ascii=False) + ":"
        # `"name":value,` where the cell is set, "" where it is null
        parts.append(pc.fill_null(pc.binary_join_element_wise(prefix, _json_values(column), ",", ""), ""))
    if parts:
        inner = pc.binary_join_element_wise(*parts, "")
        inner = pc.replace_substring_regex(inner, pattern=",$", replacement="")
    else:
        inner = pa.array([""] * table.num_rows, pa.string())
    return pc.binary_join_element_wise("{", inner, "}" + terminator, "")


def _write_json(table: pa.Table) -> bytes:
    if table.num_rows == 0:
        return b"[]"
    body = _concat_rows(_row_objects(table, ","))
    return b"[" + body[:-1] + b"]"


def _write_jsonl(table: pa.Table) -> bytes:
    if table.num_rows == 0:
        return b""
    return _concat_rows(_row_objects(table, "\n"))


def _csv_quote(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    needs = pc.match_substring_regex(column, pattern='[,"\r\n]')
    quoted = pc.binary_join_element_wise(
        '"', pc.replace_substring(column, pattern='"', replacement='""'), '"', ""
    )
    return pc.if_else(needs, quoted, column)


def _csv_cell(text: str) -> str:
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _write_csv(table: pa.Table) -> bytes:
    header = ",".join(_csv_cell(name) for name in table.column_names) + "\n"
    if table.num_rows == 0 or table.num_columns == 0:
        return header.encode("utf-8")
    cells = []
    for column in table.columns:
        text = _display_values(column)
        if _is_text(_decode(column).type) or pa.types.is_struct(column.type):
            text = _csv_quote(text)
        cells.append(pc.fill_null(text, ""))
    if len(cells) == 1:
        # the csv crate quotes a record made of one empty field (else it would read as no record)
        cells[0] = pc.if_else(pc.equal(cells[0], ""), '""', cells[0])
    rows = pc.binary_join_element_wise(*cells, ",")
    rows = pc.binary_join_element_wise(rows, "\n", "")
    return header.encode("utf-8") + _concat_rows(rows)


def _write_pretty(table: pa.Table) -> bytes:
    """arrow's pretty table; widths count code points (comfy-table counts display width)."""
    names = table.column_names
    cells = []
    widths = []
    for name, column in zip(names, table.columns, strict=True):
        text = pc.fill_null(_display_values(column), "")
        longest = pc.max(pc.utf8_length(text)).as_py() if len(text) else 0
        width = max(len(name), longest or 0)
        widths.append(width)
        cells.append(pc.utf8_rpad(text, width=width, padding=" "))
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    header = "|" + "|".join(f" {name.ljust(w)} " for name, w in zip(names, widths, strict=True)) + "|"
    head = f"{border}\n{header}\n{border}\n".encode()
    if table.num_rows == 0 or not cells:
        return head + border.encode()
    rows = pc.binary_join_element_wise("| ", pc.binary_join_element_wise(*cells, " | "), " |\n", "")
    return head + _concat_rows(rows) + border.encode()


def _write_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


_WRITERS: dict[str, Callable[[pa.Table], bytes]] = {
    "json": _write_json,
    "jsonl": _write_jsonl,
    "csv": _write_csv,
    "pretty": _write_pretty,
    "parquet": _write_parquet,
}
