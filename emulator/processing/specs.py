"""Trigger specifications: parsing, stored forms and fire times.

Follows InfluxDB 3 Core (processing reference §5, http reference §9):

* ``TriggerSpecificationDefinition::from_string_rep`` (influxdb3_catalog trigger.rs): the spec is
  trimmed; ``table:``/``cron:``/``every:``/``request:`` prefixes are stripped with Rust
  ``trim_start_matches`` (so *repeated* prefixes go too) and the rest trimmed; ``all_tables``
  must match exactly. Errors are ``failed to parse trigger from <trimmed spec>[: <context>]``.
* ``every:`` durations use humantime 2.x ``parse_duration``/``format_duration``; more than one
  year (365.25 days) is rejected.
* ``cron:`` uses the ``cron`` crate (zslayton/cron 0.15): 6 or 7 whitespace-separated fields,
  seconds first (``sec min hour dom month dow [year]``) or ``@yearly``/``@monthly``/``@weekly``/
  ``@daily``/``@hourly``; ``*``, ``?`` (day-of-month and day-of-week only), points, ranges
  ``a-b``, named ranges, lists and steps ``x/n``; month names ``jan``…``december`` and day
  names ``sun``…``saturday`` (case-insensitive); day-of-week runs 1-7 with 1 = Sunday; a day
  must match both day-of-month and day-of-week; evaluated in UTC.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "CronError",
    "CronSchedule",
    "DurationError",
    "EverySchedule",
    "SpecError",
    "TriggerSpec",
    "format_duration",
    "parse_duration",
    "parse_humantime",
    "parse_trigger_spec",
]

NANOS_PER_SECOND = 1_000_000_000
SECONDS_PER_YEAR = 31_557_600  # humantime's year: 365.25 days
SECONDS_PER_MONTH = 2_630_016  # humantime's month: 30.44 days
U64_MAX = 2**64 - 1
FORMS_CONTEXT = (
    "expect one of the following forms: 'table:<TABLE_NAME>', 'all_tables', "
    "'cron:<CRON_EXPRESSION>', 'every:<DURATION>', or 'request:<PATH>'"
)


class SpecError(ValueError):
    """A trigger specification the server rejects; ``message`` is the server's text."""

    def __init__(self, spec: str, context: str | None = None):
        self.spec = spec
        self.context = context
        self.message = f"failed to parse trigger from {spec}" + (f": {context}" if context else "")
        super().__init__(self.message)


class DurationError(ValueError):
    """humantime could not parse a duration (message as humantime's Display)."""


class CronError(ValueError):
    """The cron crate rejects the expression."""


# --- humantime ------------------------------------------------------------------------------

# unit -> (seconds multiplier, nanoseconds multiplier)
_UNITS: dict[str, tuple[int, int]] = {}
for _names, _secs, _nanos in (
    (("nanos", "nsec", "ns"), 0, 1),
    (("usec", "us", "µs"), 0, 1_000),
    (("millis", "msec", "ms"), 0, 1_000_000),
    (("seconds", "second", "secs", "sec", "s"), 1, 0),
    (("minutes", "minute", "min", "mins", "m"), 60, 0),
    (("hours", "hour", "hr", "hrs", "h"), 3600, 0),
    (("days", "day", "d"), 86_400, 0),
    (("weeks", "week", "w"), 604_800, 0),
    (("months", "month", "M"), SECONDS_PER_MONTH, 0),
    (("years", "year", "y"), SECONDS_PER_YEAR, 0),
):
    for _name in _names:
        _UNITS[_name] = (_secs, _nanos)


