"""The SQL functions the server registers on every query (issue 10 item 5), on the docs' home sample data.

Expected values follow the InfluxDB 3 SQL reference examples and the query_functions crate's own tests
(influxdata/influxdb ``core/query_functions``, ``core/iox_query/src/analyzer/handle_gapfill.rs``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from emulator.engine import Engine
from emulator.errors import QueryError
from emulator.serialize import serialize
from emulator.sqlfuncs import _wallclock_steps, _zone, clean_non_meta_escapes, parse_types, wallclock_bin

HOME = """home,room=Kitchen temp=21.0,hum=35.9,co=0i 1641024000
home,room=Living\\ Room temp=21.1,hum=35.9,co=0i 1641024000
home,room=Kitchen temp=23.0,hum=36.2,co=0i 1641027600
home,room=Living\\ Room temp=21.4,hum=35.9,co=0i 1641027600
home,room=Kitchen temp=22.7,hum=36.1,co=0i 1641031200
home,room=Living\\ Room temp=21.8,hum=36.0,co=0i 1641031200
"""
RANGE = "WHERE time >= '2022-01-01T08:00:00Z' AND time <= '2022-01-01T10:00:00Z'"
NS = 1_000_000_000
H = 3600 * NS


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = Engine(tmp_path, wal_flush_interval=0.01)
    eng.open()
    eng.write_lp("d", HOME, precision="s")
    yield eng
    eng.close()


def rows(engine: Engine, sql: str) -> list[dict]:
    return json.loads(serialize(engine.query("d", sql), "json")[0])


def error(engine: Engine, sql: str) -> QueryError:
    with pytest.raises(QueryError) as info:
        engine.query("d", sql)
    return info.value


# ------------------------------------------------------------------------------------------ selectors
def test_sql_selector_first_and_max_as_in_the_docs(engine: Engine) -> None:
    sql = ("SELECT room, selector_first(temp, time)['time'] AS time, selector_first(temp, time)['value'] AS first "
           "FROM home GROUP BY room ORDER BY room")
    assert rows(engine, sql) == [{"room": "Kitchen", "time": "2022-01-01T08:00:00", "first": 21.0},
                                 {"room": "Living Room", "time": "2022-01-01T08:00:00", "first": 21.1}]
    sql = "SELECT room, selector_max(temp, time, hum) AS m FROM home GROUP BY room ORDER BY room"
    assert rows(engine, sql) == [
        {"room": "Kitchen", "m": {"value": 23.0, "time": "2022-01-01T09:00:00", "other_1": 36.2}},
        {"room": "Living Room", "m": {"value": 21.8, "time": "2022-01-01T10:00:00", "other_1": 36.0}}]


def test_sql_selector_structs_in_csv_and_pretty(engine: Engine) -> None:
    """arrow-cast's display of a struct: ``{value: 23.0, time: 2022-01-01T09:00:00}``."""
    table = engine.query("d", "SELECT selector_max(temp, time) AS m FROM home WHERE room = 'Kitchen'")
    assert serialize(table, "csv")[0] == b'm\n"{value: 23.0, time: 2022-01-01T09:00:00}"\n'
    assert b"| {value: 23.0, time: 2022-01-01T09:00:00} |" in serialize(table, "pretty")[0]


def test_sql_selector_min_last_ties_nulls_and_column_name(engine: Engine) -> None:
    engine.write_lp("d", "s v=5i 1\ns v=3i 2\ns v=3i 3\ns w=1i 4\ns v=9i 5", precision="s")
    table = engine.query("d", "SELECT selector_min(v, time), selector_last(v, time) FROM s")
    assert table.column_names == ["selector_min(s.v,s.time)", "selector_last(s.v,s.time)"]
    # ties on the smallest value take the earliest time; a row with a null value is never selected
    assert table.to_pylist()[0]["selector_min(s.v,s.time)"] == {"value": 3, "time": datetime(1970, 1, 1, 0, 0, 2)}
    assert table.to_pylist()[0]["selector_last(s.v,s.time)"] == {"value": 9, "time": datetime(1970, 1, 1, 0, 0, 5)}
    assert rows(engine, "SELECT selector_first(v, time) AS f FROM s WHERE v IS NULL") == [{}]  # null struct


