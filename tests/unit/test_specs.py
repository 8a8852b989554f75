"""Trigger specifications: parsing and errors (trigger.rs), humantime, cron crate, fire times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from emulator.processing.specs import (
    FORMS_CONTEXT,
    CronError,
    CronSchedule,
    DurationError,
    EverySchedule,
    SpecError,
    TriggerSpec,
    format_duration,
    parse_duration,
    parse_trigger_spec,
)

S = 1_000_000_000


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "stored", "system_json"),
    [
        ("table:cpu", "table:cpu", {"single_table_wal_write": {"table_name": "cpu"}}),
        ("  table: gh  ", "table:gh", {"single_table_wal_write": {"table_name": "gh"}}),
        ("table:table:x", "table:x", {"single_table_wal_write": {"table_name": "x"}}),
        ("all_tables", "all_tables", "all_tables_wal_write"),
        ("every:10s", "every:10s", {"every": {"duration": {"secs": 10, "nanos": 0}}}),
        ("every:60s", "every:1m", {"every": {"duration": {"secs": 60, "nanos": 0}}}),
        ("every:1h30m", "every:1h 30m", {"every": {"duration": {"secs": 5400, "nanos": 0}}}),
        ("every: 1h 30m", "every:1h 30m", {"every": {"duration": {"secs": 5400, "nanos": 0}}}),
        ("every:6h", "every:6h", {"every": {"duration": {"secs": 21600, "nanos": 0}}}),
        (
            "every:365d",
            "every:11months 30days 3h 50m 24s",
            {"every": {"duration": {"secs": 31_536_000, "nanos": 0}}},
        ),
        ("every:1d", "every:1day", {"every": {"duration": {"secs": 86400, "nanos": 0}}}),
        ("every:2w", "every:14days", {"every": {"duration": {"secs": 1_209_600, "nanos": 0}}}),
        ("every:1y", "every:1year", {"every": {"duration": {"secs": 31_557_600, "nanos": 0}}}),
        ("every:1500ms", "every:1s 500ms", {"every": {"duration": {"secs": 1, "nanos": 500_000_000}}}),
        ("cron:0 0 8 * * *", "cron:0 0 8 * * *", {"schedule": {"schedule": "0 0 8 * * *"}}),
        ("cron:0 * * * * *", "cron:0 * * * * *", {"schedule": {"schedule": "0 * * * * *"}}),
        ("cron:@daily", "cron:@daily", {"schedule": {"schedule": "@daily"}}),
        ("request:hook", "request:hook", {"request_path": {"path": "hook"}}),
        ("request:a/b", "request:a/b", {"request_path": {"path": "a/b"}}),
    ],
)
def test_specs_valid_forms(spec, stored, system_json):
    parsed = parse_trigger_spec(spec)
    assert parsed.to_string() == stored
    assert parsed.to_system_json() == system_json
    # the stored form parses back to the same specification
    assert parse_trigger_spec(stored).to_system_json() == system_json


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("table:", "failed to parse trigger from table:: table name is empty"),
        ("table:   ", "failed to parse trigger from table:: table name is empty"),
        ("every:abc", "failed to parse trigger from every:abc: couldn't parse to duration"),
        ("every:", "failed to parse trigger from every:: couldn't parse to duration"),
        ("every:10", "failed to parse trigger from every:10: couldn't parse to duration"),
        (
            "every:366d",
            "failed to parse trigger from every:366d: don't support every schedules of over 1 year",
        ),
        (
            "every:1y 1s",
            "failed to parse trigger from every:1y 1s: don't support every schedules of over 1 year",
        ),
        ("cron:0 0 * * *", "failed to parse trigger from cron:0 0 * * *"),
        ("cron:", "failed to parse trigger from cron:"),
        ("cron:0 0 25 * * *", "failed to parse trigger from cron:0 0 25 * * *"),
        ("request:", "failed to parse trigger from request:"),
        (" request:  ", "failed to parse trigger from request:"),
        ("all_tables:", f"failed to parse trigger from all_tables:: {FORMS_CONTEXT}"),
        ("Table:cpu", f"failed to parse trigger from Table:cpu: {FORMS_CONTEXT}"),
        ("", f"failed to parse trigger from : {FORMS_CONTEXT}"),
    ],
)
def test_specs_errors(spec, message):
    with pytest.raises(SpecError) as info:
        parse_trigger_spec(spec)
    assert info.value.message == message
    assert str(info.value) == message


def test_specs_forms_context_text():
    assert FORMS_CONTEXT == (
        "expect one of the following forms: 'table:<TABLE_NAME>', 'all_tables', "
        "'cron:<CRON_EXPRESSION>', 'every:<DURATION>', or 'request:<PATH>'"
    )


def test_specs_plugin_types():
    assert parse_trigger_spec("table:x").plugin_type == "wal"
    assert parse_trigger_spec("all_tables").plugin_type_name == "WalRows"
    assert parse_trigger_spec("every:1s").plugin_type == "schedule"
    assert parse_trigger_spec("cron:* * * * * *").plugin_type_name == "Schedule"
    assert parse_trigger_spec("request:x").plugin_type_name == "Request"
    assert parse_trigger_spec("table:x").schedule() is None


# --- humantime --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("17nsec", 17), ("17nanos", 17), ("33ns", 33), ("3usec", 3_000), ("78us", 78_000),
        ("163µs", 163_000), ("31msec", 31_000_000), ("31millis", 31_000_000), ("6ms", 6_000_000),
        ("3000s", 3000 * S), ("300sec", 300 * S), ("300secs", 300 * S), ("50seconds", 50 * S),
        ("1second", S), ("100m", 6000 * S), ("12min", 720 * S), ("12mins", 720 * S),
        ("1minute", 60 * S), ("7minutes", 420 * S), ("2h", 7200 * S), ("7hr", 25200 * S),
        ("7hrs", 25200 * S), ("1hour", 3600 * S), ("24hours", 86400 * S), ("1day", 86400 * S),
        ("2days", 172_800 * S), ("365d", 31_536_000 * S), ("1week", 604_800 * S),
        ("7weeks", 4_233_600 * S), ("52w", 31_449_600 * S), ("1month", 2_630_016 * S),
        ("3months", 3 * 2_630_016 * S), ("12M", 31_560_192 * S), ("1year", 31_557_600 * S),
        ("7years", 7 * 31_557_600 * S), ("17y", 536_479_200 * S), ("20 min 17 nsec ", 1200 * S + 17),
        ("2h 15m", 8100 * S), ("1h30m", 5400 * S), ("1 2h", 12 * 3600 * S),
    ],
)  # fmt: skip
def test_specs_humantime_parse(text, nanos):
    assert parse_duration(text) == nanos


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "value was empty"),
        ("   ", "value was empty"),
        ("10", "time unit needed, for example 10sec or 10ms"),
        ("1x", 'unknown time unit "x", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)'),
        ("m", "expected number at 0"),
        ("1h-2m", "invalid character at 2"),
        ("100000000000000000000s", "number is too large"),
    ],
)  # fmt: skip
def test_specs_humantime_errors(text, message):
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("nanos", "text"),
    [(0, "0s"), (60 * S, "1m"), (5400 * S, "1h 30m"), (9420 * S, "2h 37m"), (32_000_000, "32ms"),
     (86400 * S, "1day"), (2 * 86400 * S + 1, "2days 1ns"), (31_557_600 * S, "1year"),
     (2_630_016 * S, "1month"), (1_500, "1us 500ns"), (3661 * S, "1h 1m 1s")],
)  # fmt: skip
def test_specs_humantime_format(nanos, text):
    assert format_duration(nanos) == text
    assert parse_duration(text) == nanos


# --- cron ---------------------------------------------------------------------------------------


def fires(expr: str, start: datetime, count: int) -> list[datetime]:
    schedule = CronSchedule.parse(expr)
    out = []
    t = start
    for _ in range(count):
        nxt = schedule.next_after(t)
        assert nxt is not None
        out.append(nxt)
        t = nxt
    return out


def test_specs_cron_daily_at_eight_utc():
    spec = parse_trigger_spec("cron:0 0 8 * * *")
    schedule = spec.schedule()
    assert isinstance(schedule, CronSchedule)
    assert schedule.next_after(utc(2026, 1, 1, 9)) == utc(2026, 1, 2, 8)
    assert schedule.next_after(utc(2026, 1, 1, 7, 59, 59)) == utc(2026, 1, 1, 8)
    # strictly after: the fire time itself gives the next day's
    assert schedule.next_after(utc(2026, 1, 1, 8)) == utc(2026, 1, 2, 8)


def test_specs_cron_day_of_week_one_is_sunday():
    # 2026-01-01 is a Thursday; 1-5 means Sunday..Thursday
    days = [d.strftime("%a") for d in fires("0 0 6 * * 1-5", utc(2026, 1, 1), 7)]
    assert days == ["Thu", "Sun", "Mon", "Tue", "Wed", "Thu", "Sun"]
    weekdays = [d.strftime("%a %d") for d in fires("0 0 6 * * MON-FRI", utc(2026, 1, 1), 5)]
    assert weekdays == ["Thu 01", "Fri 02", "Mon 05", "Tue 06", "Wed 07"]
    assert fires("0 0 0 * * sunday", utc(2026, 1, 1), 1) == [utc(2026, 1, 4)]


def test_specs_cron_steps_lists_ranges_names():
    assert fires("*/15 * * * * *", utc(2026, 1, 1, 0, 0, 14, 500_000), 3) == [
        utc(2026, 1, 1, 0, 0, 15),
        utc(2026, 1, 1, 0, 0, 30),
        utc(2026, 1, 1, 0, 0, 45),
    ]
    assert fires("10/20 * * * * *", utc(2026, 1, 1), 3) == [
        utc(2026, 1, 1, 0, 0, 10),
        utc(2026, 1, 1, 0, 0, 30),
        utc(2026, 1, 1, 0, 0, 50),
    ]
    assert fires("0 0 9-17/4 * * *", utc(2026, 1, 1), 3) == [
        utc(2026, 1, 1, 9),
        utc(2026, 1, 1, 13),
        utc(2026, 1, 1, 17),
    ]
    assert fires("0 30 1,13 * * *", utc(2026, 1, 1), 2) == [utc(2026, 1, 1, 1, 30), utc(2026, 1, 1, 13, 30)]
    assert fires("0 0 0 1 Jan-Mar/2 ?", utc(2026, 1, 15), 2) == [utc(2026, 3, 1), utc(2027, 1, 1)]
    assert fires("0 0 0 29 FEB ?", utc(2026, 1, 1), 1) == [utc(2028, 2, 29)]
    assert fires("0 0 0 1 1 * 2030", utc(2026, 1, 1), 1) == [utc(2030, 1, 1)]
    assert CronSchedule.parse("0 0 0 1 1 * 2027").next_after(utc(2027, 6, 1)) is None


def test_specs_cron_day_of_month_and_week_must_both_match():
    # the 13th that is a Friday (cron crate: both fields must match)
    assert fires("0 0 0 13 * FRI", utc(2026, 1, 1), 2) == [utc(2026, 2, 13), utc(2026, 3, 13)]


@pytest.mark.parametrize(
    ("expr", "first"),
    [
        ("@hourly", utc(2026, 1, 1, 1)),
        ("@daily", utc(2026, 1, 2)),
        ("@weekly", utc(2026, 1, 4)),  # Sunday
        ("@monthly", utc(2026, 2, 1)),
        ("@yearly", utc(2027, 1, 1)),
    ],
)
def test_specs_cron_shorthands(expr, first):
    assert CronSchedule.parse(expr).next_after(utc(2026, 1, 1, 0, 0, 30)) == first


@pytest.mark.parametrize(
    "expr",
    [
        "0 0 * * *",  # five fields
        "* * * *",
        "0 0 0 1 1 * 2030 x",
        "60 * * * * *",
        "* 60 * * * *",
        "* * 24 * * *",
        "* * * 0 * *",
        "* * * 32 * *",
        "* * * * 13 *",
        "* * * * * 8",
        "* * * * * 0",
        "? * * * * *",
        "* * * * ? *",
        "* * * * * MON,TURTLE",
        "* * * * * BEAR-OWL",
        "* * * * Jan-Dek *",
        "MON * * * * *",
        "10-12/10-12 * * * * ?",
        "5-1 * * * * *",
        "*/0 * * * * *",
        ",1 * * * * *",
        "Tues/2 * * * * *",
        "* * * * * Tues/2",
        "@reboot",
        "@daily extra",
        "",
    ],
)
def test_specs_cron_rejects(expr):
    with pytest.raises(CronError):
        CronSchedule.parse(expr)


def test_specs_cron_naive_time_is_utc():
    assert CronSchedule.parse("0 0 8 * * *").next_after(datetime(2026, 1, 1, 9)) == utc(2026, 1, 2, 8)


# --- every --------------------------------------------------------------------------------------


def test_specs_every_aligns_to_epoch_multiples():
    every_7m = parse_trigger_spec("every:7m").schedule()
    assert isinstance(every_7m, EverySchedule)
    # 2026-01-01T00:00Z is 1767225600 s = 4207680 * 420: a multiple of 7 minutes
    assert every_7m.next_after(utc(2026, 1, 1)) == utc(2026, 1, 1, 0, 7)
    assert every_7m.next_after(utc(2026, 1, 1, 1)) == utc(2026, 1, 1, 1, 3)  # 01:03, not hour-aligned
    every_1h = EverySchedule(3600 * S)
    assert every_1h.next_after(utc(2026, 1, 1, 9, 59, 59)) == utc(2026, 1, 1, 10)
    assert every_1h.next_after(utc(2026, 1, 1, 10)) == utc(2026, 1, 1, 11)
    assert EverySchedule(10 * S).next_after(datetime(2026, 1, 1, 0, 0, 5)) == utc(2026, 1, 1, 0, 0, 10)
    assert EverySchedule(S // 2).next_after(utc(2026, 1, 1)) == datetime(
        2026, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC
    )
    assert EverySchedule(1_000_000).next_after(datetime(2026, 1, 1, 0, 0, 0, 1_500, tzinfo=UTC)) == datetime(
        2026, 1, 1, 0, 0, 0, 2_000, tzinfo=UTC
    )


def test_specs_every_sub_millisecond_has_no_fire_time():
    schedule = parse_trigger_spec("every:500us").schedule()  # accepted by the parser
    assert isinstance(schedule, EverySchedule)
    with pytest.raises(ValueError):
        schedule.next_after(utc(2026, 1, 1))


def test_specs_every_zero_duration_has_no_fire_time():
    spec = parse_trigger_spec("every:0s")  # accepted by the server's parser
    assert spec.duration_ns == 0
    schedule = spec.schedule()
    assert isinstance(schedule, EverySchedule)
    with pytest.raises(ValueError):
        schedule.next_after(utc(2026, 1, 1))


def test_specs_trigger_spec_equality_ignores_parsed_cron():
    assert parse_trigger_spec("cron:0 0 8 * * *") == TriggerSpec("cron", "0 0 8 * * *")
