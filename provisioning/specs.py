"""Trigger specifications: accept the seed documentation's forms, normalise them to the strings the server
takes (reference §9), and compare a declared spec with the JSON form the server shows in
``system.processing_engine_triggers``.

Accepted inputs, all normalised to strings:
- ``table:<t>``, ``all_tables``, ``every:<humantime>``, ``cron:<6|7 fields or @name>``, ``request:<path>``;
- a five-field crontab (``cron:0 0 * * *``) gets a leading ``0`` seconds field;
- object forms: ``{"every": {"duration": {"secs": 10, "nanos": 0}}}`` -> ``every:10s``,
  ``{"schedule": "cron:0 0 * * *"}`` / ``{"schedule": ["0 0 * * *"]}`` / ``{"schedule": {"schedule": "…"}}``
  -> ``cron:…``, ``{"single_table_wal_write": {"table_name": "gh"}}`` -> ``table:gh``,
  ``"all_tables_wal_write"`` (bare, or JSON-quoted as the system table shows it) -> ``all_tables``,
  ``{"request_path": {"path": "x"}}`` -> ``request:x``.
"""

from __future__ import annotations

import json
import re
from typing import Any

_UNITS: dict[str, int] = {}
for _names, _ns in (
    (("ns", "nsec", "nanos", "nanosecond", "nanoseconds"), 1),
    (("us", "usec", "micros", "microsecond", "microseconds"), 1_000),
    (("ms", "msec", "millis", "millisecond", "milliseconds"), 1_000_000),
    (("s", "sec", "secs", "second", "seconds"), 1_000_000_000),
    (("m", "min", "mins", "minute", "minutes"), 60 * 1_000_000_000),
    (("h", "hr", "hrs", "hour", "hours"), 3600 * 1_000_000_000),
    (("d", "day", "days"), 86400 * 1_000_000_000),
    (("w", "week", "weeks"), 7 * 86400 * 1_000_000_000),
    (("M", "month", "months"), 2_630_016 * 1_000_000_000),  # 30.44 days, as humantime
    (("y", "year", "years"), 31_557_600 * 1_000_000_000),  # 365.25 days, as humantime
):
    for _n in _names:
        _UNITS[_n] = _ns

MAX_EVERY_NS = _UNITS["y"]
_DURATION_PART = re.compile(r"(\d+)\s*([A-Za-z]+)")
_CRON_NAMES = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight")


class SpecError(ValueError):
    """A spec that cannot work; ``fix`` says what to write instead."""

    def __init__(self, problem: str, fix: str):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}; {fix}")