@pytest.mark.parametrize(("call", "message"), [
    ("selector_first(temp, temp)", "Error during planning: selector_first second argument must be a timestamp, "
                                   "but got Float64"),
    ("selector_max(temp)", "Error during planning: selector_max requires at least 2 arguments, got 1"),
    ("selector_min()", "Error during planning: 'selector_min' does not support zero arguments No function matches "
                       "the given name and argument types 'selector_min()'. You might need to add explicit type "
                       "casts.\n\tCandidate functions:\n\tselector_min(Any, .., Any)"),
])
def test_sql_selector_errors_are_the_servers(engine: Engine, call: str, message: str) -> None:
    err = error(engine, f"SELECT {call} FROM home")
    assert (err.message, err.kind) == (message, "plan")


def test_sql_one_function_called_with_different_types_keeps_each_type(engine: Engine) -> None:
    table = engine.query("d", "SELECT selector_max(temp, time)['value'] AS t, selector_max(co, time)['value'] AS c, "
                              "tz(time, 'Asia/Tokyo') AS a, tz(time, 'Europe/Paris') AS b FROM home GROUP BY time "
                              "ORDER BY time LIMIT 1")
    assert [str(t) for t in table.schema.types] == ["double", "int64", "timestamp[ns, tz=Asia/Tokyo]",
                                                    "timestamp[ns, tz=Europe/Paris]"]
    assert table.column(1).to_pylist() == [0]


# ------------------------------------------------------------------------------------------ tz, wallclock
def test_sql_tz_types_and_renders_the_zone(engine: Engine) -> None:
    table = engine.query("d", "SELECT tz(time, 'America/New_York') AS t, tz(time + INTERVAL '1 hour', "
                              "'America/New_York') AS u FROM home WHERE room = 'Kitchen' ORDER BY time LIMIT 1")
    assert [str(t) for t in table.schema.types] == ["timestamp[ns, tz=America/New_York]"] * 2
    assert str(engine.query("d", "SELECT tz(time) AS u FROM home LIMIT 1").schema.types[0]) == "timestamp[ns, tz=UTC]"
    assert rows(engine, "SELECT tz(time, 'America/New_York') AS t FROM home WHERE room = 'Kitchen' "
                        "ORDER BY time LIMIT 1") == [{"t": "2022-01-01T03:00:00-05:00"}]
    err = error(engine, "SELECT tz(time, 'Mars/Olympus') FROM home")
    assert err.message == 'Error during planning: TZ requires a valid timezone string, got "Mars/Olympus"'


def test_sql_date_bin_wallclock_docs_example(engine: Engine) -> None:
    sql = ("SELECT date_bin_wallclock(INTERVAL '12 hours', tz(time, 'America/Los_Angeles')) AS time, room, "
           "avg(temp) AS avg_temp FROM home WHERE time >= '2022-01-01T08:00:00Z' AND time < '2022-01-01T20:00:00Z' "
           "GROUP BY 1, room ORDER BY room")
    assert rows(engine, sql) == [
        {"time": "2022-01-01T00:00:00-08:00", "room": "Kitchen", "avg_temp": 22.233333333333334},
        {"time": "2022-01-01T00:00:00-08:00", "room": "Living Room", "avg_temp": 21.433333333333334}]


