"""JSON request bodies read the way the server reads them: ``serde_json::from_slice`` (serde_json 1.0.149).

Python's ``json`` differs from serde_json on exactly the inputs that used to crash routes (issue 9 item 6):
it guesses UTF-16/UTF-32 from the first bytes, accepts lone surrogates (``"\\ud800"``), and recurses until
``RecursionError`` on deep nesting. This parser takes UTF-8 bytes only and answers as serde_json does:

- nesting: 127 levels; the 128th ``[``/``{`` is ``recursion limit exceeded`` (``remaining_depth: 128``);
- strings: UTF-8 checked (``invalid unicode code point``), control characters rejected (``control
  character (\\u0000-\\u001F) found while parsing a string``), escapes checked (``invalid escape``), a lone
  trailing surrogate is ``lone leading surrogate in hex escape``, a leading one not followed by ``\\u`` is
  ``unexpected end of hex escape``;
- a BOM or any other byte that cannot start a value is ``expected value``;
- numbers by serde's grammar (``invalid number``); an integer beyond i64/u64 becomes a float, as serde's
  ``parse_long_integer`` makes it an f64; a number beyond f64 is ``number out of range``;
- ``trailing comma``, ``trailing characters``, ``key must be a string``, ``expected `:` ``,
  ``expected `,` or `]` ``/``expected `,` or `}` ``, ``expected ident``, ``EOF while parsing …``.

Every error is ``<text> at line L column C`` with serde's position: line 1-based, column = bytes since
the last newline, taken after the offending byte (serde ``error``) or on it (serde ``peek_error``), as
``src/de.rs`` and ``src/read.rs`` of serde_json do. Strings are checked everywhere, also in members a
struct ignores (serde skips those unchecked): stricter, never more lenient.
"""

from __future__ import annotations

import re
from typing import Any

#: the integers serde_json keeps exact (``ParserNumber::I64``/``U64``); others become f64
_I64_MIN, _U64_MAX = -(2**63), 2**64 - 1
#: serde_json's ``remaining_depth`` start; reaching 0 is the error
RECURSION_LIMIT = 128
_WS = b" \n\t\r"
_STRING_STOP = re.compile(rb'["\\\x00-\x1f]')
_DIGITS = re.compile(rb"[0-9]*")
_ESCAPES = {ord('"'): '"', ord("\\"): "\\", ord("/"): "/", ord("b"): "\b", ord("f"): "\f",
            ord("n"): "\n", ord("r"): "\r", ord("t"): "\t"}
_HEX = re.compile(rb"[0-9a-fA-F]{4}")


class SerdeJsonError(ValueError):
    """A body serde_json refuses; ``str()`` is serde_json's Display (``<text> at line L column C``)."""

    def __init__(self, text: str, line: int, column: int):
        self.text = text
        self.line = line
        self.column = column
        super().__init__(f"{text} at line {line} column {column}")


def loads(body: bytes | bytearray | memoryview | str) -> Any:
    """Parse one JSON value from ``body`` as serde_json does; raises :class:`SerdeJsonError`.
    A ``str`` is read as its UTF-8 bytes (``serde_json::from_str``)."""
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
    parser = _Parser(data)
    value = parser.value()
    if parser.skip_ws() is not None:
        raise parser.peek_error("trailing characters")
    return value


