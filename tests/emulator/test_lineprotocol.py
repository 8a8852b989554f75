"""Line protocol parser: grammar, values, precision and the server's exact per-line errors.

Expected texts are the ``influxdb_line_protocol`` crate's (influxdata/influxdb3_core
``influxdb_line_protocol/src/lib.rs``, ``better_error_messages`` test and parser code).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.lineprotocol import (
    PRECISIONS,
    PRECISIONS_V1,
    LineError,
    PrecisionError,
    normalize_precision,
    parse_lines,
    time_out_of_range,
    to_nanoseconds,
    truncate_original_line,
)

NOW = 1_234


def one(body: str, precision: str = "auto"):
    ok, errors = parse_lines(body, precision=precision, default_time_ns=NOW)
    assert errors == [], errors
    assert len(ok) == 1
    return ok[0]


def error_of(body: str) -> str:
    ok, errors = parse_lines(body, default_time_ns=NOW)
    assert ok == []
    assert len(errors) == 1
    return errors[0].error_message


def test_lineprotocol_parses_typical_line():
    line = one('cpu,host=a,region=west usage=0.5,n=3i,u=4u,ok=t,s="x" 1700000000000000000')
    assert line.measurement == "cpu"
    assert line.tags == {"host": "a", "region": "west"}
    assert list(line.tags) == ["host", "region"]
    assert line.fields == {
        "usage": ("float64", 0.5),
        "n": ("int64", 3),
        "u": ("uint64", 4),
        "ok": ("bool", True),
        "s": ("utf8", "x"),
    }
    assert line.time_ns == 1_700_000_000_000_000_000
    assert line.line_number == 1


def test_lineprotocol_without_timestamp_uses_default_time():
    assert one("m f=1").time_ns == NOW


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", ("float64", 1.0)),
        ("-1.5", ("float64", -1.5)),
        ("1.0", ("float64", 1.0)),
        ("-1.5e3", ("float64", -1500.0)),
        ("1e-3", ("float64", 0.001)),
        ("2E+2", ("float64", 200.0)),
        ("1.5e3", ("float64", 1500.0)),
        ("-0i", ("int64", 0)),
        ("9223372036854775807i", ("int64", 9223372036854775807)),
        ("-9223372036854775808i", ("int64", -9223372036854775808)),
        ("18446744073709551615u", ("uint64", 18446744073709551615)),
        ("0u", ("uint64", 0)),
        ('""', ("utf8", "")),
        ('"a b,c=d"', ("utf8", "a b,c=d")),
        (r'"say \"hi\""', ("utf8", 'say "hi"')),
        (r'"back\\slash"', ("utf8", "back\\slash")),
        (r'"lone\back"', ("utf8", "lone\\back")),
        ("t", ("bool", True)),
        ("T", ("bool", True)),
        ("true", ("bool", True)),
        ("True", ("bool", True)),
        ("TRUE", ("bool", True)),
        ("f", ("bool", False)),
        ("F", ("bool", False)),
        ("false", ("bool", False)),
        ("False", ("bool", False)),
        ("FALSE", ("bool", False)),
    ],
)
def test_lineprotocol_field_value_forms(text, expected):
    assert one(f"m v={text} 1").fields == {"v": expected}
    # the same value as the second of two fields (fast path splits, slow path must agree)
    assert one(f"m a=1i,v={text}").fields["v"] == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("measurement", "Expected at least one space character, got end of input"),
        (",", "Invalid measurement was provided"),
        ("J,#", "Tag set malformed: could not find equals sign in `#`"),
        ("J," + "a" * 200, "Tag set malformed: could not find equals sign in `aaaaaaaaaa...`"),
        ("J,", "Expected tag key, got end of input"),
        ("testmeasure, bar=1i", "Expected tag key, got ` bar=1i`"),
        ("testmeasure, " + "b" * 200 + "=1i", "Expected tag key, got ` bbbbbbbbb...`"),
        ("0,,=", "Expected tag value, got end of input"),
        ("testmeasure,foo\\=\\,baz= bar=1i", "Expected tag value, got ` bar=1i`"),
        ("testmeasure,foo=,baz= bar=1i", "Expected tag value, got `,baz= bar=...`"),
        ("testmeasure,foo= sed=1i", "Expected tag value, got ` sed=1i`"),
        ("testmeasure,foo=f bar=1i,baz=", "Could not parse entire line. Found trailing content: `baz=`"),
        (
            "testmeasure,foo=f bar=1i,ba" + "z" * 100 + "=",
            "Could not parse entire line. Found trailing content: `bazzzzzzzz...`",
        ),
        ("\x1b# /", "No fields were provided"),
        (":\x14\\", "Measurements, tag keys and values, and field keys may not end with a backslash"),
        (
            "testmeasure field=3.0 " + "1" + "8" * 71,
            "Unable to parse timestamp value `1" + "8" * 71 + "`",
        ),
        (
            "testmeasure field=66666666666666666666666666666666666666666666668i",
            "Unable to parse integer value `66666666666666666666666666666666666666666666668`",
        ),
        ("m f=9223372036854775808i", "Unable to parse integer value `9223372036854775808`"),
        ("m f=18446744073709551616u", "Unable to parse unsigned integer value `18446744073709551616`"),
        ("cpu,host=a val= 123", "No fields were provided"),
        ("foo 1234", "No fields were provided"),
        ("m f=.5", "No fields were provided"),
        ("m f=+1", "No fields were provided"),
        ("m f=inf", "No fields were provided"),
        ("m f=1.", "Could not parse entire line. Found trailing content: `.`"),
        ("m f=1.5i", "Could not parse entire line. Found trailing content: `i`"),
        ("m f=-1u", "Could not parse entire line. Found trailing content: `u`"),
        ("m f=tru", "Could not parse entire line. Found trailing content: `ru`"),
        ("m f=1 ", "Could not parse entire line. Found trailing content: ` `"),
        ("m f=1 12 34", "Could not parse entire line. Found trailing content: `34`"),
        ("m a=1,b=2,", "Could not parse entire line. Found trailing content: `,`"),
        ("m a=1,b=2,c=", "Could not parse entire line. Found trailing content: `,c=`"),
        ('m s="open', "No fields were provided"),
        ("m\tf=1", "Expected at least one space character, got `\tf=1`"),
        ("m,a=b\\\\ f=1", "Measurements, tag keys and values, and field keys may not end with a backslash"),
        ("m f=1 123\r", "Could not parse entire line. Found trailing content: `\r`"),
    ],
)
def test_lineprotocol_error_messages(body, message):
    assert error_of(body) == message


def test_lineprotocol_trailing_comma_after_first_field_is_accepted():
    # the crate's list parser consumes the comma before failing on the second field
    assert one("m a=1,").fields == {"a": ("float64", 1.0)}


def test_lineprotocol_escapes():
    line = one(r"my\ meas\,x,t\ k\=y=v\,a\ l\=z f\ k\,\=y=1i")
    assert line.measurement == "my meas,x"
    assert line.tags == {"t k=y": "v,a l=z"}
    assert line.fields == {"f k,=y": ("int64", 1)}
    # unknown escapes keep their backslash; measurement names may contain '='
    assert one(r"a\bc,t=x\y f=1").measurement == "a\\bc"
    assert one(r"a\bc,t=x\y f=1").tags == {"t": "x\\y"}
    assert one("a=b f=1").measurement == "a=b"
    # tag values may contain '=', tag keys may contain ','
    assert one("m,k=a=b f=1").tags == {"k": "a=b"}
    assert one("m,a,b=c f=1").tags == {"a,b": "c"}


def test_lineprotocol_split_lines_keeps_quoted_and_escaped_newlines():
    ok, errors = parse_lines('m s="a\nb" 1\nm s="c" 2', default_time_ns=NOW)
    assert errors == []
    assert [line.fields["s"][1] for line in ok] == ["a\nb", "c"]
    assert [line.line_number for line in ok] == [1, 2]


def test_lineprotocol_skips_blank_and_comment_lines():
    body = "\n# a comment\n   \n\tm f=1 1\n  # indented comment\nm f=2 2\n"
    ok, errors = parse_lines(body, precision="ns", default_time_ns=NOW)
    assert errors == []
    assert [(line.fields["f"][1], line.time_ns) for line in ok] == [(1.0, 1), (2.0, 2)]


def test_lineprotocol_line_numbers_count_non_empty_lines_as_the_server():
    # The server enumerates parser results (blank/comment lines skipped) and takes original_line
    # from str::lines() at that same ordinal, so both shift when blank lines come first.
    body = "m f=1\nbad\n\n# c\nm f=\nm f=2"
    ok, errors = parse_lines(body, default_time_ns=NOW)
    assert [line.line_number for line in ok] == [1, 4]
    assert [e.to_json() for e in errors] == [
        {
            "error_message": "Expected at least one space character, got end of input",
            "line_number": 2,
            "original_line": "bad",
        },
        {"error_message": "No fields were provided", "line_number": 3, "original_line": ""},
    ]


def test_lineprotocol_error_json_key_order_and_truncation():
    ok, errors = parse_lines("cpu,host=a val= 123\ncpu,host=abcdefghijklmnop val=", default_time_ns=NOW)
    assert ok == []
    assert [list(e.to_json()) for e in errors] == [["error_message", "line_number", "original_line"]] * 2
    assert errors[0].to_json()["original_line"] == "cpu,host=a val= 123"
    assert errors[1].to_json()["original_line"] == "cpu,host=abcdefghijk"
    assert errors[1].original_line == "cpu,host=abcdefghijklmnop val="  # kept in full, cut when serialised


def test_lineprotocol_original_line_cut_respects_utf8():
    assert truncate_original_line("a" * 19 + "é") == "a" * 19  # é is 2 bytes: not split
    assert truncate_original_line("a" * 18 + "é") == "a" * 18 + "é"
    assert truncate_original_line("€" * 10) == "€" * 6  # 18 bytes
    assert LineError.for_line(3, "x" * 30, "m").to_json() == {
        "error_message": "m",
        "line_number": 3,
        "original_line": "x" * 20,
    }


@pytest.mark.parametrize(
    ("ts", "expected_ns"),
    [
        (1_742_198_400, 1_742_198_400 * 10**9),  # seconds
        (4_999_999_999, 4_999_999_999 * 10**9),
        (5_000_000_000, 5_000_000_000 * 10**6),  # milliseconds from 5e9
        (1_742_198_400_000, 1_742_198_400_000 * 10**6),
        (5_000_000_000_000, 5_000_000_000_000 * 10**3),  # microseconds from 5e12
        (1_742_198_400_000_000, 1_742_198_400_000_000 * 10**3),
        (5_000_000_000_000_000, 5_000_000_000_000_000),  # nanoseconds from 5e15
        (1_742_198_400_000_000_000, 1_742_198_400_000_000_000),
        (0, 0),
        (-1_742_198_400, -1_742_198_400 * 10**9),
    ],
)
def test_lineprotocol_auto_precision_thresholds(ts, expected_ns):
    assert one(f"m f=1 {ts}").time_ns == expected_ns
    assert to_nanoseconds(ts, "auto") == expected_ns


@pytest.mark.parametrize(
    ("word", "factor"),
    [("s", 10**9), ("second", 10**9), ("ms", 10**6), ("millisecond", 10**6), ("us", 10**3),
     ("u", 10**3), ("microsecond", 10**3), ("ns", 1), ("n", 1), ("nanosecond", 1)],
)  # fmt: skip
def test_lineprotocol_explicit_precisions(word, factor):
    assert one("m f=1 7", precision=word).time_ns == 7 * factor


def test_lineprotocol_precision_overflow_is_out_of_range_not_wrapped():
    # the server multiplies with an overflow check since 3.6 (influxdb3_types Precision::to_nanos)
    line = one("m f=1 10000000000000", precision="s")
    assert line.time_ns == 10**22
    assert time_out_of_range(line) == "timestamp, 10000000000000, out of range for precision: Second"
    line = one("m f=1 -10000000000000", precision="ms")
    assert time_out_of_range(line) == "timestamp, -10000000000000, out of range for precision: Millisecond"
    assert time_out_of_range(one("m f=1 9223372036854775807", precision="ns")) is None
    assert time_out_of_range(one("m f=1 9223372036854775", precision="us")) is None


def test_lineprotocol_precision_words():
    assert set(PRECISIONS) == {"auto", "s", "second", "ms", "millisecond", "us", "u", "microsecond",
                               "ns", "n", "nanosecond"}  # fmt: skip
    assert "auto" not in PRECISIONS_V1
    assert normalize_precision("nanosecond") == "ns"
    with pytest.raises(PrecisionError):
        normalize_precision("auto", allow_auto=False)
    with pytest.raises(PrecisionError):
        normalize_precision("minutes")


def test_lineprotocol_partial_body_keeps_valid_lines_in_order():
    body = 'a f=1 1\nb f= 2\nc,t=x g=2i 3\nd\ne h="s" 5'
    ok, errors = parse_lines(body, precision="s", default_time_ns=NOW)
    assert [(line.measurement, line.line_number, line.time_ns) for line in ok] == [
        ("a", 1, 10**9),
        ("c", 3, 3 * 10**9),
        ("e", 5, 5 * 10**9),
    ]
    assert [(e.line_number, e.original_line) for e in errors] == [(2, "b f= 2"), (4, "d")]


def test_lineprotocol_empty_body_gives_nothing():
    assert parse_lines("", default_time_ns=NOW) == ([], [])
    assert parse_lines("\n\n# only comments\n", default_time_ns=NOW) == ([], [])


def test_lineprotocol_seed_home_lines():
    body = "\n".join(
        f"home,room={room} temp={temp},hum={hum},co={co}i {1742198400 + 3600 * h}"
        for h, (room, temp, hum, co) in enumerate(
            [("Living\\ Room", 21.1, 35.9, 0), ("Kitchen", 21.0, 35.9, 0), ("Living\\ Room", 21.4, 35.9, 0)]
        )
    )
    ok, errors = parse_lines(body, default_time_ns=NOW)
    assert errors == []
    assert [line.tags["room"] for line in ok] == ["Living Room", "Kitchen", "Living Room"]
    assert ok[2].fields == {"temp": ("float64", 21.4), "hum": ("float64", 35.9), "co": ("int64", 0)}
    assert ok[1].time_ns == 1_742_202_000 * 10**9


def test_lineprotocol_raw_is_the_crates_canonical_rendering():
    # Schema errors report ParsedLine's Display, not the input text (influxdb3_write validator).
    long_line = "cpu,host=" + "h" * 50 + " f=1 1"
    assert one(long_line).raw == long_line
    line = one(r'm\ x,t\=k=a\,b\\c a=1.0,b=-0.0,c=1e20,d=1.5e-7,e=2i,f=3u,g=T,h="q\"s\\t" 1700000000', "s")
    assert line.timestamp == 1700000000
    assert (
        line.raw
        == r"m\ x,t\=k=a\,b\c a=1,b=-0,c=100000000000000000000,d=0.00000015,e=2i,f=3u,g=true,h=q\"s\t 1700000000"
    )
    assert one("m f=1").raw == "m f=1"
    assert one("m f=1").timestamp is None


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1"), (0.5, "0.5"), (-0.0, "-0"), (1e20, "100000000000000000000"), (1.5e-7, "0.00000015"),
     (123.456, "123.456"), (1e16, "10000000000000000")],
)  # fmt: skip
def test_lineprotocol_rust_float_display(value, text):
    from emulator.lineprotocol import rust_f64_display

    assert rust_f64_display(value) == text


_name = st.text(st.characters(codec="utf-8", exclude_characters="\n\r\0"), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec="utf-8"), max_size=60))
def test_lineprotocol_never_crashes_on_arbitrary_input(body):
    ok, errors = parse_lines(body, default_time_ns=NOW)
    for err in errors:
        assert isinstance(err.error_message, str) and err.error_message
        assert len(err.to_json()["original_line"].encode()) <= 20
    assert all(line.fields for line in ok)


# --- fast path vs the grammar port ------------------------------------------------------------

_value_chars = st.sampled_from(list("0123456789.-+eEiutTfFrualsRUALS") + ["", "1", "12"])
_field_value = st.lists(_value_chars, max_size=6).map("".join)
_field_key = st.sampled_from(["a", "b", "f1", "x-y", "1", "-", "k.e", ""])
_field_set = st.lists(st.tuples(_field_key, _field_value), min_size=1, max_size=4).map(
    lambda pairs: ",".join(f"{k}={v}" for k, v in pairs)
)


def _slow(line: str):
    from emulator.lineprotocol import _Hard, _parse_slow, _Soft

    try:
        return _parse_slow(line)
    except (_Soft, _Hard) as exc:
        return exc.message


def _assert_agrees_with_grammar(line: str) -> None:
    """parse_lines (fast paths included) gives what the exact grammar gives for one line: the same error
    text, or the same measurement, tags, fields (values, types and order) and time."""
    ok, errors = parse_lines(line, precision="ns", default_time_ns=NOW)
    expected = _slow(line)
    if isinstance(expected, str):
        assert ok == []
        assert [e.error_message for e in errors] == [expected]
        return
    assert errors == []
    measurement, tags, got_fields, ts = expected
    assert (ok[0].measurement, ok[0].tags, ok[0].fields) == (measurement, tags, got_fields)
    assert list(ok[0].fields) == list(got_fields)
    assert ok[0].time_ns == (NOW if ts is None else ts)
    for key, (kind, value) in ok[0].fields.items():
        assert type(value) is {"int64": int, "uint64": int, "float64": float, "utf8": str, "bool": bool}[kind], key


@settings(max_examples=1500, deadline=None)
@given(
    fields=_field_set,
    extra=st.sampled_from(["", ",", ",,", "=", ",a", " 1", " -1", " 12 ", " x", " 99999999999999999999"]),
    big=st.sampled_from(["", "123456789012345678", "1234567890123456789", "99999999999999999999"]),
)
def test_lineprotocol_fast_path_agrees_with_grammar(fields, extra, big):
    line = f"m,t=v {fields}{big}{extra}"
    _assert_agrees_with_grammar(line)


def _reference_split(body: str) -> list[str]:
    """Character-by-character port of Go's scanLine, the model for the line splitter."""
    out: list[str] = []
    quoted = fields = in_escape = False
    equals = commas = 0
    start = 0
    for i, c in enumerate(body):
        if in_escape:
            in_escape = False
            continue
        if c == "\\":
            in_escape = True
            continue
        if c == " ":
            fields = True
            continue
        if fields:
            if not quoted and c == "=":
                equals += 1
                continue
            if not quoted and c == ",":
                commas += 1
                continue
            if c == '"' and equals > commas:
                quoted = not quoted
                continue
        if c == "\n" and not quoted:
            out.append(body[start:i])
            start = i + 1
            quoted = fields = False
            equals = commas = 0
    out.append(body[start:])
    return out


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(["a", " ", "=", ",", '"', "\\", "\n", "b=1"]), max_size=30).map("".join))
def test_lineprotocol_line_splitter_matches_go_scanline(body):
    from emulator.lineprotocol import _split_lines

    assert _split_lines(body) == _reference_split(body)