def ns(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * NS


@pytest.mark.parametrize(("utc", "stride", "origin", "zone", "expected"), [
    # the crate's unit tests (MAYDAY = 2021-05-01T00:00:00Z)
    (ns(2021, 5, 1, 1), 24 * H, 0, "America/New_York", ns(2021, 5, 1) - 20 * H),
    (ns(2021, 5, 1) - 2 * H, 24 * H, 0, "Europe/Paris", ns(2021, 5, 1) - 2 * H),
    (ns(2021, 5, 1), 24 * H, ns(2021, 4, 30), "Europe/London", ns(2021, 5, 1) - H),
    (ns(2021, 5, 1, 1), 24 * H, ns(2021, 5, 2), "Europe/London", ns(2021, 5, 1) - H),
    # its doc comment: one minute apart across the repeated hour, two hours apart in bins
    (ns(2020, 10, 25, 1, 29), H, 30 * 60 * NS, "Europe/Paris", ns(2020, 10, 24, 23, 30)),
    (ns(2020, 10, 25, 1, 30), H, 30 * 60 * NS, "Europe/Paris", ns(2020, 10, 25, 1, 30)),
    # UTC names behave as date_bin
    (ns(2021, 5, 1, 13), 24 * H, 0, "Etc/UTC", ns(2021, 5, 1)),
])
def test_sql_date_bin_wallclock_matches_the_crate(utc: int, stride: int, origin: int, zone: str,
                                                  expected: int) -> None:
    assert wallclock_bin(utc, stride, origin, zone) == expected


# ------------------------------------------------------------------------------------------ gap filling
def test_sql_gapfill_interpolate_docs_example(engine: Engine) -> None:
    sql = (f"SELECT date_bin_gapfill(INTERVAL '30 minutes', time) as _time, room, interpolate(avg(temp)) "
           f"FROM home {RANGE} GROUP BY _time, room")
    got = rows(engine, sql)
    assert [(r["_time"][11:16], r["room"], r["interpolate(avg(home.temp))"]) for r in got] == [
        ("08:00", "Kitchen", 21.0), ("08:30", "Kitchen", 22.0), ("09:00", "Kitchen", 23.0),
        ("09:30", "Kitchen", 22.85), ("10:00", "Kitchen", 22.7),
        ("08:00", "Living Room", 21.1), ("08:30", "Living Room", 21.25), ("09:00", "Living Room", 21.4),
        ("09:30", "Living Room", 21.6), ("10:00", "Living Room", 21.8)]


def test_sql_gapfill_locf_count_default_order_and_limit(engine: Engine) -> None:
    sql = (f"SELECT date_bin_gapfill(INTERVAL '30 minutes', time) as _time, room, locf(avg(temp)) AS t, "
           f"count(*) AS n, avg(co) AS co FROM home {RANGE} GROUP BY _time, room ORDER BY room DESC, _time LIMIT 3")
    assert rows(engine, sql) == [
        {"_time": "2022-01-01T08:00:00", "room": "Living Room", "t": 21.1, "n": 1, "co": 0.0},
        {"_time": "2022-01-01T08:30:00", "room": "Living Room", "t": 21.1, "n": 0},
        {"_time": "2022-01-01T09:00:00", "room": "Living Room", "t": 21.4, "n": 1, "co": 0.0}]


def test_sql_gapfill_bins_span_the_where_range_and_integers_truncate(engine: Engine) -> None:
    engine.write_lp("d", "g v=10i 1641024000\ng v=21i 1641031200", precision="s")
    sql = ("SELECT date_bin_gapfill(INTERVAL '1 hour', time) AS t, interpolate(max(v)) AS v FROM g "
           "WHERE time >= '2022-01-01T07:30:00Z' AND time < '2022-01-01T11:00:00Z' GROUP BY 1")
    assert rows(engine, sql) == [{"t": "2022-01-01T07:00:00"}, {"t": "2022-01-01T08:00:00", "v": 10},
                                 {"t": "2022-01-01T09:00:00", "v": 15}, {"t": "2022-01-01T10:00:00", "v": 21}]


@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT date_bin_gapfill(INTERVAL '1 hour', time) AS t, avg(temp) FROM home "
     "WHERE time >= '2022-01-01T08:00:00Z' GROUP BY 1",
     "handle_gap_fill\ncaused by\nhandle_aggregate\ncaused by\nbuild_gapfill_node\ncaused by\nvalidate time range"
     "\ncaused by\nError during planning: gap-filling query is missing upper time bound"),
    ("SELECT date_bin_gapfill(INTERVAL '1 hour', time) AS t, avg(temp) FROM home GROUP BY 1",
     "handle_gap_fill\ncaused by\nhandle_aggregate\ncaused by\nbuild_gapfill_node\ncaused by\nvalidate time range"
     "\ncaused by\nError during planning: gap-filling query is missing both upper and lower time bounds"),
    ("SELECT locf(temp) FROM home",
     "handle_gap_fill\ncaused by\nError during planning: locf may only be used in the SELECT list of a "
     "gap-filling query"),
    ("SELECT date_bin_gapfill(INTERVAL '1 hour', time) FROM home",
     "handle_gap_fill\ncaused by\nError during planning: date_bin_gapfill may only be used as a GROUP BY "
     "expression"),
])
def test_sql_gapfill_errors_are_the_analyzers(engine: Engine, sql: str, message: str) -> None:
    err = error(engine, sql)
    assert (err.message, err.kind) == (message, "plan")