def parse_duration_ns(text: str) -> int:
    """humantime-style duration (``10s``, ``1h 30m``, ``1h30m``) to nanoseconds. Raises ValueError."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    pos, total = 0, 0
    for match in _DURATION_PART.finditer(s):
        if s[pos:match.start()].strip():
            raise ValueError(f"unexpected text {s[pos:match.start()].strip()!r}")
        number, unit = match.groups()
        if unit not in _UNITS:
            raise ValueError(f"unknown unit {unit!r}")
        total += int(number) * _UNITS[unit]
        pos = match.end()
    if pos == 0 or s[pos:].strip():
        raise ValueError(f"cannot parse {s!r}")
    return total


def format_duration(ns: int) -> str:
    """Nanoseconds to the shortest exact humantime text (``3600 s`` -> ``1h``)."""
    for unit in ("w", "d", "h", "m", "s", "ms", "us", "ns"):
        size = _UNITS[unit]
        if ns % size == 0 and ns >= size:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


def _cron(expr: str) -> str:
    expr = " ".join(expr.split())
    if expr in _CRON_NAMES:
        return f"cron:{expr}"
    fields = expr.split(" ")
    if len(fields) == 5:  # crontab without seconds, as the seed writes it
        fields = ["0", *fields]
    if len(fields) not in (6, 7):
        raise SpecError(
            f"cron expression {expr!r} has {len(fields)} fields",
            "write 6 fields with seconds first, e.g. 'cron:0 0 8 * * *' for 08:00 UTC daily",
        )
    return "cron:" + " ".join(fields)


def _object_to_string(obj: Any) -> str:
    if isinstance(obj, dict) and len(obj) == 1:
        key, value = next(iter(obj.items()))
        if key == "every":
            if isinstance(value, dict) and isinstance(value.get("duration"), dict):
                d = value["duration"]
                ns = int(d.get("secs", 0)) * 1_000_000_000 + int(d.get("nanos", 0))
                return f"every:{format_duration(ns)}"
            if isinstance(value, str):
                return f"every:{value}"
        if key == "schedule":
            if isinstance(value, dict) and isinstance(value.get("schedule"), str):
                value = value["schedule"]
            if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
                value = value[0]
            if isinstance(value, str):
                return value if value.startswith("cron:") else f"cron:{value}"
        if key == "single_table_wal_write" and isinstance(value, dict) and "table_name" in value:
            return f"table:{value['table_name']}"
        if key == "request_path" and isinstance(value, dict) and "path" in value:
            return f"request:{value['path']}"
    raise SpecError(
        f"specification {json.dumps(obj)} is not a form the server accepts",
        "use a string such as 'every:1h', 'cron:0 0 8 * * *', 'table:gh' or 'request:github_prs'",
    )


def normalize_spec(spec: Any) -> str:
    """Return the canonical string form of ``spec`` (string or object form). Raises SpecError."""
    if isinstance(spec, str) and spec.strip().startswith(("{", '"')):  # the system table's serde JSON text
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise SpecError(f"specification {spec!r} is not valid JSON", "use a string form like 'every:1h'") from exc
    if isinstance(spec, str) and spec.strip() == "all_tables_wal_write":
        return "all_tables"
    if not isinstance(spec, str):
        spec = _object_to_string(spec)
    s = spec.strip()
    if s == "all_tables":
        return s
    kind, sep, rest = s.partition(":")
    rest = rest.strip()
    if not sep:
        raise SpecError(
            f"specification {s!r} has no kind",
            "use 'table:<TABLE>', 'all_tables', 'cron:<6 fields>', 'every:<DURATION>' or 'request:<PATH>'",
        )
    if kind == "table":
        if not rest:
            raise SpecError("table name is empty", "write 'table:gh'")
        return f"table:{rest}"
    if kind == "request":
        if not rest:
            raise SpecError("request path is empty", "write 'request:<path>', e.g. 'request:github_prs'")
        if rest.startswith("/"):
            raise SpecError(
                f"request path {rest!r} starts with '/' and would be unreachable",
                f"write 'request:{rest.lstrip('/')}'",
            )
        return f"request:{rest}"
    if kind == "every":
        try:
            ns = parse_duration_ns(rest)
        except ValueError as exc:
            raise SpecError(f"duration {rest!r} does not parse ({exc})", "write e.g. 'every:10s', 'every:1h'") from exc
        if ns <= 0:
            raise SpecError(f"duration {rest!r} is zero", "use a positive duration such as 'every:1m'")
        if ns > MAX_EVERY_NS:
            raise SpecError(f"duration {rest!r} is over 1 year", "use at most 'every:1y' or a cron schedule")
        return f"every:{rest}"
    if kind == "cron":
        return _cron(rest)
    raise SpecError(
        f"specification kind {kind!r} is unknown",
        "use 'table:<TABLE>', 'all_tables', 'cron:<6 fields>', 'every:<DURATION>' or 'request:<PATH>'",
    )


def spec_key(spec: Any) -> tuple[str, str]:
    """A comparison key so ``every:1h`` equals the server's ``{"every":{"duration":{"secs":3600,...}}}``."""
    s = normalize_spec(spec)
    kind, _, rest = s.partition(":")
    if kind == "every":
        return ("every", str(parse_duration_ns(rest)))
    return (kind, rest)
