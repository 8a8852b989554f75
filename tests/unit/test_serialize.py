"""Query result serialisation (http reference §7) and the Accept/format choice."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emulator.errors import ApiError
from emulator.serialize import CONTENT_TYPES, UnknownFormatError, choose_format, ryu_float, serialize

TAG = pa.dictionary(pa.int32(), pa.string())


def table() -> pa.Table:
    return pa.table(
        {
            "host": pa.array(["a", 'b,"x"'], TAG),
            "time": pa.array([3_002_037_731_000_000_000, 155], pa.timestamp("ns")),
            "usage": pa.array([0.9, None], pa.float64()),
            "n": pa.array([1.0, float("nan")], pa.float64()),
            "i": pa.array([None, -5], pa.int64()),
            "u": pa.array([7, None], pa.uint64()),
            "ok": pa.array([True, None], pa.bool_()),
            "s": pa.array(["é\n", 'q"\\'], pa.string()),
        }
    )


def test_serialize_json_compact_rows_nulls_omitted():
    body, ctype = serialize(table(), "json")
    assert ctype == "application/json"
    assert body.decode() == (
        '[{"host":"a","time":"2065-02-16T19:22:11","usage":0.9,"n":1.0,"u":7,"ok":true,"s":"é\\n"},'
        '{"host":"b,\\"x\\"","time":"1970-01-01T00:00:00.000000155","n":null,"i":-5,"s":"q\\"\\\\"}]'
    )
    assert json.loads(body)[1]["s"] == 'q"\\'


def test_serialize_reference_example():
    t = pa.table(
        {
            "host": pa.array(["a"], TAG),
            "time": pa.array([3_029_937_331_000_000_000], pa.timestamp("ns")),
            "usage": [0.9],
        }
    )
    assert serialize(t, "json")[0] == b'[{"host":"a","time":"2066-01-05T17:15:31","usage":0.9}]'


def test_serialize_jsonl_one_object_per_line():
    body, ctype = serialize(table(), "jsonl")
    assert ctype == "application/jsonl"
    lines = body.decode().split("\n")
    assert lines[-1] == ""
    assert len(lines) == 3
    assert lines[0].startswith('{"host":"a",')
    assert serialize(table(), "json_lines")[0] == body


def test_serialize_empty_results():
    empty = table().slice(0, 0)
    assert serialize(empty, "json") == (b"[]", "application/json")
    assert serialize(empty, "jsonl")[0] == b""
    assert serialize(empty, "csv")[0] == b"host,time,usage,n,i,u,ok,s\n"
    assert serialize(pa.table({"a": pa.array([], pa.int64())}), "pretty")[0] == b"+---+\n| a |\n+---+\n+---+"


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "1970-01-01T00:00:00"),
        (155, "1970-01-01T00:00:00.000000155"),
        (500_000_000, "1970-01-01T00:00:00.500"),
        (1_500_000, "1970-01-01T00:00:00.001500"),
        (123_456_789, "1970-01-01T00:00:00.123456789"),
        (1_000, "1970-01-01T00:00:00.000001"),
        (1_742_198_400_000_000_000, "2025-03-17T08:00:00"),
        (-1, "1969-12-31T23:59:59.999999999"),
    ],
)
def test_serialize_time_fraction_only_when_nonzero(ns, text):
    t = pa.table({"time": pa.array([ns], pa.timestamp("ns"))})
    assert serialize(t, "json")[0].decode() == f'[{{"time":"{text}"}}]'
    assert serialize(t, "csv")[0].decode() == f"time\n{text}\n"


def test_serialize_csv_quoting_and_nulls():
    body, ctype = serialize(table(), "csv")
    assert ctype == "text/csv"
    assert body.decode() == (
        "host,time,usage,n,i,u,ok,s\n"
        'a,2065-02-16T19:22:11,0.9,1.0,,7,true,"é\n"\n'
        '"b,""x""",1970-01-01T00:00:00.000000155,,NaN,-5,,,"q""\\"\n'
    )


def test_serialize_csv_single_empty_field_record_is_quoted():
    t = pa.table({"a": pa.array(["x", None, ""], pa.string())})
    assert serialize(t, "csv")[0] == b'a\nx\n""\n""\n'


def test_serialize_pretty_table():
    t = pa.table(
        {"host": pa.array(["a", "bb"], TAG), "usage": [0.5, None], "n": pa.array([1, 22], pa.int64())}
    )
    body, ctype = serialize(t, "pretty")
    assert ctype == "text/plain; charset=utf-8"
    assert body.decode() == (
        "+------+-------+----+\n"
        "| host | usage | n  |\n"
        "+------+-------+----+\n"
        "| a    | 0.5   | 1  |\n"
        "| bb   |       | 22 |\n"
        "+------+-------+----+"
    )


def test_serialize_parquet_round_trips():
    body, ctype = serialize(table(), "parquet")
    assert ctype == "application/vnd.apache.parquet"
    back = pq.read_table(io.BytesIO(body))
    assert back.column("i").to_pylist() == [None, -5]
    assert back.column("host").to_pylist() == ["a", 'b,"x"']


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1.0"), (0.9, "0.9"), (-0.5, "-0.5"), (1e20, "1e20"), (1.5e-7, "1.5e-7"), (1e-5, "0.00001"),
     (2.5e-5, "0.000025"), (1e15, "1000000000000000.0"), (1e16, "1e16"), (123.456, "123.456"),
     (float("nan"), "NaN"), (float("inf"), "inf"), (float("-inf"), "-inf")],
)  # fmt: skip
def test_serialize_ryu_float_text(value, text):
    assert ryu_float(value) == text