def test_sql_df_type_names_parse() -> None:
    text = ('Dictionary(Int32, Utf8), UInt64, Interval(MonthDayNano), Timestamp(ns, "America/New_York"), '
            'Struct("value": Float64, "time": Timestamp(ns)), Timestamp(ms), List(Int64), Decimal128(10, 2)')
    assert [str(t) for t in parse_types(text)] == [
        "dictionary<values=string, indices=int32, ordered=0>", "uint64", "month_day_nano_interval",
        "timestamp[ns, tz=America/New_York]", "struct<value: double, time: timestamp[ns]>", "timestamp[ms]",
        "list<item: int64>", "decimal128(10, 2)"]


# ------------------------------------------------------------------------------------------ windows, others
def test_sql_derivative_and_difference_windows(engine: Engine) -> None:
    sql = ("SELECT room, derivative(temp, time, INTERVAL '1 hour') OVER (PARTITION BY room ORDER BY time) AS d, "
           "difference(co) OVER (PARTITION BY room ORDER BY time) AS c, "
           "non_negative_difference(temp) OVER (PARTITION BY room ORDER BY time) AS n, "
           "non_negative_derivative(temp, time) OVER (PARTITION BY room ORDER BY time) AS nd "
           "FROM home WHERE room = 'Kitchen' ORDER BY time")
    table = engine.query("d", sql)
    assert [str(t) for t in table.schema.types][1:] == ["double", "int64", "double", "double"]
    got = table.to_pylist()
    assert [r["d"] for r in got] == [None, pytest.approx(2.0), pytest.approx(-0.3)]
    assert [r["c"] for r in got] == [None, 0, 0]
    assert [r["n"] for r in got] == [None, pytest.approx(2.0), None]  # negative -> null
    assert [r["nd"] for r in got] == [None, pytest.approx(2.0 / 3600), None]
    err = error(engine, "SELECT derivative(temp, time, INTERVAL '1 day') OVER (ORDER BY time) FROM home")
    assert err.message == "Execution error: derivative unit parameter cannot contain months or days"
    err = error(engine, "SELECT difference(room) OVER (ORDER BY time) FROM home")
    assert err.message.startswith("Error during planning: Failed to coerce arguments to satisfy a call to "
                                  "'difference' function: coercion from Dictionary(Int32, Utf8)")


def test_sql_to_timestamp_reads_integers_as_nanoseconds(engine: Engine) -> None:
    """``to_timestamp.rs``: Int64 is ns (DataFusion's own reads seconds); strings use DataFusion's."""
    sql = ("SELECT to_timestamp(1641024000000000000) AS a, to_timestamp('2022-01-01T08:00:00Z') AS b FROM home "
           "WHERE time > to_timestamp(1641027600000000000) LIMIT 1")
    assert rows(engine, sql) == [{"a": "2022-01-01T08:00:00", "b": "2022-01-01T08:00:00"}]
    err = error(engine, "SELECT to_timestamp(1.5)")
    assert err.message == ("Error during planning: to_timestamp supports either 1 argument (being Int64 or "
                           "Timestamp), or multiple arguments, all of which being Utf8. Could not coerce the provided "
                           "[Float64] to these types.")


def test_sql_sleep_waits_and_answers_null(engine: Engine) -> None:
    import time
    started = time.monotonic()
    assert rows(engine, "SELECT sleep(0.2) AS s") == [{}]
    assert time.monotonic() - started >= 0.2


def test_sql_influx_regex_match(engine: Engine) -> None:
    sql = ("SELECT room, influx_regex_match(room, 'Kit.*') AS m, influx_regex_not_match(room, '^K') AS n "
           "FROM home WHERE time = '2022-01-01T08:00:00Z' ORDER BY room")
    assert rows(engine, sql) == [{"room": "Kitchen", "m": True, "n": False},
                                 {"room": "Living Room", "m": False, "n": True}]
    assert clean_non_meta_escapes(r"a\@b\.c\\d") == r"a@b\.c\\d"


