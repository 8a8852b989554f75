"""Seeded fuzz of every JSON route and the write routes (issue 9 item 6): no input crashes the server or
gets an unhandled 500 (``500 {"error":"internal error"}``, what the HTTP layer answers for an exception it
did not expect). Bounded: a fixed number of requests from a fixed seed, and a time budget.

Bodies start from a valid request of each route and are then mutated the way careless clients and
attackers do: odd values in every field (lone surrogates, NUL and control characters, 300-character and
path-like names, huge numbers, wrong types), nesting 5,000 deep, a UTF-8 BOM, UTF-16/UTF-32 encodings,
invalid UTF-8, truncation, byte flips, duplicated keys and wrong content types. Routes that would reach the
network (``install_packages``/``install_requirements`` run pip) only get bodies serde_json refuses.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import ServerProcess, start_server

SEED = 20260909
#: requests per route kind; with the routes below about 3,300 requests in all
JSON_REQUESTS_PER_ROUTE = 150
WRITE_REQUESTS_PER_ROUTE = 250
TIME_BUDGET_S = 60.0  # a ceiling against hangs; the run takes about 10 s here
UNHANDLED = b'{"error":"internal error"}'

_PLUGIN = "def process_writes(influxdb3_local, table_batches, args=None):\n    influxdb3_local.info('ok')\n"
_SCHEDULE_PLUGIN = "def process_scheduled_call(influxdb3_local, call_time, args=None):\n    pass\n"

#: odd strings for any string field: names the server must refuse or keep, never crash on
_STRINGS = [
    "fz", "", " ", "a" * 300, "p" * 300 + ".py", "../x.py", "/etc/passwd", "a/../../b", ".", "..",
    "a\x00b", "\x00", "\ud800", "\udc00", "x\ud83d", "\u0085\u2028", "é", "😀", "\t\n\r", "a\\b", 'q"x',
    "M", "a.b", "_internal", "x" * 5000, "1", "null", "$", "%00", "\x7f", "\u202e", "fz.py", "schedule.py",
    "every:1s", "cron:0 0 * * * *", "table:m", "all_tables", "request:x", "every:", "every:0s", "cron:",
]
_VALUES: list[Any] = [None, True, False, 0, -1, 2**63, -(2**64), 1.5, 1e308, [], {}, ["a"], [None], {"a": 1},
                      [[[[]]]], {"": ""}]


def _odd(rng: random.Random) -> Any:
    return rng.choice(_STRINGS) if rng.random() < 0.7 else rng.choice(_VALUES)


def _valid_bodies(db: str) -> dict[tuple[str, str], Callable[[random.Random], dict[str, Any]]]:
    """A valid body per JSON route (reference §4-§11), randomised a little."""
    def trigger(rng: random.Random) -> dict[str, Any]:
        return {"db": db, "plugin_filename": rng.choice(["fz.py", "schedule.py", "nope.py"]),
                "trigger_name": f"t{rng.randrange(5)}",
                "trigger_specification": rng.choice(["table:m", "all_tables", "every:1h", "request:fz"]),
                "trigger_arguments": {"k": "v"}, "disabled": rng.random() < 0.8,
                "trigger_settings": {"run_async": False, "error_behavior": "log"}}

    return {
        ("POST", "/api/v3/configure/database"): lambda rng: {"db": f"{db}{rng.randrange(3)}"},
        ("PUT", "/api/v3/configure/database"): lambda rng: {"db": db, "retention_period": "7d"},
        ("POST", "/api/v3/configure/table"): lambda rng: {
            "db": db, "table": f"t{rng.randrange(3)}", "tags": ["a", "b"],
            "fields": [{"name": "f", "type": rng.choice(["int64", "utf8", "float64", "bool", "uint64"])}]},
        ("POST", "/api/v3/configure/token/named_admin"): lambda rng: {
            "token_name": f"n{rng.randrange(3)}", "expiry_secs": 60},
        ("POST", "/api/v3/configure/token/admin"): lambda rng: {},
        ("POST", "/api/v3/configure/last_cache"): lambda rng: {"db": db, "table": "m"},
        ("POST", "/api/v3/configure/distinct_cache"): lambda rng: {"db": db, "table": "m", "columns": ["t"]},
        ("POST", "/api/v3/query_sql"): lambda rng: {
            "db": db, "q": rng.choice(["SELECT * FROM m", "SELECT count(*) FROM m", "SHOW TABLES",
                                       "SELECT $a", "SELECT * FROM \"M\""]),
            "format": rng.choice(["json", "jsonl", "csv", "pretty", "parquet"]), "params": {"a": 1}},
        ("POST", "/api/v3/query_influxql"): lambda rng: {"db": db, "q": "SELECT * FROM m"},
        ("POST", "/api/v3/configure/processing_engine_trigger"): trigger,
        ("DELETE", "/api/v3/configure/processing_engine_trigger"): lambda rng: {
            "db": db, "trigger_name": f"t{rng.randrange(5)}", "force": True},
        ("POST", "/api/v3/plugins/files"): lambda rng: {
            "plugin_name": rng.choice(["fz.py", "other.py", "pkg/x.py"]), "content": _PLUGIN},
        ("PUT", "/api/v3/plugins/files"): lambda rng: {"plugin_name": f"t{rng.randrange(5)}", "content": _PLUGIN},
        ("PUT", "/api/v3/plugins/directory"): lambda rng: {
            "plugin_name": "dirplug", "files": [{"relative_path": "__init__.py", "content": _PLUGIN}]},
        ("POST", "/api/v3/plugin_test/wal"): lambda rng: {
            "filename": "fz.py", "database": db, "input_lp": "m,t=a f=1i 1", "input_arguments": {"a": "b"}},
        ("POST", "/api/v3/plugin_test/schedule"): lambda rng: {
            "filename": "schedule.py", "database": db, "schedule": "every:1s"},
        ("POST", "/api/v3/engine/fz"): lambda rng: {"x": 1},
    }


#: routes whose valid bodies would run pip: fuzzed with bodies serde_json refuses only
_NETWORK_ROUTES = [("POST", "/api/v3/configure/plugin_environment/install_packages"),
                   ("POST", "/api/v3/configure/plugin_environment/install_requirements")]


def _mutate_value(obj: Any, rng: random.Random, depth: int = 0) -> Any:
    """Replace, drop or retype some members (recursively)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            r = rng.random()
            if r < 0.08:
                continue  # missing field
            out[k] = _odd(rng) if r < 0.3 else _mutate_value(v, rng, depth + 1)
        if rng.random() < 0.1:
            out[rng.choice(_STRINGS)] = _odd(rng)  # unknown field
        return out
    if isinstance(obj, list):
        return [_mutate_value(v, rng, depth + 1) for v in obj] + ([_odd(rng)] if rng.random() < 0.2 else [])
    return _odd(rng) if rng.random() < 0.3 else obj