def test_lineprotocol_escaped_newline_joins_lines():
    ok, errors = parse_lines("m,t=a\\\nb f=1 1", precision="ns", default_time_ns=NOW)
    assert errors == []
    assert ok[0].tags == {"t": "a\\\nb"}


def test_lineprotocol_restores_garbage_collector_state():
    import gc

    assert gc.isenabled()
    parse_lines("m f=1 1\nbad", default_time_ns=NOW)
    assert gc.isenabled()
    with pytest.raises(PrecisionError):
        parse_lines("m f=1", precision="minutes", default_time_ns=NOW)
    assert gc.isenabled()
    gc.disable()
    try:
        parse_lines("m f=1", default_time_ns=NOW)
        assert not gc.isenabled()  # a caller's disabled state is left alone
    finally:
        gc.enable()


def test_lineprotocol_duplicate_field_keys_are_kept_for_the_validator():
    # the parser accepts them; the write validator rejects the line naming the field (validator.rs)
    line = one("m a=1i,b=2i,a=3i 1")
    assert line.fields == {"a": ("int64", 1), "b": ("int64", 2)}
    assert line.fields.duplicates() == [("a", ("int64", 3))]
    assert line.raw == "m a=1i,b=2i,a=3i 1"


# --- fast path for quoted string fields (no backslash) ----------------------------------------