class _Parser:
    __slots__ = ("data", "i", "depth")

    def __init__(self, data: bytes):
        self.data = data
        self.i = 0
        self.depth = RECURSION_LIMIT

    # ---------------------------------------------------------------- positions (serde read.rs)
    def _at(self, index: int, text: str) -> SerdeJsonError:
        data = self.data
        line_start = data.rfind(b"\n", 0, index) + 1
        return SerdeJsonError(text, data.count(b"\n", 0, line_start) + 1, index - line_start)

    def error(self, text: str) -> SerdeJsonError:
        return self._at(self.i, text)

    def peek_error(self, text: str) -> SerdeJsonError:
        return self._at(min(len(self.data), self.i + 1), text)

    def skip_ws(self) -> int | None:
        data, i, n = self.data, self.i, len(self.data)
        while i < n and data[i] in _WS:
            i += 1
        self.i = i
        return data[i] if i < n else None

    # ---------------------------------------------------------------- values (serde de.rs)
    def value(self) -> Any:
        c = self.skip_ws()
        if c is None:
            raise self.peek_error("EOF while parsing a value")
        if c == 0x22:  # "
            self.i += 1
            return self.string()
        if c == 0x7B:  # {
            return self.container(self.members)
        if c == 0x5B:  # [
            return self.container(self.elements)
        if c == 0x2D or 0x30 <= c <= 0x39:  # - or digit
            return self.number()
        for word, value in ((b"null", None), (b"true", True), (b"false", False)):
            if c == word[0]:
                self.i += 1
                self.ident(word[1:])
                return value
        raise self.peek_error("expected value")

    def ident(self, rest: bytes) -> None:
        for expected in rest:
            if self.i >= len(self.data):
                raise self.error("EOF while parsing a value")
            got = self.data[self.i]
            self.i += 1
            if got != expected:
                raise self.error("expected ident")

    def container(self, body: Any) -> Any:
        self.depth -= 1
        if self.depth == 0:
            raise self.peek_error("recursion limit exceeded")
        self.i += 1
        try:
            return body()
        finally:
            self.depth += 1

    def elements(self) -> list[Any]:
        out: list[Any] = []
        first = True
        while True:
            c = self.skip_ws()
            if c == 0x5D:  # ]
                self.i += 1
                return out
            if c == 0x2C and not first:  # ,
                self.i += 1
                c = self.skip_ws()
            elif c is None:
                raise self.peek_error("EOF while parsing a list")
            elif not first:
                raise self.peek_error("expected `,` or `]`")
            first = False
            if c == 0x5D:
                raise self.peek_error("trailing comma")
            if c is None:
                raise self.peek_error("EOF while parsing a value")
            out.append(self.value())

    def members(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first = True
        while True:
            c = self.skip_ws()
            if c == 0x7D:  # }
                self.i += 1
                return out
            if c == 0x2C and not first:
                self.i += 1
                c = self.skip_ws()
            elif c is None:
                raise self.peek_error("EOF while parsing an object")
            elif not first:
                raise self.peek_error("expected `,` or `}`")
            first = False
            if c == 0x7D:
                raise self.peek_error("trailing comma")
            if c is None:
                raise self.peek_error("EOF while parsing a value")
            if c != 0x22:
                raise self.peek_error("key must be a string")
            self.i += 1
            key = self.string()
            c = self.skip_ws()
            if c is None:
                raise self.peek_error("EOF while parsing an object")
            if c != 0x3A:  # :
                raise self.peek_error("expected `:`")
            self.i += 1
            out[key] = self.value()  # a repeated key: the last wins here; struct routes check duplicates

    def number(self) -> int | float:
        data, start = self.data, self.i
        if data[self.i] == 0x2D:
            self.i += 1
        if self.i >= len(data):
            raise self.error("EOF while parsing a value")
        first = data[self.i]
        self.i += 1
        if first == 0x30:
            if self.i < len(data) and 0x30 <= data[self.i] <= 0x39:
                raise self.peek_error("invalid number")
        elif 0x31 <= first <= 0x39:
            self.i = _DIGITS.match(data, self.i).end()
        else:
            raise self.error("invalid number")
        is_float = False
        if self.i < len(data) and data[self.i] == 0x2E:  # .
            is_float = True
            self.i += 1
            end = _DIGITS.match(data, self.i).end()
            if end == self.i:
                raise self.peek_error("invalid number" if self.i < len(data) else "EOF while parsing a value")
            self.i = end
        if self.i < len(data) and data[self.i] in b"eE":
            is_float = True
            self.i += 1
            if self.i < len(data) and data[self.i] in b"+-":
                self.i += 1
            if self.i >= len(data):
                raise self.error("EOF while parsing a value")
            digit = data[self.i]
            self.i += 1
            if not 0x30 <= digit <= 0x39:
                raise self.error("invalid number")
            self.i = _DIGITS.match(data, self.i).end()
        text = data[start:self.i].decode("ascii")
        if not is_float and self.i - start <= 20:  # at most u64::MAX's 20 digits (or "-" and 19): exact
            n = int(text)
            if _I64_MIN <= n <= _U64_MAX:
                return n
        # serde parse_long_integer: an integer beyond i64/u64 becomes an f64, past f64's range an error
        value = float(text)
        if value in (float("inf"), float("-inf")):
            raise self.error("number out of range")
        return value

    def string(self) -> str:
        """The string whose opening quote was just consumed (serde ``parse_str`` with validation: the bytes
        are checked as UTF-8 once the closing quote is found)."""
        data = self.data
        parts: list[bytes] = []
        raw_start = self.i
        while True:
            m = _STRING_STOP.search(data, self.i)
            if m is None:
                self.i = len(data)
                raise self.error("EOF while parsing a string")
            self.i = m.start()
            stop = data[self.i]
            parts.append(data[raw_start:self.i])
            self.i += 1
            if stop == 0x22:
                try:
                    return b"".join(parts).decode("utf-8")
                except UnicodeDecodeError:
                    raise self.error("invalid unicode code point") from None
            if stop != 0x5C:  # a control character
                raise self.error("control character (\\u0000-\\u001F) found while parsing a string")
            parts.append(self.escape().encode("utf-8"))
            raw_start = self.i

    def escape(self) -> str:
        data = self.data
        if self.i >= len(data):
            raise self.error("EOF while parsing a string")
        c = data[self.i]
        self.i += 1
        if c in _ESCAPES:
            return _ESCAPES[c]
        if c != 0x75:  # u
            raise self.error("invalid escape")
        n = self.hex4()
        if 0xDC00 <= n <= 0xDFFF:
            raise self.error("lone leading surrogate in hex escape")
        if not 0xD800 <= n <= 0xDBFF:
            return chr(n)
        for expected in (0x5C, 0x75):  # \ u
            if self.i >= len(data):
                raise self.error("EOF while parsing a string")
            got = data[self.i]
            self.i += 1
            if got != expected:
                raise self.error("unexpected end of hex escape")
        n2 = self.hex4()
        if not 0xDC00 <= n2 <= 0xDFFF:
            raise self.error("lone leading surrogate in hex escape")
        return chr(0x10000 + ((n - 0xD800) << 10) + (n2 - 0xDC00))

    def hex4(self) -> int:
        if self.i + 4 > len(self.data):
            self.i = len(self.data)
            raise self.error("EOF while parsing a string")
        digits = self.data[self.i:self.i + 4]
        self.i += 4
        if not _HEX.fullmatch(digits):
            raise self.error("invalid escape")
        return int(digits, 16)