def _is_unit_char(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


def parse_duration(text: str) -> int:
    """humantime ``parse_duration``: ``"1h 30m"``, ``"1h30m"``, ``"20 min 17 nsec"`` -> nanoseconds.

    Numbers may be split by whitespace (``"1 2h"`` is 12 hours, as humantime does); every number
    needs a unit; units end at whitespace or a digit.
    """
    secs = 0
    nanos = 0
    i = 0
    n = len(text)

    def first_digit(pos: int) -> tuple[int | None, int]:
        while pos < n:
            c = text[pos]
            if "0" <= c <= "9":
                return int(c), pos + 1
            if c.isspace():
                pos += 1
                continue
            raise DurationError(f"expected number at {len(text[:pos].encode())}")
        return None, pos

    value, i = first_digit(0)
    if value is None:
        raise DurationError("value was empty")
    while True:
        # the rest of the number (whitespace allowed inside)
        while i < n:
            c = text[i]
            if "0" <= c <= "9":
                value = value * 10 + int(c)
                if value > U64_MAX:
                    raise DurationError("number is too large")
            elif c.isspace():
                pass
            elif _is_unit_char(c) or c == "µ":
                break
            else:
                raise DurationError(f"invalid character at {len(text[:i].encode())}")
            i += 1
        start = i
        next_digit: int | None = None
        while i < n:
            c = text[i]
            if "0" <= c <= "9":
                next_digit = int(c)
                break
            if c.isspace():
                break
            if not (_is_unit_char(c) or (c == "µ" and i == start)):
                raise DurationError(f"invalid character at {len(text[:i].encode())}")
            i += 1
        unit = text[start:i]
        try:
            unit_secs, unit_nanos = _UNITS[unit]
        except KeyError:
            if not unit:
                raise DurationError(f"time unit needed, for example {value}sec or {value}ms") from None
            raise DurationError(
                f'unknown time unit "{unit}", supported units: ns, us/µs, ms, sec, min, hours, days, '
                "weeks, months, years (and few variations)"
            ) from None
        add_secs = value * unit_secs
        add_nanos = value * unit_nanos
        if add_secs > U64_MAX or add_nanos > U64_MAX:
            raise DurationError("number is too large")
        nanos += add_nanos
        if nanos > NANOS_PER_SECOND:
            add_secs += nanos // NANOS_PER_SECOND
            nanos %= NANOS_PER_SECOND
        secs += add_secs
        if secs > U64_MAX:
            raise DurationError("number is too large")
        if next_digit is not None:
            value = next_digit
            i += 1
            continue
        value, i = first_digit(i)
        if value is None:
            return secs * NANOS_PER_SECOND + nanos


def parse_humantime(text: str) -> float:
    """``parse_duration`` in seconds (float), for settings such as ``--wal-flush-interval``."""
    return parse_duration(text) / NANOS_PER_SECOND


def format_duration(duration_ns: int) -> str:
    """humantime ``format_duration``: ``5400 s`` -> ``1h 30m``; ``86400 s`` -> ``1day``."""
    secs, nanos = divmod(duration_ns, NANOS_PER_SECOND)
    if secs == 0 and nanos == 0:
        return "0s"
    years, ydays = divmod(secs, SECONDS_PER_YEAR)
    months, mdays = divmod(ydays, SECONDS_PER_MONTH)
    days, day_secs = divmod(mdays, 86_400)
    parts: list[str] = []
    for value, name in ((years, "year"), (months, "month"), (days, "day")):
        if value:
            parts.append(f"{value}{name}{'s' if value > 1 else ''}")
    for value, name in (
        (day_secs // 3600, "h"),
        (day_secs % 3600 // 60, "m"),
        (day_secs % 60, "s"),
        (nanos // 1_000_000, "ms"),
        (nanos // 1000 % 1000, "us"),
        (nanos % 1000, "ns"),
    ):
        if value:
            parts.append(f"{value}{name}")
    return " ".join(parts)


# --- cron -----------------------------------------------------------------------------------

_DOW_NAMES = {
    "sun": 1, "sunday": 1, "mon": 2, "monday": 2, "tue": 3, "tues": 3, "tuesday": 3,
    "wed": 4, "wednesday": 4, "thu": 5, "thurs": 5, "thursday": 5, "fri": 6, "friday": 6,
    "sat": 7, "saturday": 7,
}  # fmt: skip
_MONTH_NAMES = {
    "jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3, "apr": 4, "april": 4,
    "may": 5, "jun": 6, "june": 6, "jul": 7, "july": 7, "aug": 8, "august": 8, "sep": 9,
    "september": 9, "oct": 10, "october": 10, "nov": 11, "november": 11, "dec": 12, "december": 12,
}  # fmt: skip


@dataclass(frozen=True)
class _Unit:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None
    allows_any: bool = False


_SECONDS = _Unit("Seconds", 0, 59)
_MINUTES = _Unit("Minutes", 0, 59)
_HOURS = _Unit("Hours", 0, 23)
_DOM = _Unit("Days of Month", 1, 31, allows_any=True)
_MONTHS = _Unit("Months", 1, 12, names=_MONTH_NAMES)
_DOW = _Unit("Days of Week", 1, 7, names=_DOW_NAMES, allows_any=True)
_YEARS = _Unit("Years", 1970, 2100)
_FIELD_UNITS = (_SECONDS, _MINUTES, _HOURS, _DOM, _MONTHS, _DOW, _YEARS)


def _ordinal(text: str, unit: _Unit) -> int:
    if text.isascii() and text.isdigit():
        return int(text)
    raise CronError(f"invalid ordinal {text!r} for {unit.name}")


def _name(text: str, unit: _Unit) -> int:
    if not (text.isascii() and text.isalpha()):
        raise CronError(f"invalid name {text!r}")
    if unit.names is None:
        raise CronError(f"The '{unit.name}' field does not support using names. '{text}' specified.")
    try:
        return unit.names[text.lower()]
    except KeyError:
        raise CronError(f"'{text}' is not a valid name for {unit.name}.") from None


def _check(value: int, unit: _Unit) -> int:
    if value < unit.low or value > unit.high:
        raise CronError(f"{unit.name} out of range: {value}")
    return value


def _range_bounds(text: str, unit: _Unit, allow_any: bool) -> tuple[int, int, bool]:
    """A specifier without a step: ``*``, ``?``, ``a``, ``a-b``, ``NAME``, ``NAME-NAME``.

    Returns (start, end, is_point)."""
    if text == "*" or (text == "?" and allow_any):
        return unit.low, unit.high, False
    if "-" in text:
        a, _, b = text.partition("-")
        if a.isdigit() and b.isdigit():
            start, end = _check(_ordinal(a, unit), unit), _check(_ordinal(b, unit), unit)
        elif a.isalpha() and b.isalpha():
            start, end = _check(_name(a, unit), unit), _check(_name(b, unit), unit)
        else:
            raise CronError(f"invalid range {text!r}")
        if start > end:
            raise CronError(f"Invalid range for {unit.name}: {text}")
        return start, end, False
    if text.isdigit():
        value = _ordinal(text, unit)
        return value, value, True
    value = _name(text, unit)
    return value, value, True


def _parse_field(text: str, unit: _Unit) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"empty list item in {text!r}")
        if "/" in item:
            base, _, step_text = item.partition("/")
            step = _ordinal(step_text, unit)
            if step == 0:
                raise CronError("step cannot be zero")
            if base.isalpha():
                raise CronError(f"a named point cannot take a step: {item!r}")
            start, end, is_point = _range_bounds(base, unit, unit.allows_any)
            if is_point:
                end = unit.high
            values.update(range(_check(start, unit), end + 1, step))
        else:
            start, end, _ = _range_bounds(item, unit, unit.allows_any)
            for value in range(start, end + 1):
                values.add(_check(value, unit))
    return frozenset(values)


_SHORTHANDS: dict[str, tuple[str, ...]] = {
    "@yearly": ("0", "0", "0", "1", "1", "*"),
    "@monthly": ("0", "0", "0", "1", "*", "*"),
    "@weekly": ("0", "0", "0", "*", "*", "1"),
    "@daily": ("0", "0", "0", "*", "*", "*"),
    "@hourly": ("0", "0", "*", "*", "*", "*"),
}


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron-crate expression; ``next_after`` gives the next UTC fire time."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    years: frozenset[int]

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        """Parse 6/7 fields (seconds first) or a shorthand; raise CronError otherwise."""
        stripped = expression.strip()
        fields = _SHORTHANDS.get(stripped) or tuple(stripped.split())
        if len(fields) not in (6, 7):
            raise CronError(f"Expression has {len(fields)} fields. Valid cron expressions have 6 or 7.")
        sets = [_parse_field(text, unit) for text, unit in zip(fields, _FIELD_UNITS, strict=False)]
        if len(sets) == 6:
            sets.append(frozenset(range(_YEARS.low, _YEARS.high + 1)))
        return cls(expression, *sets)

    def _day_matches(self, year: int, month: int, day: int) -> bool:
        if day not in self.days_of_month:
            return False
        weekday = calendar.weekday(year, month, day)  # Monday = 0
        return (weekday + 1) % 7 + 1 in self.days_of_week

    def next_after(self, t: datetime) -> datetime | None:
        """The first fire time strictly after ``t`` (UTC; a naive ``t`` is taken as UTC), or None."""
        if t.tzinfo is not None:
            t = t.astimezone(UTC).replace(tzinfo=None)
        start = t.replace(microsecond=0) + timedelta(seconds=1)
        hours = sorted(self.hours)
        minutes = sorted(self.minutes)
        seconds = sorted(self.seconds)
        for year in sorted(y for y in self.years if y >= start.year):
            for month in sorted(self.months):
                if (year, month) < (start.year, start.month):
                    continue
                last_day = calendar.monthrange(year, month)[1]
                for day in range(1, last_day + 1):
                    if (year, month, day) < (start.year, start.month, start.day):
                        continue
                    if not self._day_matches(year, month, day):
                        continue
                    same_day = (year, month, day) == (start.year, start.month, start.day)
                    for hour in hours:
                        if same_day and hour < start.hour:
                            continue
                        same_hour = same_day and hour == start.hour
                        for minute in minutes:
                            if same_hour and minute < start.minute:
                                continue
                            same_minute = same_hour and minute == start.minute
                            for second in seconds:
                                if same_minute and second < start.second:
                                    continue
                                return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        return None


# --- every ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EverySchedule:
    """``every:<duration>``: fires at multiples of the duration since the Unix epoch."""

    duration_ns: int

    def next_after(self, t: datetime) -> datetime:
        """The next multiple of the duration since the epoch strictly after ``t`` (UTC)."""
        if self.duration_ns < 1_000_000:
            # The server's runner works in whole milliseconds; below 1 ms it cannot schedule
            # (inferred: it would divide by zero). Refuse instead of spinning.
            raise ValueError("every: durations under 1ms cannot be scheduled")
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        delta = t - datetime(1970, 1, 1, tzinfo=UTC)
        t_ns = (delta.days * 86_400 + delta.seconds) * NANOS_PER_SECOND + delta.microseconds * 1000
        next_ns = (t_ns // self.duration_ns + 1) * self.duration_ns
        secs, nanos = divmod(next_ns, NANOS_PER_SECOND)
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=secs, microseconds=nanos // 1000)


# --- trigger specification ------------------------------------------------------------------


@dataclass(frozen=True)
class TriggerSpec:
    """A parsed trigger specification.

    ``kind`` is ``table``, ``all_tables``, ``every``, ``cron`` or ``request``; ``value`` is the
    table name, cron expression, request path, or (for every) the humantime text as stored.
    """

    kind: str
    value: str = ""
    duration_ns: int = 0
    cron: CronSchedule | None = field(default=None, compare=False)

    @property
    def plugin_type(self) -> str:
        """``wal``, ``schedule`` or ``request`` (the ``--restrict-plugin-triggers-to`` words)."""
        return {"table": "wal", "all_tables": "wal", "every": "schedule", "cron": "schedule"}.get(
            self.kind, "request"
        )

    @property
    def plugin_type_name(self) -> str:
        """The server's PluginType name: ``WalRows``, ``Schedule`` or ``Request``."""
        return {"wal": "WalRows", "schedule": "Schedule", "request": "Request"}[self.plugin_type]

    def to_string(self) -> str:
        """The stored string form (``every:`` re-rendered by humantime, e.g. ``every:1m``)."""
        if self.kind == "all_tables":
            return "all_tables"
        if self.kind == "every":
            return f"every:{format_duration(self.duration_ns)}"
        return f"{self.kind}:{self.value}"

    def to_system_json(self) -> Any:
        """The serde form shown by ``system.processing_engine_triggers`` (reference §9)."""
        if self.kind == "all_tables":
            return "all_tables_wal_write"
        if self.kind == "table":
            return {"single_table_wal_write": {"table_name": self.value}}
        if self.kind == "cron":
            return {"schedule": {"schedule": self.value}}
        if self.kind == "every":
            secs, nanos = divmod(self.duration_ns, NANOS_PER_SECOND)
            return {"every": {"duration": {"secs": secs, "nanos": nanos}}}
        return {"request_path": {"path": self.value}}

    def schedule(self) -> CronSchedule | EverySchedule | None:
        """The fire-time calculator of a schedule trigger, None for WAL and request triggers."""
        if self.kind == "cron":
            return self.cron or CronSchedule.parse(self.value)
        if self.kind == "every":
            return EverySchedule(self.duration_ns)
        return None


def _strip_prefix(text: str, prefix: str) -> str:
    """Rust ``trim_start_matches(prefix)`` then ``trim()``."""
    while text.startswith(prefix):
        text = text[len(prefix) :]
    return text.strip()


def parse_trigger_spec(spec: str) -> TriggerSpec:
    """Parse a trigger specification string as the server does; raise SpecError otherwise."""
    spec = spec.strip()
    if spec.startswith("table:"):
        table = _strip_prefix(spec, "table:")
        if not table:
            raise SpecError(spec, "table name is empty")
        return TriggerSpec("table", table)
    if spec == "all_tables":
        return TriggerSpec("all_tables")
    if spec.startswith("cron:"):
        expression = _strip_prefix(spec, "cron:")
        if not expression:
            raise SpecError(spec)
        try:
            schedule = CronSchedule.parse(expression)
        except CronError:
            raise SpecError(spec) from None
        return TriggerSpec("cron", expression, cron=schedule)
    if spec.startswith("every:"):
        text = _strip_prefix(spec, "every:")
        try:
            duration_ns = parse_duration(text)
        except DurationError:
            raise SpecError(spec, "couldn't parse to duration") from None
        if duration_ns > SECONDS_PER_YEAR * NANOS_PER_SECOND:
            raise SpecError(spec, "don't support every schedules of over 1 year")
        return TriggerSpec("every", text, duration_ns=duration_ns)
    if spec.startswith("request:"):
        path = _strip_prefix(spec, "request:")
        if not path:
            raise SpecError(spec)
        return TriggerSpec("request", path)
    raise SpecError(spec, FORMS_CONTEXT)