_string_value = st.text(st.sampled_from(list('ab ,="=#\t1.') + ["é", "\n"]), max_size=6).map(lambda s: f'"{s}"')
_quoted_field_set = st.lists(
    st.tuples(_field_key, st.one_of(_field_value, _string_value, st.sampled_from(['"', '""x', 'x""']))),
    min_size=1,
    max_size=4,
).map(lambda pairs: ",".join(f"{k}={v}" for k, v in pairs))


@settings(max_examples=1500, deadline=None)
@given(
    series=st.sampled_from(["m,t=v", 'm,t="v"', 'm"x', "m", 'm,t=v"']),
    fields=_quoted_field_set,
    extra=st.sampled_from(["", ",", " 1", " 12 ", ' "x"', ' x="y"', '"', " 1 2"]),
)
def test_lineprotocol_quoted_fast_path_agrees_with_grammar(series, fields, extra):
    from emulator.lineprotocol import _split_lines

    line = f"{series} {fields}{extra}"
    if _split_lines(line) != [line]:
        return  # a quoted newline joins lines: covered by the splitter tests
    _assert_agrees_with_grammar(line)


def test_lineprotocol_quoted_fast_path_values():
    ok, errors = parse_lines(
        'm,h=a f="a b,c=d",g=1i,e="",x="#" 5\nm s="x y" \nm s="x"y 1\nm s="x",s="y" 2',
        precision="ns",
        default_time_ns=NOW,
    )
    assert [line.fields for line in ok] == [
        {"f": ("utf8", "a b,c=d"), "g": ("int64", 1), "e": ("utf8", ""), "x": ("utf8", "#")},
        {"s": ("utf8", "x")},  # the repeat is kept aside for the validator, which rejects the line
    ]
    assert ok[1].fields.duplicates() == [("s", ("utf8", "y"))]
    assert [(e.line_number, e.error_message) for e in errors] == [
        (2, "Could not parse entire line. Found trailing content: ` `"),
        (3, "Could not parse entire line. Found trailing content: `y 1`"),
    ]


