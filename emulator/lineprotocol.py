"""InfluxDB line protocol parser with the real server's grammar and error texts.

The grammar and messages follow the ``influxdb_line_protocol`` crate that InfluxDB 3 Core uses
(influxdata/influxdb3_core ``influxdb_line_protocol/src/lib.rs``, nom parser):

* lines are split like Go's ``scanLine``: a ``\\n`` inside a quoted field string or after a
  backslash does not end a line; leading spaces/tabs/newlines and ``#`` comment lines are skipped;
* measurement escapes ``,`` ``space`` ``\\``; tag keys/values and field keys escape ``,`` ``=``
  ``space`` ``\\``; any other escaped character keeps its backslash; a name ending in a backslash
  is an error;
* field values: ``-?\\d+i`` (int64), ``\\d+u`` (uint64), floats ``-?\\d+[.\\d+][e[+-]\\d+]``,
  quoted strings (``\\"`` and ``\\\\`` unescaped, a lone backslash kept), booleans
  ``t T true True TRUE f F false False FALSE``;
* separators are single or repeated spaces only (a tab is not one); anything left over is
  ``Could not parse entire line. Found trailing content: `…```, so a trailing space after the
  fields or a CR of a CRLF line end is an error, exactly as on the server;
* timestamps are scaled by the precision without wrapping: a product outside i64 stays as the Python
  int, and the engine rejects that line ``timestamp, <ts>, out of range for precision: <P>`` (the
  server's checked multiply since 3.6, influxdb3_types ``Precision::to_nanos``).

Line numbers are the 1-based ordinal of the non-empty (non-blank, non-comment) line, as the
server's write validator enumerates parser results. For a parse error ``original_line`` is the
body line with that same ordinal in Rust ``str::lines()`` order (the server zips the two
sequences); for schema errors found later it is the parsed line's canonical rendering
(``ParsedLine.raw``). Either is cut to 20 bytes only when serialised (``LineError.to_json``).

Two paths: a fast one (``str.split`` and a per-shape converter table, see ``_fast_fields``) for
lines without backslashes, quotes, tabs, CRs or NULs, and a port of the nom grammar
(``_parse_slow``) for everything else and for every error; tests check that both agree.
"""

from __future__ import annotations

import gc
import operator
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, NamedTuple

__all__ = [
    "PRECISIONS",
    "PRECISIONS_V1",
    "FieldValue",
    "LineError",
    "ParsedLine",
    "PrecisionError",
    "ColumnarResult",
    "ColumnarShape",
    "display_line",
    "normalize_precision",
    "parse_columnar",
    "parse_lines",
    "truncate_original_line",
]


# --- cyclic GC pause -------------------------------------------------------------------------

_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_restore = False


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a write's lines are parsed and checked.

    Parsed lines form no reference cycles and are freed by reference counting, while collections set off
    by their many small allocations (over a large buffered heap) cost more than the parsing itself.
    Concurrent and nested pauses are counted: the collector is re-enabled when the last one ends, and only
    if it was enabled when the first began.
    """
    global _gc_pausers, _gc_restore
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_restore = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_restore:
                gc.enable()

# --- precision -------------------------------------------------------------------------------

#: Accepted precision words of ``/api/v3/write_lp`` mapped to the canonical unit.
PRECISIONS: dict[str, str] = {
    "auto": "auto",
    "s": "s",
    "second": "s",
    "ms": "ms",
    "millisecond": "ms",
    "us": "us",
    "u": "us",
    "microsecond": "us",
    "ns": "ns",
    "n": "ns",
    "nanosecond": "ns",
}
#: Accepted precision words of ``/write`` (v1) and ``/api/v2/write``: no ``auto``.
PRECISIONS_V1: dict[str, str] = {k: v for k, v in PRECISIONS.items() if v != "auto"}

_MULTIPLIER = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
U64_MAX = 2**64 - 1
#: Maximum byte length of a string component: measurement, tag key and value, field key, string field value
#: (influxdb_line_protocol ``STRING_LENGTH_LIMIT_IN_BYTES``). The server is built with the crate's
#: ``large-strings`` feature by default since 3.9 (influxdb3/Cargo.toml), which raises 64 KiB to 1 MiB.
STRING_LIMIT_BYTES = 1_048_576
#: ``original_line`` in write errors is cut to this many bytes.
ORIGINAL_LINE_MAX_BYTES = 20
_MAX_CONTEXT_CHARS = 10


class PrecisionError(ValueError):
    """An unknown precision word (the HTTP layer answers 400 ``serde error: …``)."""


def normalize_precision(word: str, *, allow_auto: bool = True) -> str:
    """Map a precision word to ``auto``/``s``/``ms``/``us``/``ns``; raise PrecisionError if unknown."""
    table = PRECISIONS if allow_auto else PRECISIONS_V1
    try:
        return table[word]
    except KeyError:
        raise PrecisionError(word) from None


def _auto_unit(ts: int) -> str:
    """The server's magnitude rule for ``precision=auto`` (reference §6)."""
    magnitude = abs(ts) // 1_000_000_000
    if magnitude < 5:
        return "s"
    if magnitude < 5_000:
        return "ms"
    if magnitude < 5_000_000:
        return "us"
    return "ns"


def to_nanoseconds(ts: int, unit: str) -> int:
    """Convert a line timestamp in ``unit`` (``auto`` allowed) to nanoseconds; the result may lie outside
    i64 (see :func:`time_out_of_range`)."""
    if unit == "auto":
        unit = _auto_unit(ts)
    return ts * _MULTIPLIER[unit]