def _dumps(obj: Any) -> bytes:
    # ensure_ascii turns a lone surrogate into the escape "\ud800", as a client would send it
    return json.dumps(obj).encode("ascii")


def _broken(body: bytes, rng: random.Random) -> bytes:
    """A body serde_json refuses (nesting, encodings, BOM, truncation, surrogates, control characters)."""
    kind = rng.randrange(9)
    if kind == 0:
        depth = rng.choice([129, 500, 5000])
        return b"[" * depth + body + b"]" * depth
    if kind == 1:
        depth = rng.choice([129, 5000])
        return b'{"db":' * depth + b"1" + b"}" * depth
    if kind == 2:
        return b"\xef\xbb\xbf" + body
    if kind == 3:
        return body.decode("ascii").encode(rng.choice(["utf-16", "utf-16-le", "utf-16-be", "utf-32"]))
    if kind == 4:
        return body[: rng.randrange(len(body))] if body else b"{"
    if kind == 5:
        return body.replace(b'":"', b'":"\\ud800', 1) if b'":"' in body else b'{"db":"\\ud800"}'
    if kind == 6:
        return body.replace(b'":"', b'":"\x01', 1) if b'":"' in body else b'{"db":"\x01"}'
    if kind == 7:
        return body.replace(b'":"', b'":"\xff\xfe', 1) if b'":"' in body else b'{"db":"\xff"}'
    return b"{" + body  # an object key that is not a string