def test_lineprotocol_long_lines_take_the_exact_path():
    # the server's default build has the crate's large-strings feature (since 3.9): 1 MiB per string, inclusive
    limit = 1_048_576
    assert error_of(f"{'m' * (limit + 1)} f=1 1") == "String is greater than 1MB"
    assert error_of(f'm f="{"x" * (limit + 1)}" 1') == "String is greater than 1MB"
    assert error_of(f"m,{'k' * (limit + 1)}=v f=1 1") == "String is greater than 1MB"
    assert error_of(f"m,k={'v' * (limit + 1)} f=1 1") == "String is greater than 1MB"
    assert error_of(f"m {'f' * (limit + 1)}=1 1") == "String is greater than 1MB"
    assert error_of(f'm f="{"é" * (limit // 2 + 1)}" 1') == "String is greater than 1MB"  # bytes, not characters
    assert one(f'm f="{"x" * limit}" 1').fields == {"f": ("utf8", "x" * limit)}
    assert one(f"{'m' * limit} f=1 1").measurement == "m" * limit
    assert one(f'm f="{"x" * 70_000}" 1').fields == {"f": ("utf8", "x" * 70_000)}  # over the old 64 KiB


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(["a", " ", "=", ",", '"', "\n", "b=1", 'c="x y"', "#"]), max_size=30).map("".join))
def test_lineprotocol_line_splitter_without_backslash_matches_go_scanline(body):
    from emulator.lineprotocol import _split_lines

    assert _split_lines(body) == _reference_split(body)