@pytest.mark.parametrize(("zone", "start", "stride_min", "expected"), [
    # date_bin_wallclock_gap_expander.rs TimestampIterator tests
    ("Australia/Sydney", (2022, 10, 1, 0, 0), 1440, ["2022-10-01 00:00:00+10:00", "2022-10-02 00:00:00+10:00",
                                                     "2022-10-03 00:00:00+11:00", "2022-10-04 00:00:00+11:00"]),
    ("Australia/Sydney", (2022, 10, 2, 1, 0), 30, ["2022-10-02 01:00:00+10:00", "2022-10-02 01:30:00+10:00",
                                                   "2022-10-02 03:00:00+11:00", "2022-10-02 03:30:00+11:00"]),
    ("Australia/Sydney", (2022, 10, 1, 2, 30), 1440, ["2022-10-01 02:30:00+10:00", "2022-10-02 03:30:00+11:00",
                                                      "2022-10-03 02:30:00+11:00", "2022-10-04 02:30:00+11:00"]),
    ("Europe/Paris", (2022, 10, 29, 0, 0), 1440, ["2022-10-29 00:00:00+02:00", "2022-10-30 00:00:00+02:00",
                                                  "2022-10-31 00:00:00+01:00", "2022-11-01 00:00:00+01:00"]),
    ("Europe/Paris", (2022, 10, 30, 1, 30), 30, ["2022-10-30 01:30:00+02:00", "2022-10-30 02:00:00+02:00",
                                                 "2022-10-30 02:30:00+02:00", "2022-10-30 02:00:00+01:00",
                                                 "2022-10-30 02:30:00+01:00", "2022-10-30 03:00:00+01:00"]),
])
def test_sql_wallclock_gapfill_steps_match_the_crate(zone: str, start: tuple, stride_min: int,
                                                     expected: list[str]) -> None:
    tz = _zone(zone)
    first = int(datetime(*start, tzinfo=tz).timestamp()) * NS
    steps = _wallclock_steps(first, stride_min * 60 * NS, tz, len(expected))
    assert [str(datetime.fromtimestamp(t // NS, tz)) for t in steps] == expected


def test_sql_date_bin_wallclock_gapfill_query(engine: Engine) -> None:
    sql = ("SELECT date_bin_wallclock_gapfill(INTERVAL '1 hour', tz(time, 'Asia/Kolkata')) AS t, "
           "locf(avg(temp)) AS v FROM home WHERE room = 'Kitchen' AND time >= '2022-01-01T08:00:00Z' "
           "AND time < '2022-01-01T10:00:00Z' GROUP BY 1 ORDER BY 1")
    # Kolkata is +05:30: 08:00Z is 13:30 there (bin 13:00), 09:00Z is 14:30 (bin 14:00), and the upper bound
    # (just before 10:00Z, 15:29 local) makes a 15:00 bin that locf fills
    assert rows(engine, sql) == [{"t": "2022-01-01T13:00:00+05:30", "v": 21.0},
                                 {"t": "2022-01-01T14:00:00+05:30", "v": 23.0},
                                 {"t": "2022-01-01T15:00:00+05:30", "v": 23.0}]


def test_sql_influx_window_bounds_fixed(engine: Engine) -> None:
    """window/internal.rs get_earliest_bounds: the stop of the window holding the time (every 5 min)."""
    engine.write_lp("d", "w v=1i 360", precision="s")
    sql = "SELECT influx_window_bounds(time, 'fixed', 300000000000, false, 'fixed', 0, false) AS stop FROM w"
    assert rows(engine, sql) == [{"stop": "1970-01-01T00:10:00"}]
    sql = "SELECT influx_window_bounds(time, 'fixed', 300000000000, false, 'fixed', 120000000000, false) AS s FROM w"
    assert rows(engine, sql) == [{"s": "1970-01-01T00:07:00"}]


def test_sql_gapfill_interpolates_a_selectors_value_only(engine: Engine) -> None:
    """algo/interpolate.rs: for a selector struct only ``value`` is interpolated, other fields null."""
    sql = (f"SELECT date_bin_gapfill(INTERVAL '30 minutes', time) as _time, interpolate(selector_max(temp, time)) "
           f"AS s FROM home {RANGE} AND room = 'Kitchen' GROUP BY _time")
    assert [r["s"] for r in rows(engine, sql)] == [
        {"value": 21.0, "time": "2022-01-01T08:00:00"}, {"value": 22.0},
        {"value": 23.0, "time": "2022-01-01T09:00:00"}, {"value": 22.85},
        {"value": 22.7, "time": "2022-01-01T10:00:00"}]
