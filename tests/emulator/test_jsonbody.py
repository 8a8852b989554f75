"""emulator.jsonbody: serde_json's reading of request bodies. Valid JSON reads as Python's json reads it;
the inputs Python's json accepts or crashes on and serde_json refuses answer serde_json's texts (the HTTP
answers are in test_http_robustness.py)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.jsonbody import SerdeJsonError, loads

_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)  # beyond: floats, test_big_numbers
            | st.floats(allow_nan=False, allow_infinity=False) | st.text())
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(value=_values, ascii_only=st.booleans(), indent=st.sampled_from([None, 0, 2]))
def test_valid_json_reads_as_python_reads_it(value: object, ascii_only: bool, indent: int | None) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # hypothesis text may hold lone surrogates: not UTF-8, so not a body
        with pytest.raises(SerdeJsonError):
            loads(text.encode("utf-8", "surrogatepass"))
        return
    assert loads(text.encode("utf-8")) == json.loads(text)


@pytest.mark.parametrize(("body", "text"), [
    (b"[" * 127 + b"]" * 127, None),
    (b"[" * 128, "recursion limit exceeded at line 1 column 128"),
    (b'"\\ud83d\\ude00"', None),
    (b'"\\ud83d"', "unexpected end of hex escape at line 1 column 8"),
    (b'"\\ud83dx"', "unexpected end of hex escape at line 1 column 8"),
    (b'"\\ud83d\\n"', "unexpected end of hex escape at line 1 column 9"),
    (b'"\\ude00"', "lone leading surrogate in hex escape at line 1 column 7"),
    (b'"\\u00e9"', None),
    (b'"\\u12G4"', "invalid escape at line 1 column 7"),
    (b'"\\q"', "invalid escape at line 1 column 3"),
    (b"", "EOF while parsing a value at line 1 column 0"),
    (b"\n\n  ", "EOF while parsing a value at line 3 column 2"),
    (b'{"a":\n  @}', "expected value at line 2 column 3"),
    (b"nul", "EOF while parsing a value at line 1 column 3"),
    (b"nulx", "expected ident at line 1 column 4"),
    (b"-x", "invalid number at line 1 column 2"),
    (b"01", "invalid number at line 1 column 2"),
    (b"1.x", "invalid number at line 1 column 3"),
    (b"[1,]", "trailing comma at line 1 column 4"),
    (b"[1 2]", "expected `,` or `]` at line 1 column 4"),
    (b'{"a" 1}', "expected `:` at line 1 column 6"),
    (b"{1:2}", "key must be a string at line 1 column 2"),
    (b'{"a":1}x', "trailing characters at line 1 column 8"),
    (b'"\xc3"', "invalid unicode code point at line 1 column 3"),
    (b'"\xc3\xa9"', None),
])
def test_serde_texts_and_positions(body: bytes, text: str | None) -> None:
    if text is None:
        assert loads(body) == json.loads(body)
    else:
        with pytest.raises(SerdeJsonError) as info:
            loads(body)
        assert str(info.value) == text


def test_big_numbers() -> None:
    """serde_json keeps i64/u64 integers exact, makes larger ones f64 (parse_long_integer) and refuses a
    number beyond f64 at the byte after its last digit, whatever its length (no Python int digit limit)."""
    for text, value in ((b"18446744073709551615", 2**64 - 1), (b"-9223372036854775808", -(2**63))):
        got = loads(text)
        assert (type(got), got) == (int, value)
    for text in (b"18446744073709551616", b"-9223372036854775809", b"1" + b"0" * 308, b"-" + b"9" * 300):
        got = loads(text)
        assert (type(got), got) == (float, float(text))
    for body, column in ((b"1" + b"0" * 309, 310), (b"7" * 5000, 5000), (b"[-" + b"7" * 5000, 5002),
                         (b'{"a":' + b"1" * 400 + b"}", 405)):
        with pytest.raises(SerdeJsonError) as info:
            loads(body)
        assert str(info.value) == f"number out of range at line 1 column {column}"
    assert loads(b"1e308") == 1e308 and not math.isinf(loads(b"-1e308"))
    with pytest.raises(SerdeJsonError, match="number out of range"):
        loads(b"-1e309")