_PRECISION_DEBUG = {1_000_000_000: "Second", 1_000_000: "Millisecond", 1_000: "Microsecond", 1: "Nanosecond"}


def time_out_of_range(line: ParsedLine) -> str | None:
    """The server's error text when ``line``'s timestamp times its precision leaves i64, else None.

    ``timestamp, <ts>, out of range for precision: <Second|Millisecond|Microsecond>`` (influxdb3_types
    ``write.rs`` ``Precision::to_nanos``, checked since 3.6). ``auto`` never overflows: it picks ns for
    large values.
    """
    if I64_MIN <= line.time_ns <= I64_MAX or not line.timestamp:
        return None
    name = _PRECISION_DEBUG.get(abs(line.time_ns // line.timestamp), "Auto")
    return f"timestamp, {line.timestamp}, out of range for precision: {name}"


# --- results ---------------------------------------------------------------------------------

#: A field as ``(type, value)``; type is one of ``int64 uint64 float64 utf8 bool``.
FieldValue = tuple[str, Any]


class ParsedLine(NamedTuple):
    """One valid line. ``tags`` keeps input order; ``timestamp`` is the line's own timestamp before
    precision (None when absent); ``time_ns`` is the row time in nanoseconds."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_ns: int
    line_number: int
    timestamp: int | None

    @property
    def raw(self) -> str:
        """The ``original_line`` the server reports when this line fails schema checks (column
        types, limits): the crate's canonical rendering of the parsed line (``ParsedLine``'s
        Display), not the input text. Computed on demand."""
        return display_line(self)


def _escape(text: str, chars: str) -> str:
    for c in chars:
        if c in text:
            text = text.replace(c, "\\" + c)
    return text


def rust_f64_display(value: float) -> str:
    """Rust's ``Display`` for f64: shortest round-trip digits, never an exponent, no ``.0``."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    text = repr(value)
    if "e" in text:
        text = format(Decimal(text), "f")
    if text.endswith(".0"):
        text = text[:-2]
    return text


def _display_value(kind: str, value: Any) -> str:
    if kind == "int64":
        return f"{value}i"
    if kind == "uint64":
        return f"{value}u"
    if kind == "float64":
        return rust_f64_display(value)
    if kind == "bool":
        return "true" if value else "false"
    return _escape(value, '"')  # strings: quotes escaped, no surrounding quotes (as the crate)


def display_line(line: ParsedLine) -> str:
    """The crate's ``Display`` of a parsed line (measurement escapes ``,`` and space; tag keys,
    tag values and field keys escape ``,`` ``=`` and space; backslashes are not escaped)."""
    out = [_escape(line.measurement, ", ")]
    for key, value in line.tags.items():
        out.append(f",{_escape(key, ',= ')}={_escape(value, ',= ')}")
    out.append(" ")
    items = line.fields.items_in_order if isinstance(line.fields, DuplicateFields) else line.fields.items()
    out.append(",".join(f"{_escape(k, ',= ')}={_display_value(t, v)}" for k, (t, v) in items))
    if line.timestamp is not None:
        out.append(f" {line.timestamp}")
    return "".join(out)


class LineError(NamedTuple):
    """One rejected line. ``original_line`` is kept in full, as the server keeps it; the JSON form
    cuts it to 20 bytes (influxdb3_write ``impl Serialize for WriteLineError``)."""

    line_number: int
    original_line: str
    error_message: str

    def to_json(self) -> dict[str, Any]:
        """``{"error_message", "line_number", "original_line"}`` in the server's key order, with
        ``original_line`` cut to 20 bytes on a UTF-8 boundary."""
        return {
            "error_message": self.error_message,
            "line_number": self.line_number,
            "original_line": truncate_original_line(self.original_line),
        }

    @classmethod
    def for_line(cls, line_number: int, raw: str, message: str) -> LineError:
        """Build an error for a line (kept in full; ``to_json`` cuts it)."""
        return cls(line_number, raw, message)


def truncate_original_line(raw: str) -> str:
    """Cut to at most 20 UTF-8 bytes, rounded down to a character boundary (Rust
    ``floor_char_boundary``); no ellipsis."""
    if len(raw) <= ORIGINAL_LINE_MAX_BYTES // 4:
        return raw
    data = raw.encode("utf-8")
    if len(data) <= ORIGINAL_LINE_MAX_BYTES:
        return raw
    return data[:ORIGINAL_LINE_MAX_BYTES].decode("utf-8", "ignore")


# --- errors inside the slow path --------------------------------------------------------------


class _Soft(Exception):
    """A recoverable parse failure (nom ``Err::Error``): alternatives may still match."""

    def __init__(self, message: str = ""):
        self.message = message


class _Hard(Exception):
    """A committed parse failure (nom ``Err::Failure``): the line is rejected with ``message``."""

    def __init__(self, message: str):
        self.message = message


def _ctx(text: str) -> str:
    """The crate's ``maybe_truncate_context``: over 10 bytes -> first 10 chars + ``...``."""
    if len(text.encode("utf-8")) > _MAX_CONTEXT_CHARS:
        return text[:_MAX_CONTEXT_CHARS] + "..."
    return text


def _got(text: str, truncate: bool = True) -> str:
    if not text:
        return "end of input"
    return f"`{_ctx(text) if truncate else text}`"


MSG_INVALID_MEASUREMENT = "Invalid measurement was provided"
MSG_NO_FIELDS = "No fields were provided"
MSG_BACKSLASH = "Measurements, tag keys and values, and field keys may not end with a backslash"
MSG_STRING_TOO_LARGE = "String is greater than 1MB"  # the large-strings text (64KB without the feature)

_WS = " \t\n"
# runs of ordinary characters (everything up to a boundary, separator or backslash)
_MEAS_RUN = re.compile("[^ \t\n\0,\\\\]*")
_TAG_KEY_RUN = re.compile("[^ \t\n=\\\\]*")
_TAG_VALUE_RUN = re.compile("[^ \t\n,\\\\]*")
_FIELD_KEY_RUN = _TAG_KEY_RUN
_STRING_RUN = re.compile('[^"\\\\]*')
_MEAS_ESCAPES = frozenset(", \\")
_KEY_ESCAPES = frozenset("\\,= ")
_BOOLS = (
    ("true", True),
    ("True", True),
    ("TRUE", True),
    ("t", True),
    ("T", True),
    ("false", False),
    ("False", False),
    ("FALSE", False),
    ("f", False),
    ("F", False),
)
_FLOAT_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_INTEGRAL_RE = re.compile(r"-?[0-9]+")


def _escaped(s: str, pos: int, run_re: re.Pattern[str], escapes: frozenset[str]) -> tuple[str, int]:
    """Port of ``escape_or_fallback``: read a name with backslash escapes from ``pos``."""
    n = len(s)
    start = pos
    run = run_re.match(s, pos).end()  # type: ignore[union-attr]  # a * pattern always matches
    if run == n or s[run] != "\\":  # common case: no escapes at all
        if run == pos:
            raise _Soft()
        value = s[pos:run]
        if len(value) > STRING_LIMIT_BYTES // 4 and len(value.encode("utf-8")) > STRING_LIMIT_BYTES:
            raise _Hard(MSG_STRING_TOO_LARGE)
        return value, run
    out: list[str] = []
    match_run = run_re.match
    while True:
        run = match_run(s, pos).end()  # type: ignore[union-attr]  # a * pattern always matches
        if run > pos:
            out.append(s[pos:run])
            pos = run
            continue
        if pos < n and s[pos] == "\\":
            after = pos + 1
            if after < n and s[after] in escapes:
                out.append(s[after])
                pos = after + 1
                continue
            out.append("\\")
            pos = after
            if pos < n:
                out.append(s[pos])
                pos += 1
                continue
            break
        if pos == start:
            raise _Soft()
        break
    value = "".join(out)
    if value.endswith("\\"):
        raise _Hard(MSG_BACKSLASH)
    if len(value) > STRING_LIMIT_BYTES // 4 and len(value.encode("utf-8")) > STRING_LIMIT_BYTES:
        raise _Hard(MSG_STRING_TOO_LARGE)
    return value, pos


def _tag_set(s: str, pos: int) -> tuple[dict[str, str], int]:
    """Tags after the measurement's comma at ``pos`` (every part is ``cut``: failures are final)."""
    rem = pos
    tags: dict[str, str] = {}
    n = len(s)
    while True:
        try:
            key, pos = _escaped(s, pos, _TAG_KEY_RUN, _KEY_ESCAPES)
        except _Soft:
            raise _Hard(f"Expected tag key, got {_got(s[pos:])}") from None
        if pos >= n or s[pos] != "=":
            raise _Hard(f"Tag set malformed: could not find equals sign in `{_ctx(s[rem:])}`")
        pos += 1
        try:
            value, pos = _escaped(s, pos, _TAG_VALUE_RUN, _KEY_ESCAPES)
        except _Soft:
            raise _Hard(f"Expected tag value, got {_got(s[pos:])}") from None
        tags[key] = value
        if pos < n and s[pos] == ",":
            pos += 1
            continue
        return tags, pos


def _spaces(s: str, pos: int) -> int:
    """``whitespace``: one or more spaces, else a soft ExpectedSpace error."""
    end = pos
    n = len(s)
    while end < n and s[end] == " ":
        end += 1
    if end == pos:
        raise _Soft(f"Expected at least one space character, got {_got(s[pos:], truncate=False)}")
    return end


def _string_value(s: str, pos: int) -> tuple[str, int]:
    """A quoted field string at ``pos`` (which holds ``"``)."""
    n = len(s)
    pos += 1
    out: list[str] = []
    while True:
        if pos >= n:
            raise _Soft()
        c = s[pos]
        if c == '"':
            pos += 1
            break
        if c == "\\":
            nxt = s[pos + 1] if pos + 1 < n else ""
            if nxt == '"' or nxt == "\\":
                out.append(nxt)
                pos += 2
            else:
                out.append("\\")
                pos += 1
            continue
        end = _STRING_RUN.match(s, pos).end()  # type: ignore[union-attr]
        out.append(s[pos:end])
        pos = end
    value = "".join(out)
    if len(value) > STRING_LIMIT_BYTES // 4 and len(value.encode("utf-8")) > STRING_LIMIT_BYTES:
        raise _Hard(MSG_STRING_TOO_LARGE)
    return value, pos


def _field_value(s: str, pos: int) -> tuple[FieldValue, int]:
    """``alt((int, uint, float, string, bool))`` at ``pos``."""
    n = len(s)
    m = _INTEGRAL_RE.match(s, pos)
    if m is not None:
        end = m.end()
        text = m.group()
        if end < n and s[end] == "i":
            value = int(text)
            if value < I64_MIN or value > I64_MAX:
                raise _Hard(f"Unable to parse integer value `{text}`")
            return ("int64", value), end + 1
        if end < n and s[end] == "u" and text[0] != "-":
            value = int(text)
            if value > U64_MAX:
                raise _Hard(f"Unable to parse unsigned integer value `{text}`")
            return ("uint64", value), end + 1
        fm = _FLOAT_RE.match(s, pos)
        assert fm is not None
        return ("float64", float(fm.group())), fm.end()
    if pos < n and s[pos] == '"':
        text, end = _string_value(s, pos)
        return ("utf8", text), end
    for word, flag in _BOOLS:
        if s.startswith(word, pos):
            return ("bool", flag), pos + len(word)
    raise _Soft()


def _one_field(s: str, pos: int) -> tuple[str, FieldValue, int]:
    key, pos = _escaped(s, pos, _FIELD_KEY_RUN, _KEY_ESCAPES)
    if pos >= len(s) or s[pos] != "=":
        raise _Soft()
    value, pos = _field_value(s, pos + 1)
    return key, value, pos


class DuplicateFields(dict):
    """The field set of a line that names a field more than once: the dict holds each key's FIRST value
    (the column the server creates), ``items_in_order`` every ``(key, value)`` as written. The engine
    rejects such a line (influxdb3_write ``validator.rs``: ``invalid line protocol - multiple instances
    of '<f>' field found``; write.rs ``duplicate_field_names_should_fail``)."""

    items_in_order: list[tuple[str, FieldValue]]

    def duplicates(self) -> list[tuple[str, FieldValue]]:
        """The repeated ``(key, value)`` pairs, in input order (first occurrences excluded)."""
        seen: set[str] = set()
        out = []
        for key, value in self.items_in_order:
            if key in seen:
                out.append((key, value))
            seen.add(key)
        return out


def _add_field(fields: dict[str, FieldValue], key: str, value: FieldValue) -> dict[str, FieldValue]:
    if key not in fields:
        fields[key] = value
        if isinstance(fields, DuplicateFields):
            fields.items_in_order.append((key, value))
        return fields
    if not isinstance(fields, DuplicateFields):
        dup = DuplicateFields(fields)
        dup.items_in_order = list(fields.items())
        fields = dup
    fields.items_in_order.append((key, value))
    return fields


def _field_set(s: str, pos: int) -> tuple[dict[str, FieldValue], int]:
    """``parameterized_separated_list1`` over fields, with its exact stopping positions."""
    fields: dict[str, FieldValue] = {}
    try:
        key, value, pos = _one_field(s, pos)
    except _Soft:
        raise _Soft(MSG_NO_FIELDS) from None
    fields[key] = value
    n = len(s)
    if pos >= n or s[pos] != ",":
        return fields, pos
    # The second field is tried after the comma; on failure the comma stays consumed.
    pos += 1
    try:
        key, value, pos = _one_field(s, pos)
    except _Soft:
        return fields, pos
    fields = _add_field(fields, key, value)
    while pos < n and s[pos] == ",":
        try:
            key, value, nxt = _one_field(s, pos + 1)
        except _Soft:
            return fields, pos
        fields = _add_field(fields, key, value)
        pos = nxt
    return fields, pos


def _parse_slow(s: str) -> tuple[str, dict[str, str], dict[str, FieldValue], int | None]:
    """Parse one trimmed, non-empty line; raise _Soft/_Hard with the server's message."""
    try:
        measurement, pos = _escaped(s, 0, _MEAS_RUN, _MEAS_ESCAPES)
    except _Soft:
        raise _Soft(MSG_INVALID_MEASUREMENT) from None
    n = len(s)
    tags: dict[str, str] = {}
    if pos < n and s[pos] == ",":
        tags, pos = _tag_set(s, pos + 1)
    pos = _spaces(s, pos)
    fields, pos = _field_set(s, pos)
    ts: int | None = None
    if pos < n and s[pos] == " ":
        after = _spaces(s, pos)
        m = _INTEGRAL_RE.match(s, after)
        if m is not None:
            text = m.group()
            ts = int(text)
            if ts < I64_MIN or ts > I64_MAX:
                raise _Hard(f"Unable to parse timestamp value `{text}`")
            pos = m.end()
            while pos < n and s[pos] == " ":
                pos += 1
    if pos < n:
        raise _Hard(f"Could not parse entire line. Found trailing content: `{_ctx(s[pos:])}`")
    return measurement, tags, fields, ts


# --- line splitting ---------------------------------------------------------------------------


_SCAN_RE = re.compile(r'[\\ =,"]')


class _ScanState:
    """Go ``scanLine`` state carried across the newlines of one logical line."""

    __slots__ = ("quoted", "fields", "in_escape", "equals", "commas")

    def __init__(self) -> None:
        self.quoted = self.fields = self.in_escape = False
        self.equals = self.commas = 0

    def line_continues(self, piece: str) -> bool:
        """Scan ``piece``; True when the newline after it does not end the line."""
        skip_to = -1
        for m in _SCAN_RE.finditer(piece):
            pos = m.start()
            if pos < skip_to:
                continue
            if self.in_escape:
                self.in_escape = False
                if pos == skip_to:
                    continue
            c = m.group()
            if c == "\\":
                self.in_escape = True
                skip_to = pos + 1  # the next character is escaped, whatever it is
                continue
            if c == " ":
                self.fields = True
            elif self.fields:
                if not self.quoted and c == "=":
                    self.equals += 1
                elif not self.quoted and c == ",":
                    self.commas += 1
                elif c == '"' and self.equals > self.commas:
                    self.quoted = not self.quoted
        if self.in_escape and skip_to == len(piece):
            self.in_escape = False  # the escaped character is the newline itself
            return True
        self.in_escape = False
        return self.quoted


# A piece (text between two newlines) without backslashes that matches _PLAIN_LINE ends its line for
# ``scanLine``: before the first space quotes do not toggle; after it, every ``=`` (outside quotes)
# opens a value in which quotes come in pairs (toggling in and out) and that ends at a ``,`` or at the
# end of the piece, so the quote state is off at the end. A sufficient condition: pieces that do not
# match go through the exact scanner.
_PLAIN_VALUE = '[^"=,\\n]*(?:"[^"\\n]*"[^"=,\\n]*)*'
_PLAIN_FIELD = '[^"=,\\n]*=' + _PLAIN_VALUE
_PLAIN_LINE = "[^ \\n]*(?: " + _PLAIN_FIELD + "(?:," + _PLAIN_FIELD + ")*)?"
_PLAIN_LINE_RE = re.compile(_PLAIN_LINE)
# A whole body of such pieces (pieces without quotes always qualify); atomic groups keep it linear.
_PLAIN_BODY_RE = re.compile(
    "(?>" + _PLAIN_LINE + '(?=\\n|\\Z)|[^"\\n]*)(?:\\n(?>' + _PLAIN_LINE + '(?=\\n|\\Z)|[^"\\n]*))*'
)


def _split_lines(body: str) -> list[str]:
    """Go ``scanLine`` semantics: newlines inside quoted field values or after ``\\`` don't split."""
    pieces = body.split("\n")
    if '"' not in body and "\\" not in body:
        return pieces
    if "\\" not in body and _PLAIN_BODY_RE.fullmatch(body):
        return pieces
    out: list[str] = []
    plain = _PLAIN_LINE_RE.fullmatch
    i = 0
    count = len(pieces)
    while i < count:
        piece = pieces[i]
        if "\\" not in piece and ('"' not in piece or plain(piece)):
            out.append(piece)
            i += 1
            continue
        state = _ScanState()
        start = i
        while state.line_continues(pieces[i]) and i + 1 < count:
            i += 1
        out.append("\n".join(pieces[start : i + 1]))
        i += 1
    return out


def _trim_leading(seg: str) -> str:
    """Skip leading spaces/tabs/newlines and whole ``#`` comment lines."""
    while True:
        seg = seg.lstrip(_WS)
        if seg.startswith("#"):
            nl = seg.find("\n")
            seg = "" if nl < 0 else seg[nl:]
        else:
            return seg


def _rust_lines(body: str) -> list[str]:
    """Rust ``str::lines()``: split on ``\\n``, drop one trailing ``\\r`` each, no final empty line."""
    lines = body.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if "\r" in body:
        lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    return lines


# --- fast path --------------------------------------------------------------------------------

_IRREGULAR_RE = re.compile("[\\\\\t\r\0]")
_IRREGULAR_CHARS = ("\\", "\t", "\r", "\0")
#: longer lines take the slow path, which checks STRING_LIMIT_BYTES for names and strings
_FAST_MAX_CHARS = STRING_LIMIT_BYTES // 4
#: stands for a quoted string value in a line given to the fast path (NUL never reaches it)
_STRING_MARK = "\0"


def _fast_series(
    series: str, cache: dict[str, tuple[str, dict[str, str]] | None]
) -> tuple[str, dict[str, str]] | None:
    """``measurement[,k=v…]`` without escapes, or None when the slow path must decide."""
    try:
        return cache[series]
    except KeyError:
        pass
    result: tuple[str, dict[str, str]] | None
    parts = series.split(",")
    measurement = parts[0]
    if not measurement or _STRING_MARK in series:
        result = None
    else:
        tags: dict[str, str] = {}
        result = (measurement, tags)
        for piece in parts[1:]:
            key, sep, value = piece.partition("=")
            if not key or not sep or not value:
                result = None
                break
            tags[key] = value
    if len(cache) < 4096:
        cache[series] = result
    return result


# Deleting the number characters from a field set leaves a "shape" string such as
# ``f=,f=i,f=t`` whose value residues give the value kinds by position: "" float, "e"/"E"/"e+"/"E+"
# float with exponent, "i" int64, "u" uint64, a bool word. Conversions then check the numbers
# (``float``/``int`` raise on malformed text); the few texts Python accepts but line protocol
# rejects (".5", "1.", "-.5", "1.e5") and out-of-range integers are sent to the slow path.
_SHAPE_TABLE = str.maketrans("", "", "0123456789.-")
_BOOL_WORDS: dict[str, bool] = dict(_BOOLS)
_FLOAT_RESIDUES = frozenset(("", "e", "E", "e+", "E+"))
_INT_KIND = ("int64", int)
_UINT_KIND = ("uint64", int)
_FLOAT_KIND = ("float64", float)
_BOOL_KIND = ("bool", _BOOL_WORDS.__getitem__)
_STRING_KIND = ("utf8", str)  # the value is the mark; the string itself is put in afterwards


class _FieldShape(NamedTuple):
    """Types and converters by position for one shape string, plus integer-check helpers."""

    types: tuple[str, ...]
    convs: tuple[Any, ...]
    has_suffix: bool
    ints: Any  # itemgetter over int64/uint64 positions (one position: still returns a tuple)
    uints: Any  # itemgetter over uint64 positions
    strings: tuple[int, ...]  # positions of quoted string values (marks)


def _getter(positions: list[int]) -> Any:
    if not positions:
        return None
    if len(positions) == 1:
        pos = positions[0]
        return lambda values: (values[pos],)
    return operator.itemgetter(*positions)


def _shape_for(shape_text: str) -> _FieldShape | None:
    """The shape of a field set, or None when it is not a plain ``k=v,…`` list of known kinds."""
    types: list[str] = []
    convs: list[Any] = []
    ints: list[int] = []
    uints: list[int] = []
    strings: list[int] = []
    for position, pair in enumerate(shape_text.split(",")):
        _, sep, residue = pair.partition("=")
        if not sep:
            return None
        if residue in _FLOAT_RESIDUES:
            kind = _FLOAT_KIND
        elif residue == "i":
            kind = _INT_KIND
            ints.append(position)
        elif residue == "u":
            kind = _UINT_KIND
            ints.append(position)
            uints.append(position)
        elif residue in _BOOL_WORDS:
            kind = _BOOL_KIND
        elif residue == _STRING_MARK:
            kind = _STRING_KIND
            strings.append(position)
        else:
            return None
        types.append(kind[0])
        convs.append(kind[1])
    return _FieldShape(
        tuple(types), tuple(convs), bool(ints), _getter(ints), _getter(uints), tuple(strings)
    )


_INVALID_SHAPE: Any = object()


def _fast_fields(
    text: str, shapes: dict[str, Any], strings: list[str] | None = None
) -> dict[str, FieldValue] | None:
    """A field set without escapes, converted through a per-shape converter table. Quoted string
    values appear as a mark each (see ``_unquote``), ``strings`` holding their texts in order."""
    shape_text = text.translate(_SHAPE_TABLE)
    shape = shapes.get(shape_text)
    if shape is None:
        shape = _shape_for(shape_text) or _INVALID_SHAPE
        if len(shapes) < 4096:
            shapes[shape_text] = shape
    if shape is _INVALID_SHAPE:
        return None
    if (
        text[0] == "="
        or ",=" in text
        or "=." in text
        or ".," in text
        or "-." in text
        or ".e" in text
        or ".E" in text
        or text[-1] == "."
    ):
        return None  # empty key or a number form Python accepts and line protocol does not
    if shape.has_suffix:
        # only integer values end in i/u (bool words end in e/t/f/E/T/F; keys precede "=")
        text = text.replace("i,", ",").replace("u,", ",")
        if text[-1] in "iu":
            text = text[:-1]
    parts = text.replace("=", ",").split(",")
    keys = parts[0::2]
    values = parts[1::2]
    if shape.ints is not None:
        ints = shape.ints(values)
        if max(map(len, ints)) > 18:
            return None  # possibly out of range: the slow path checks and reports
        if shape.uints is not None and "-" in "".join(shape.uints(values)):
            return None
    try:
        fields = dict(zip(keys, zip(shape.types, map(operator.call, shape.convs, values))))  # noqa: B905
    except (ValueError, KeyError):
        return None  # malformed number or bool word: the slow path reports it
    if len(fields) != len(keys):
        return None  # a duplicate key: the slow path decides
    if shape.strings:
        if strings is None or len(strings) != len(shape.strings):
            return None
        for position, value in zip(shape.strings, strings):  # noqa: B905
            fields[keys[position]] = ("utf8", value)
    return fields


def _unquote(seg: str) -> tuple[str, list[str]] | None:
    """``seg`` with each quoted field string replaced by a mark, and the strings; None unless every
    quote pairs up as ``="…"`` followed by ``,``, a space or the end (no escapes: the caller has
    checked there is no backslash), so that the fast path reads the rest as it reads any line."""
    parts = seg.split('"')
    count = len(parts) >> 1
    if not len(parts) & 1 or "\n" in seg:
        return None
    text = _STRING_MARK.join(parts[0::2])
    if text.count("=" + _STRING_MARK) != count or (
        text.count(_STRING_MARK + ",") + text.count(_STRING_MARK + " ") + (text[-1] == _STRING_MARK) != count
    ):
        return None
    return text, parts[1::2]


_new_line = tuple.__new__
_MISSING: Any = object()
_I64_MAX_TEXT = str(I64_MAX)

# --- entry point ------------------------------------------------------------------------------


def parse_lines(
    body: str, *, precision: str = "auto", default_time_ns: int
) -> tuple[list[ParsedLine], list[LineError]]:
    """Parse a write body. Returns the valid lines and the per-line errors, both in input order.

    ``precision`` is a word from :data:`PRECISIONS` (the caller checks which words its endpoint
    accepts); lines without a timestamp get ``default_time_ns`` (nanoseconds). The cyclic garbage
    collector is paused while parsing (the parser creates no cycles; collections triggered by its
    many small allocations would otherwise cost as much as the parsing itself).
    """
    unit = normalize_precision(precision)
    with paused_gc():
        return _parse_body(body, _MULTIPLIER.get(unit, 0), default_time_ns)


def _parse_body(body: str, multiplier: int, default_time_ns: int) -> tuple[list[ParsedLine], list[LineError]]:
    parsed: list[ParsedLine] = []
    errors: list[LineError] = []
    segments = _split_lines(body)
    raw_lines: list[str] | None = None  # Rust str::lines() of the body, computed on first error
    series_cache: dict[str, tuple[str, dict[str, str]] | None] = {}
    shapes: dict[str, _FieldShape] = {}
    # lines of a body without backslashes, tabs, CRs or NULs need no per-line check
    check_lines = any(c in body for c in _IRREGULAR_CHARS)
    has_quotes = '"' in body
    irregular = _IRREGULAR_RE.search
    append = parsed.append
    ordinal = 0
    for seg in segments:
        if not seg or seg[0] in " \t#":
            seg = _trim_leading(seg)
            if not seg:
                continue
        ordinal += 1
        if not (check_lines and irregular(seg)) and len(seg) <= _FAST_MAX_CHARS:
            strings = None
            if has_quotes and '"' in seg:
                unquoted = _unquote(seg)
                parts = [] if unquoted is None else unquoted[0].split(" ")
                if unquoted is not None:
                    strings = unquoted[1]
            else:
                parts = seg.split(" ")
            nparts = len(parts)
            if nparts == 3:
                series = series_cache.get(parts[0], _MISSING)
                if series is _MISSING:
                    series = _fast_series(parts[0], series_cache)
                ts_text = parts[2]
                if (
                    series is not None
                    and ts_text.isdigit()
                    and ts_text.isascii()
                    and (len(ts_text) < 19 or (len(ts_text) == 19 and ts_text <= _I64_MAX_TEXT))
                ):
                    fields = _fast_fields(parts[1], shapes, strings)
                    if fields is not None:
                        ts = int(ts_text)
                        time_ns = ts * (multiplier or _MULTIPLIER[_auto_unit(ts)])
                        append(
                            _new_line(ParsedLine, (series[0], series[1].copy(), fields, time_ns, ordinal, ts))
                        )
                        continue
            elif nparts == 2:
                series = series_cache.get(parts[0], _MISSING)
                if series is _MISSING:
                    series = _fast_series(parts[0], series_cache)
                if series is not None:
                    fields = _fast_fields(parts[1], shapes, strings)
                    if fields is not None:
                        line = (series[0], series[1].copy(), fields, default_time_ns, ordinal, None)
                        append(_new_line(ParsedLine, line))
                        continue
        try:
            measurement, tags, fields, ts = _parse_slow(seg)
        except (_Soft, _Hard) as exc:
            if raw_lines is None:
                raw_lines = _rust_lines(body)
            raw = raw_lines[ordinal - 1] if ordinal <= len(raw_lines) else ""
            errors.append(LineError.for_line(ordinal, raw, exc.message))
            continue
        if ts is None:
            time_ns = default_time_ns
        elif multiplier:
            time_ns = ts * multiplier
        else:
            time_ns = ts * _MULTIPLIER[_auto_unit(ts)]
        append(_new_line(ParsedLine, (measurement, tags, fields, time_ns, ordinal, ts)))
    return parsed, errors


# --- columnar parse (the engine's write path) --------------------------------------------------
#
# A body whose lines all have the shape of its first line (same measurement, tag keys, field keys
# and field types, each value in a plain form) is parsed by one regular expression built from that
# first line (a "template"): ``findall`` over the whole body yields every line's values, which are
# then converted column by column. The template's character classes are stricter than the grammar
# (no escapes, quotes, tabs, CRs, NULs or backslashes in names and values; single spaces; integers
# short enough to be in range), so a line it matches parses exactly as ``parse_lines`` parses it; any
# body that is not matched line for line goes to ``parse_lines``.


class ColumnarShape(NamedTuple):
    """Lines of one shape, as columns. ``tag_columns[i]`` holds the values of ``tag_keys[i]`` and
    ``field_columns[j]`` the values of ``field_keys[j]`` (of type ``field_types[j]``), one per line;
    ``times`` in nanoseconds, ``timestamps`` the lines' own values (None: no line has one)."""

    measurement: str
    tag_keys: tuple[str, ...]
    field_keys: tuple[str, ...]
    field_types: tuple[str, ...]
    tag_columns: list[tuple[str, ...]]
    field_columns: list[tuple[Any, ...]]
    times: tuple[int, ...]
    timestamps: list[int] | None
    line_numbers: Any  # a sequence of int (a range for a whole body)

    @property
    def num_lines(self) -> int:
        return len(self.times)

    def to_lines(self) -> list[ParsedLine]:
        """The same lines as :class:`ParsedLine` (what ``parse_lines`` returns for them)."""
        tag_keys = self.tag_keys
        field_keys = self.field_keys
        types = self.field_types
        n = len(self.times)
        tag_rows = zip(*self.tag_columns, strict=True) if tag_keys else ((),) * n
        field_rows = zip(*self.field_columns, strict=True)
        stamps = self.timestamps if self.timestamps is not None else (None,) * n
        return [
            ParsedLine(self.measurement, dict(zip(tag_keys, tags, strict=True)),
                       dict(zip(field_keys, zip(types, values, strict=True), strict=True)), time_ns, number, stamp)
            for tags, values, time_ns, number, stamp in zip(
                tag_rows, field_rows, self.times, self.line_numbers, stamps, strict=True)
        ]


class ColumnarResult(NamedTuple):
    """``parse_columnar``'s answer: lines of the fast path by shape, the others as ``parse_lines``
    gives them (``lines`` and ``errors``, in input order). Line numbers are shared across all three."""

    shapes: list[ColumnarShape]
    lines: list[ParsedLine]
    errors: list[LineError]

    def to_lines(self) -> list[ParsedLine]:
        """Every valid line as ParsedLine, in input order (``parse_lines``' first result)."""
        if not self.shapes:
            return self.lines
        out = [line for shape in self.shapes for line in shape.to_lines()]
        if self.lines:
            out.extend(self.lines)
            out.sort(key=operator.attrgetter("line_number"))
        return out


_NAME_OK_RE = re.compile('[^ ,="\\\\\t\r\n\0]+')
_TAG_VALUE_GROUP = '([^ ,="\\\\\t\r\n\0]+)'
_VALUE_GROUPS = {
    "float64": "(-?[0-9]+(?:\\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)",
    "int64": "(-?[0-9]{1,18})i",
    "uint64": "([0-9]{1,19})u",
    "utf8": '"([^"\\\\\n]*)"',
    "bool": "(true|True|TRUE|t|T|false|False|FALSE|f|F)",
}
_CONVERTERS: dict[str, Any] = {"float64": float, "int64": int, "uint64": int, "bool": _BOOL_WORDS.__getitem__}
_templates: dict[str, re.Pattern[str]] = {}
_CHUNK_LINES = 1000


def parse_columnar(body: str, *, precision: str = "auto", default_time_ns: int) -> ColumnarResult:
    """Parse a write body for the engine: like :func:`parse_lines` (same valid lines, errors, texts
    and line numbers), with the lines of the fast path returned as columns by shape."""
    unit = normalize_precision(precision)
    with paused_gc():
        multiplier = _MULTIPLIER.get(unit, 0)
        shape = _parse_template(body, multiplier, default_time_ns)
        if shape is not None:
            return ColumnarResult([shape], [], [])
        lines, errors = _parse_body(body, multiplier, default_time_ns)
        return ColumnarResult([], lines, errors)


def _template_for(first: str) -> tuple[re.Pattern[str], str, tuple[str, ...], tuple[str, ...],
                                       tuple[str, ...], bool] | None:
    """The template of a first line, or None when that line is not a plain one."""
    try:
        measurement, tags, fields, ts = _parse_slow(first)
    except (_Soft, _Hard):
        return None
    names = [measurement, *tags, *fields]
    if measurement[0] == "#" or not all(_NAME_OK_RE.fullmatch(name) for name in names):
        return None
    parts = [re.escape(measurement)]
    parts.extend(f",{re.escape(key)}={_TAG_VALUE_GROUP}" for key in tags)
    parts.append(" ")
    parts.append(",".join(f"{re.escape(key)}={_VALUE_GROUPS[kind]}" for key, (kind, _v) in fields.items()))
    if ts is not None:
        parts.append(" ([0-9]{1,19})")
    text = "".join(parts)
    pattern = _templates.get(text)
    if pattern is None:
        pattern = re.compile("^" + text + "$", re.MULTILINE)
        if len(_templates) < 256:
            _templates[text] = pattern
    types = tuple(kind for kind, _v in fields.values())
    return pattern, measurement, tuple(tags), tuple(fields), types, ts is not None


def _parse_template(body: str, multiplier: int, default_time_ns: int) -> ColumnarShape | None:
    if not body or "\\" in body or "\t" in body or "\r" in body or "\0" in body:
        return None
    newline = body.find("\n")
    first = body if newline < 0 else body[:newline]
    if not first or first[0] in " #" or len(first) > _FAST_MAX_CHARS:
        return None
    template = _template_for(first)
    if template is None:
        return None
    pattern, measurement, tag_keys, field_keys, types, has_ts = template
    expected = body.count("\n") + (0 if body[-1] == "\n" else 1)
    ntags = len(tag_keys)
    width = ntags + len(field_keys) + has_ts
    columns: list[Any] = [[] for _ in range(width)]
    # Read in chunks of about _CHUNK_LINES lines: few row tuples are alive at once, so a garbage
    # collection that runs meanwhile (another request's) has little to traverse.
    findall = pattern.findall
    size = len(body)
    step = max(len(first) * _CHUNK_LINES, 4096)
    n = 0
    pos = 0
    while pos < size:
        end = body.find("\n", pos + step) + 1 if pos + step < size else 0
        if end == 0:
            end = size
        rows = findall(body, pos, end)
        if len(rows) != body.count("\n", pos, end) + (body[end - 1] != "\n"):
            return None  # some line of this chunk is not of this shape: the exact path decides
        n += len(rows)
        if width > 1 and rows:
            for column, values in zip(columns, zip(*rows, strict=True), strict=True):
                column.extend(values)
        else:
            columns[0].extend(rows)
        del rows
        pos = end
    if n != expected:
        return None  # some line is not of this shape (or a blank/comment line): the exact path decides
    # Columns are tuples: the garbage collector untracks a tuple of atoms once it has seen it, while a
    # list stays tracked and would be traversed by every collection as long as the rows are buffered.
    tag_columns = [tuple(col) for col in columns[:ntags]]
    for col in tag_columns:
        if max(map(len, col)) > _FAST_MAX_CHARS:
            return None  # maybe over STRING_LIMIT_BYTES: the exact path checks
    field_columns: list[Any] = []
    for kind, col in zip(types, columns[ntags : ntags + len(field_keys)], strict=True):
        if kind == "utf8":
            if max(map(len, col)) > _FAST_MAX_CHARS:
                return None
            field_columns.append(tuple(col))
        else:
            field_columns.append(tuple(map(_CONVERTERS[kind], col)))
    timestamps: list[int] | None = None
    if has_ts:
        timestamps = list(map(int, columns[-1]))
        hi = max(timestamps)
        if hi > I64_MAX:
            return None  # the exact path reports it
        if multiplier == 0:
            lo = min(timestamps)
            if _auto_unit(lo) == _auto_unit(hi):
                multiplier = _MULTIPLIER[_auto_unit(hi)]
        if multiplier == 1:
            times = tuple(timestamps)
        elif multiplier:
            if max(hi, -min(timestamps)) * multiplier > I64_MAX:
                return None  # out of range for the precision: the exact path rejects those lines
            times = tuple([t * multiplier for t in timestamps])
        else:
            times = tuple([to_nanoseconds(t, "auto") for t in timestamps])
    else:
        times = (default_time_ns,) * n
    return ColumnarShape(measurement, tag_keys, field_keys, types, tag_columns, field_columns, times,
                         timestamps, range(1, n + 1))