def test_lineprotocol_line_splitter_plain_body_and_mixed_pieces():
    from emulator.lineprotocol import _split_lines

    body = 'm f="a",g=1 1\nm f="b\nc" 2\nm,t="x f="y" 3\n'
    assert _split_lines(body) == _reference_split(body)
    plain = 'm f="a b",g=1 1\nm g=2\n\nm a="" 3'
    assert _split_lines(plain) == plain.split("\n") == _reference_split(plain)


# --- columnar parse (the engine's write path) vs parse_lines ---------------------------------

_col_values = {
    "float": ["1", "-1", "1.5", "-0", "007", "1e5", "1E+5", "2.5e-3", "1.", ".5", "1e", "inf", "nan", "1_0",
              "12345678901234567890.5", "1i"],
    "int": ["1i", "-1i", "0i", "999999999999999999i", "9223372036854775807i", "9223372036854775808i",
            "-9223372036854775808i", "1.5i", "1", "1u"],
    "uint": ["1u", "0u", "18446744073709551615u", "18446744073709551616u", "-1u", "1i"],
    "string": ['"x"', '""', '"a b,c=d"', '"é #"', '"a\\"b"', '"x', "x", '"a\nb"', '"\\\\"'],
    "bool": ["t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE", "tRUE", "yes", "1"],
}
_col_tags = ["a", "b", "é", "a=b", "a b", "", '"q"', "a\\ b", "x#"]
_col_stamps = ["", " 1", " 1700000000000000000", " 1700000000000", " 9223372036854775807",
               " 9223372036854775808", " -1", " 1 ", "  1", " 99999999999999999999", " 5000000000"]