def test_serialize_json_non_finite_floats_are_null():
    t = pa.table({"f": [float("inf"), float("-inf"), 2.0]})
    assert serialize(t, "json")[0] == b'[{"f":null},{"f":null},{"f":2.0}]'


def test_serialize_json_all_null_row_is_empty_object():
    t = pa.table({"a": pa.array([None, 1], pa.int64())})
    assert serialize(t, "json")[0] == b'[{},{"a":1}]'


def test_serialize_multi_chunk_columns():
    t = pa.concat_tables([pa.table({"a": [1]}), pa.table({"a": [2]})])
    assert t.column("a").num_chunks == 2
    assert serialize(t, "json")[0] == b'[{"a":1},{"a":2}]'
    assert serialize(t, "csv")[0] == b"a\n1\n2\n"


def test_serialize_control_characters_escaped_like_serde_json():
    t = pa.table({"s": ["a\x01b\tc"]})
    assert serialize(t, "json")[0] == b'[{"s":"a\\u0001b\\tc"}]'


def test_serialize_unknown_format():
    with pytest.raises(UnknownFormatError):
        serialize(table(), "xml")


def test_serialize_content_types():
    assert CONTENT_TYPES == {
        "json": "application/json",
        "jsonl": "application/jsonl",
        "csv": "text/csv",
        "pretty": "text/plain; charset=utf-8",
        "parquet": "application/vnd.apache.parquet",
    }


@pytest.mark.parametrize(
    ("fmt", "accept", "expected"),
    [
        (None, None, "json"),
        (None, "application/json", "json"),
        (None, "*/*", "json"),
        (None, "text/html,application/xhtml+xml,*/*;q=0.8", "json"),
        (None, "text/csv", "csv"),
        (None, "text/plain", "pretty"),
        (None, "application/vnd.apache.parquet", "parquet"),
        ("csv", "application/json", "csv"),
        ("jsonl", "*/*", "jsonl"),
        ("json_lines", None, "jsonl"),
        ("pretty", "text/csv", "pretty"),
    ],
)
def test_serialize_choose_format(fmt, accept, expected):
    assert choose_format(fmt, accept) == expected


@pytest.mark.parametrize("fmt", [None, "json", "csv"])
@pytest.mark.parametrize(
    "accept", ["application/xml", "", "application/json; charset=utf-8", "text/csv,text/plain"]
)
def test_serialize_unknown_accept_is_400_even_with_format(fmt, accept):
    with pytest.raises(ApiError) as info:
        choose_format(fmt, accept)
    assert info.value.status == 400
    assert info.value.text == f"invalid mime type ({accept})"
    assert info.value.content_type == "text/plain; charset=utf-8"


def test_serialize_choose_format_unknown_format_param():
    with pytest.raises(UnknownFormatError):
        choose_format("xml", None)


def test_serialize_large_result_is_vectorised():
    n = 200_000
    t = pa.table(
        {
            "host": pa.array([f"h{i % 10}" for i in range(n)]).dictionary_encode(),
            "time": pa.array(range(0, n * 1_000_000_000, 1_000_000_000), pa.timestamp("ns")),
            "n": pa.array(range(n), pa.int64()),
        }
    )
    body, _ = serialize(t, "json")
    assert body.count(b"{") == n
    assert body.endswith(b'"time":"1970-01-03T07:33:19","n":199999}]')


def test_serialize_zoned_and_wide_timestamps():
    t = pa.table(
        {
            "utc": pa.array([1_700_000_000_123_000_000], pa.timestamp("ns", "UTC")),
            "ist": pa.array([1_700_000_000_123_000_000], pa.timestamp("ns", "+05:30")),
            "ny": pa.array([1_700_000_000_000_000_155], pa.timestamp("ns", "America/New_York")),
            "far": pa.array([253_402_300_799_000], pa.timestamp("ms")),  # beyond the ns range
        }
    )
    assert serialize(t, "json")[0] == (
        b'[{"utc":"2023-11-14T22:13:20.123Z","ist":"2023-11-15T03:43:20.123+05:30",'
        b'"ny":"2023-11-14T17:13:20.000000155-05:00","far":"9999-12-31T23:59:59"}]'
    )


def test_serialize_view_and_large_strings_are_quoted_in_csv():
    t = pa.table({"s": pa.array(["a,b"], pa.string_view()), "l": pa.array(['q"'], pa.large_string())})
    assert serialize(t, "csv")[0] == b's,l\n"a,b","q"""\n'
    assert serialize(t, "json")[0] == b'[{"s":"a,b","l":"q\\""}]'


def test_serialize_times_in_the_first_second_after_i64_min() -> None:
    """A write may carry i64::MIN (issue 9 item 1): flooring to whole seconds would leave int64 and wrap to
    2262; chrono (arrow-json, arrow-cast) renders it in 1677."""
    t = pa.table({"time": pa.array([-(2**63), -9_223_372_036_000_000_000, 2**63 - 1], pa.timestamp("ns"))})
    body, _ = serialize(t, "json")
    assert json.loads(body) == [{"time": "1677-09-21T00:12:43.145224192"}, {"time": "1677-09-21T00:12:44"},
                                {"time": "2262-04-11T23:47:16.854775807"}]
    body, _ = serialize(t, "csv")
    assert body.decode().splitlines()[1] == "1677-09-21T00:12:43.145224192"