def _byte_noise(body: bytes, rng: random.Random) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randrange(1, 4)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def json_cases(db: str, rng: random.Random) -> Iterator[tuple[str, str, dict[str, str], bytes]]:
    """(method, path, headers, body) for every JSON route, seeded."""
    valid = _valid_bodies(db)
    for (method, path), make in valid.items():
        for _ in range(JSON_REQUESTS_PER_ROUTE):
            base = make(rng)
            r = rng.random()
            if r < 0.15:
                body = _dumps(base)
            elif r < 0.55:
                body = _dumps(_mutate_value(base, rng))
            elif r < 0.85:
                body = _broken(_dumps(base), rng)
            elif r < 0.95:
                body = _byte_noise(_dumps(base), rng)
            else:
                body = _dumps(base)[:-1] + b',"db":"dup"}'  # a duplicated key
            ctype = "application/json" if rng.random() < 0.9 else rng.choice(
                ["text/plain", "application/x+json", "", "application/json; charset=utf-16"])
            yield method, path, {"Content-Type": ctype}, body
    for method, path in _NETWORK_ROUTES:
        for _ in range(JSON_REQUESTS_PER_ROUTE // 3):
            body = _broken(_dumps({"packages": ["x"], "requirements_location": "r.txt"}), rng)
            if kind_is_safe(body):
                yield method, path, {"Content-Type": "application/json"}, body


def kind_is_safe(body: bytes) -> bool:
    """Whether serde_json would refuse ``body`` (so no pip runs): checked with the emulator's own reader."""
    from emulator.jsonbody import SerdeJsonError, loads

    try:
        loads(body)
    except SerdeJsonError:
        return True
    return False


_LP_LINES = ["m,t=a f=1i 1", "m f=1.5", 'm,t=b s="x" 2', "m b=t 3", "m u=1u 4", "M v=1 5", "a.b v=1 6",
             "m .v=5 1000", "m,t=1 v=9223372036854775807i 0", "m v=1i -9223372036854775808"]
_LP_ODD = ["\x00", "\ud800", "\xff", "\\", ",", "=", " ", '"', "\n", "\r\n", "#", "a" * 300, "9" * 30, "é",
           "i", "u", "e400", "t=", ",t", "\t"]


def write_cases(db: str, rng: random.Random) -> Iterator[tuple[str, str, dict[str, str], bytes]]:
    """(method, path, headers, body) for the three write routes, seeded: odd query strings and bodies."""
    routes = [("/api/v3/write_lp", "db"), ("/api/v2/write", "bucket"), ("/write", "db")]
    for path, db_key in routes:
        for _ in range(WRITE_REQUESTS_PER_ROUTE):
            lines = [rng.choice(_LP_LINES) for _ in range(rng.randrange(1, 5))]
            if rng.random() < 0.6:
                i = rng.randrange(len(lines))
                line = lines[i]
                pos = rng.randrange(len(line) + 1)
                lines[i] = line[:pos] + rng.choice(_LP_ODD) + line[pos:]
            text = "\n".join(lines)
            body = text.encode("utf-8", "surrogatepass")
            if rng.random() < 0.1:
                body = _byte_noise(body, rng)
            params = {db_key: db if rng.random() < 0.8 else rng.choice(_STRINGS)}
            if rng.random() < 0.5:
                params["precision"] = rng.choice(["auto", "s", "ms", "us", "ns", "second", "x", "", "n", "h"])
            if rng.random() < 0.2:
                params[rng.choice(["accept_partial", "no_sync"])] = rng.choice(["true", "false", "1", ""])
            query = "&".join(f"{k}={requests.utils.quote(v.encode('utf-8', 'surrogatepass'), safe='')}"
                             for k, v in params.items())
            yield "POST", f"{path}?{query}", {"Content-Type": "text/plain"}, body


@pytest.fixture
def fuzz_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server per test (the fuzz reads its log, and the 5-database limit is per server), with plugins."""
    tmp = tmp_path
    plugins = tmp / "plugins"
    plugins.mkdir()
    (plugins / "fz.py").write_text(_PLUGIN)
    (plugins / "schedule.py").write_text(_SCHEDULE_PLUGIN)
    with start_server(tmp, plugin_dir=plugins, auth=True) as srv:  # auth on: the token routes parse bodies
        yield srv


def _run(srv: ServerProcess, cases: Iterator[tuple[str, str, dict[str, str], bytes]]) -> Counter[str]:
    """Send every case; count statuses; fail on an unhandled 500 or a dead server."""
    counts: Counter[str] = Counter()
    unhandled: list[str] = []
    deadline = time.monotonic() + TIME_BUDGET_S
    session = srv.session  # sends the admin token
    for method, path, headers, body in cases:
        assert time.monotonic() < deadline, f"fuzz over its time budget after {sum(counts.values())} requests"
        r = session.request(method, srv.url + path, headers=headers, data=body, timeout=30)
        counts[str(r.status_code)] += 1
        if r.status_code == 500 and r.content == UNHANDLED:
            unhandled.append(f"{method} {path} {body[:150]!r}")
    assert srv.proc is not None and srv.proc.poll() is None, "the server died"
    assert srv.session.get(srv.url + "/health", timeout=10).status_code == 200
    log = Path(srv.log_path).read_text(errors="replace")
    errors = [chunk.split("\n\n")[0][-1500:] for chunk in log.split(" ERROR emulator.server: ")[1:]]
    assert not unhandled, f"{len(unhandled)} unhandled 500s, e.g.\n" + "\n".join(unhandled[:8]) + \
        "\n---\n" + "\n---\n".join(errors[:4])
    assert "internal error in" not in log and "Traceback" not in log, log[-3000:]
    return counts


def test_fuzz_json_routes_no_crash_no_unhandled_500(fuzz_server: ServerProcess) -> None:
    rng = random.Random(SEED)
    db = "fuzzdb"
    assert fuzz_server.session.post(f"{fuzz_server.url}/api/v3/write_lp?db={db}", data="m,t=a f=1i 1").ok
    counts = _run(fuzz_server, json_cases(db, rng))
    total = sum(counts.values())
    assert total >= 2000, counts
    assert counts["400"] > total // 4, counts  # most mutations are refused, with the server's texts
    print(f"json fuzz: {total} requests, statuses {dict(sorted(counts.items()))}")


def test_fuzz_write_routes_no_crash_no_unhandled_500(fuzz_server: ServerProcess) -> None:
    rng = random.Random(SEED + 1)
    counts = _run(fuzz_server, write_cases("fuzzw", rng))
    total = sum(counts.values())
    assert total == 3 * WRITE_REQUESTS_PER_ROUTE and counts["204"] > 0 and counts["400"] > 0, counts
    # every table written stays queryable
    for q in ("SELECT count(*) FROM m", 'SELECT count(*) FROM "M"', 'SELECT count(*) FROM "a.b"', "SHOW TABLES"):
        r = fuzz_server.session.get(f"{fuzz_server.url}/api/v3/query_sql", params={"db": "fuzzw", "q": q})
        assert r.status_code == 200, (q, r.text)
    print(f"write fuzz: {total} requests, statuses {dict(sorted(counts.items()))}")