_col_extra = ["", "\n", "#c", " m f=1", "bad", "m,t=a f=1i 2", "other,x=1 v=2 3"]


@st.composite
def _columnar_body(draw):
    kinds = draw(st.lists(st.sampled_from(sorted(_col_values)), min_size=1, max_size=4))
    ntags = draw(st.integers(0, 2))
    stamp_default = draw(st.sampled_from(_col_stamps[:3]))
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(st.sampled_from(_col_extra)))
            continue
        odd = draw(st.integers(0, 3)) == 0  # mostly the first line's values, sometimes edge values
        tags = "".join(f",t{i}={draw(st.sampled_from(_col_tags)) if odd else 'v' + str(i)}" for i in range(ntags))
        fields = ",".join(
            f"f{i}={draw(st.sampled_from(_col_values[k])) if odd else _col_values[k][0]}"
            for i, k in enumerate(kinds)
        )
        stamp = draw(st.sampled_from(_col_stamps)) if odd else stamp_default
        lines.append(f"m{tags} {fields}{stamp}")
    return "\n".join(lines) + draw(st.sampled_from(["", "\n"]))


def _columnar_agrees(body: str, precision: str) -> None:
    from emulator.lineprotocol import parse_columnar

    expected = parse_lines(body, precision=precision, default_time_ns=NOW)
    result = parse_columnar(body, precision=precision, default_time_ns=NOW)
    got = result.to_lines()
    assert (got, result.errors) == expected
    for line in got:
        for kind, value in line.fields.values():
            assert type(value) is {"int64": int, "uint64": int, "float64": float, "utf8": str, "bool": bool}[kind]
    for shape in result.shapes:
        assert len(shape.times) == len(shape.line_numbers)
        assert all(len(col) == len(shape.times) for col in (*shape.tag_columns, *shape.field_columns))


@settings(max_examples=1500, deadline=None)
@given(body=_columnar_body(), precision=st.sampled_from(["auto", "ns", "s", "ms"]))
def test_lineprotocol_columnar_agrees_with_parse_lines(body, precision):
    _columnar_agrees(body, precision)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(["m", " ", "=", ",", '"', "\\", "\n", "f=1", "t=a", "1", "i", "#"]), max_size=30)
       .map("".join))
def test_lineprotocol_columnar_agrees_on_arbitrary_bodies(body):
    _columnar_agrees(body, "auto")


def test_lineprotocol_columnar_takes_the_fast_path_for_one_shape():
    from emulator.lineprotocol import parse_columnar

    body = "".join(f'cpu,host=h{i % 3},dc=x u={i}.5,n={i}i,c={i}u,s="v {i}",ok=t {1000 + i}\n' for i in range(50))
    result = parse_columnar(body, precision="s", default_time_ns=NOW)
    assert (len(result.shapes), result.lines, result.errors) == (1, [], [])
    shape = result.shapes[0]
    assert (shape.measurement, shape.tag_keys, shape.field_keys) == ("cpu", ("host", "dc"), ("u", "n", "c", "s", "ok"))
    assert shape.field_types == ("float64", "int64", "uint64", "utf8", "bool")
    assert list(shape.tag_columns[0][:4]) == ["h0", "h1", "h2", "h0"]
    assert list(shape.field_columns[3][:2]) == ["v 0", "v 1"]
    assert shape.times[:2] == (1000 * 10**9, 1001 * 10**9)
    assert list(shape.line_numbers) == list(range(1, 51))
    _columnar_agrees(body, "s")
    # a line of another shape sends the body to the exact path, with the same answer
    mixed = body + "cpu,host=h u=1i 5\n"
    result = parse_columnar(mixed, precision="s", default_time_ns=NOW)
    assert result.shapes == [] and len(result.lines) == 51
    _columnar_agrees(mixed, "s")


def test_paused_gc_is_counted_across_overlapping_and_nested_writes() -> None:
    import gc
    import threading

    from emulator.lineprotocol import paused_gc

    assert gc.isenabled()
    inside = threading.Event()
    release = threading.Event()

    def other_write() -> None:
        with paused_gc():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=other_write)
    with paused_gc():
        t.start()
        assert inside.wait(5)
        with paused_gc():  # nested, as write_lp around parse_columnar
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other write still runs: the collector stays paused
    release.set()
    t.join(5)
    assert gc.isenabled()  # re-enabled when the last pause ended
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # a collector that was off stays off
    finally:
        gc.enable()
