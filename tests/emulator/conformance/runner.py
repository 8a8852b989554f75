"""Runner for the conformance cases ported from the real server's own tests (``cases/*.toml``).

Each ``[[test]]`` in a case file is one test function of influxdata/influxdb (``source`` file, ``name``); it
runs on a fresh in-memory engine behind the real HTTP pipeline (:class:`InProcessServer`), as the original
spawns a fresh server. Its ``[[test.step]]`` entries are the requests the original sends, each with the status
and body the original asserts. One step is one *case* in the counts.

Case file shape (TOML; all keys optional unless said)::

    source = "influxdb3/tests/server/write.rs"      # required: the file the tests come from
    [[test]]
    name = "duplicate_field_names_should_fail"      # required: the original test function
    server = { auth = true, disable_authz = ["health"], plugin_dir = true, restrict = ["schedule"],
               gen1_duration = "1m" }
    files = { "plugin.py" = "..." }                 # written into the plugin dir before the server starts
    [[test.step]]
    id = "dup"                                      # names the step in expected_differ.toml (default: index)
    method = "POST"                                 # default GET
    path = "/api/v3/write_lp"                       # required
    query = { db = "foo" }                          # or [["k", "v"], …] for repeated keys / order
    body = "cpu usage=1"                            # or json = {...} (sent as application/json)
    gzip = ["member 1", "member 2"]                 # body = concatenated gzip members, Content-Encoding gzip
    body_gen = { prefix = "m ", item = ",c{i}=1", range = [4, 501], suffix = " 1" }   # a generated body
    headers = { Accept = "text/html" }
    auth = "none"                                   # with an auth server: "admin" (default) or "none"
    basic = ["user", "{token}"]                     # HTTP Basic credentials
    status = 204                                    # int, or "4xx" for any client error
    expect_body = "..."                             # exact body text
    expect_json = [...]                             # parsed JSON equal; a string "~re:<regex>" matches by regex
    expect_contains = ["..."]                       # substrings of the body
    expect_contains_any = ["a", "b"]                # at least one of these substrings
    expect_lines_unordered = "..."                  # the body's lines as a multiset (after skip_lines)
    skip_lines = 1
    expect_headers = { "X-Influxdb-Build" = "Core" }   # value "*" = header present
    expect_json_keys = ["version"]                  # a JSON object with these keys
    expect_json_subset = { errors = ["..."] }       # these top-level keys of a JSON object, matched as expect_json
    expect_parquet_columns = ["host", "time", "val"]

``{token}`` in header values, query values and bodies is replaced by the admin token of an auth server.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import re
import tempfile
import threading
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE / "cases"
DIFFER_FILE = HERE / "expected_differ.toml"
#: the influxdata/influxdb release the cases were read from (newest tag at or below 3.11.1)
SOURCE_REF = "v3.10.1"


# -- loading --------------------------------------------------------------------------------------------


@dataclass
class Step:
    """One request of an original test and what the original asserts about its answer."""

    index: int
    spec: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.spec.get("id", self.index))


@dataclass
class ConformanceTest:
    """One original test function: a fresh server, then its steps in order."""

    source: str
    name: str
    server: dict[str, Any]
    files: dict[str, str]
    steps: list[Step]

    @property
    def key(self) -> str:
        return f"{self.source}::{self.name}"


@dataclass
class DifferEntry:
    """An entry of expected_differ.toml: steps (or a whole test) whose answer differs here, and why."""

    source: str
    test: str
    reason: str
    steps: list[str] | None  # None = the whole test
    ported: bool = True


@dataclass
class Tally:
    """Counts for the summary line: cases (steps) ported, passing, expected to differ, failing."""

    ported: int = 0
    passed: int = 0
    differ: int = 0
    failed: int = 0
    not_ported_tests: int = 0
    tests: int = 0
    originals: set[tuple[str, str]] = field(default_factory=set)

    def summary(self) -> str:
        """The line printed at the end of the session."""
        return (f"conformance: {self.ported} cases ported from {len(self.originals)} server test functions "
                f"({SOURCE_REF}): {self.passed} pass, {self.differ} expected to differ, {self.failed} fail; "
                f"{self.not_ported_tests} more test functions listed as not ported (expected_differ.toml)")


def load_tests() -> list[ConformanceTest]:
    """Every ``[[test]]`` of every case file, in file order."""
    out: list[ConformanceTest] = []
    for path in sorted(CASES_DIR.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        source = data["source"]
        for t in data.get("test", []):
            steps = [Step(i, s) for i, s in enumerate(t.get("step", []))]
            out.append(ConformanceTest(source, t["name"], t.get("server", {}), t.get("files", {}), steps))
    return out


def load_differ() -> list[DifferEntry]:
    """The one list of cases expected to differ (or not portable), with the reason for each."""
    data = tomllib.loads(DIFFER_FILE.read_text(encoding="utf-8"))
    out = []
    for e in data.get("differ", []):
        out.append(DifferEntry(e["source"], e["test"], e["reason"], e.get("steps"), e.get("ported", True)))
    return out


# -- the server ----------------------------------------------------------------------------------------


class _Loop:
    """One asyncio loop on a daemon thread, shared by every in-process server of the session."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="conformance-loop", daemon=True).start()
                cls._loop = loop
            return cls._loop

    @classmethod
    def run(cls, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, cls.get()).result(timeout)


class InProcessServer:
    """The emulator's HTTP pipeline on 127.0.0.1:<ephemeral> over a fresh in-memory engine.

    Built from the same parts as ``python -m emulator serve --object-store memory`` (engine, token store,
    core routes, processing engine, :class:`emulator.http.server.HttpServer`), minus the process: starting
    one takes milliseconds, so every ported test function gets its own, as the original spawns its own.
    ``server`` options: ``auth`` (admin token created as ``influxdb3 create token --admin`` does),
    ``disable_authz`` (list), ``plugin_dir`` (bool), ``restrict`` (trigger kinds allowed), ``gen1_duration``.
    """

    def __init__(self, options: dict[str, Any], files: dict[str, str] | None = None):
        from aiohttp import web

        from emulator.auth import TokenStore
        from emulator.config import ServeConfig, cli_params
        from emulator.engine import Engine
        from emulator.http.core_routes import CoreContext, CoreRoutes, Metrics
        from emulator.http.server import HttpServer, load_processing

        self._tmp = tempfile.TemporaryDirectory(prefix="conformance-")
        plugin_dir = None
        if options.get("plugin_dir") or files:
            plugin_dir = Path(self._tmp.name) / "plugins"
            plugin_dir.mkdir()
            for rel, text in (files or {}).items():
                p = plugin_dir / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(text, encoding="utf-8")
        kinds = set(options.get("restrict", ["wal", "schedule", "request"]))
        cfg = ServeConfig(
            node_id="test-server",
            data_dir=None,
            object_store="memory",
            plugin_dir=plugin_dir,
            virtual_env_location=Path(self._tmp.name) / "venv",
            http_host="127.0.0.1",
            http_port=0,
            without_auth=not options.get("auth", False),
            disable_authz=frozenset(options.get("disable_authz", [])),
            wal_flush_interval=0.005,
            restrict_plugin_triggers_to=kinds,
        )
        engine_options = {}
        if "gen1_duration" in options:
            from emulator.config import GEN1_DURATIONS

            engine_options["gen1_duration_ns"] = GEN1_DURATIONS[options["gen1_duration"]] * 1_000_000_000
        self.engine = Engine(None, wal_flush_interval=cfg.wal_flush_interval, node_id=cfg.node_id, **engine_options)
        self.engine.open()
        self.engine.cli_params = cli_params(cfg)
        self.token: str | None = None
        tokens = None
        if options.get("auth"):
            tokens = TokenStore(self.engine.catalog)
            self.token = tokens.create_admin()["token"]
        ctx = CoreContext(engine=self.engine, tokens=tokens, process_id=str(uuid.uuid4()), metrics=Metrics())
        routes = CoreRoutes(ctx).routes()
        self.pe = load_processing(self.engine, cfg)
        engine_handler = None
        if self.pe is not None:
            from emulator.http.processing_routes import build_routes

            routes.update(build_routes(self.pe))
            self.pe.start()
            engine_handler = self.pe.handle_engine_request
        self.http = HttpServer(cfg, routes, tokens=tokens, engine_handler=engine_handler,
                               cluster_uuid=str(uuid.uuid4()), metrics=ctx.metrics)

        async def start() -> tuple[web.ServerRunner, int]:
            lowlevel = web.Server(self.http.handle, auto_decompress=False, access_log=None)
            runner = web.ServerRunner(lowlevel, handle_signals=False, shutdown_timeout=0.5)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            return runner, port

        self._runner, port = _Loop.run(start())
        self.url = f"http://127.0.0.1:{port}"
        self.session = requests.Session()

    def close(self) -> None:
        """Stop HTTP, the processing engine and the engine; remove the temporary plugin dir."""
        self.session.close()
        _Loop.run(self._runner.cleanup())
        if self.pe is not None:
            self.pe.stop()
        self.engine.close()
        self.http.pool.shutdown(wait=False, cancel_futures=True)
        self._tmp.cleanup()


# -- steps ---------------------------------------------------------------------------------------------


def _subst(value: Any, token: str | None) -> Any:
    if isinstance(value, str):
        return value.replace("{token}", token or "")
    if isinstance(value, list):
        return [_subst(v, token) for v in value]
    if isinstance(value, dict):
        return {k: _subst(v, token) for k, v in value.items()}
    return value


def send(server: InProcessServer, spec: dict[str, Any]) -> requests.Response:
    """Send one step's request as the original test's client sends it."""
    token = server.token
    method = spec.get("method", "GET")
    query = _subst(spec.get("query"), token)
    if isinstance(query, dict):
        query = list(query.items())
    headers = dict(_subst(spec.get("headers", {}), token))
    auth = spec.get("auth", "admin")
    if token and auth == "admin" and "basic" not in spec and not any(k.lower() == "authorization" for k in headers):
        headers["Authorization"] = f"Bearer {token}"
    basic = None
    if "basic" in spec:
        user, password = _subst(spec["basic"], token)
        basic = (user, password)
    data: bytes | None = None
    if "json" in spec:
        data = json.dumps(_subst(spec["json"], token)).encode()
        headers.setdefault("Content-Type", "application/json")
    elif "gzip" in spec:
        data = b"".join(gzip.compress(m.encode()) for m in spec["gzip"])
        headers.setdefault("Content-Encoding", "gzip")
    elif "body" in spec:
        data = _subst(spec["body"], token).encode()
    elif "body_gen" in spec:
        g = spec["body_gen"]
        items = "".join(g["item"].replace("{i}", str(i)) for i in range(*g["range"]))
        data = (g.get("prefix", "") + items + g.get("suffix", "")).encode()
    return server.session.request(method, server.url + spec["path"], params=query, data=data, headers=headers,
                                  auth=basic, timeout=60)


def _json_matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, str) and expected.startswith("~re:"):
        return isinstance(actual, str) and re.fullmatch(expected[4:], actual) is not None
    if isinstance(expected, dict):
        return (isinstance(actual, dict) and expected.keys() == actual.keys()
                and all(_json_matches(v, actual[k]) for k, v in expected.items()))
    if isinstance(expected, list):
        return (isinstance(actual, list) and len(expected) == len(actual)
                and all(_json_matches(e, a) for e, a in zip(expected, actual, strict=True)))
    if isinstance(expected, float) or isinstance(actual, float):
        return isinstance(actual, (int, float)) and not isinstance(actual, bool) and float(expected) == float(actual)
    return type(expected) is type(actual) and expected == actual


def _cut(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def check(spec: dict[str, Any], resp: requests.Response, token: str | None) -> list[str]:
    """Differences between the answer and what the original asserts; empty when it conforms."""
    problems: list[str] = []
    text = resp.content.decode("utf-8", errors="replace")
    want = spec.get("status")
    if isinstance(want, str) and want.endswith("xx"):
        if str(resp.status_code)[0] != want[0]:
            problems.append(f"status {resp.status_code}, expected {want}")
    elif want is not None and resp.status_code != want:
        problems.append(f"status {resp.status_code}, expected {want}")
    if "expect_body" in spec and text != _subst(spec["expect_body"], token):
        problems.append(f"body {text!r}, expected {spec['expect_body']!r}")
    for sub in spec.get("expect_contains", []):
        if _subst(sub, token) not in text:
            problems.append(f"body {_cut(text)!r} lacks {sub!r}")
    anyof = spec.get("expect_contains_any")
    if anyof and not any(_subst(sub, token) in text for sub in anyof):
        problems.append(f"body {text!r} has none of {anyof!r}")
    if "expect_lines_unordered" in spec:
        skip = int(spec.get("skip_lines", 0))
        got = sorted(line for line in text.splitlines()[skip:])
        exp = sorted(line for line in spec["expect_lines_unordered"].splitlines())
        if got != exp:
            problems.append(f"lines {got!r}, expected {exp!r}")
    parsed: Any = None
    if any(k in spec for k in ("expect_json", "expect_json_keys", "expect_json_subset")):
        try:
            parsed = json.loads(text)
        except ValueError:
            problems.append(f"body is not JSON: {text!r}")
            return problems
    if "expect_json" in spec and not _json_matches(spec["expect_json"], parsed):
        problems.append(f"json {parsed!r}, expected {spec['expect_json']!r}")
    for key, want_value in spec.get("expect_json_subset", {}).items():
        if not isinstance(parsed, dict) or key not in parsed or not _json_matches(want_value, parsed[key]):
            got = parsed.get(key) if isinstance(parsed, dict) else parsed
            problems.append(f"json[{key!r}] {got!r}, expected {want_value!r}")
    for key in spec.get("expect_json_keys", []):
        if not isinstance(parsed, dict) or key not in parsed:
            problems.append(f"json {parsed!r} lacks key {key!r}")
    for name, value in spec.get("expect_headers", {}).items():
        got = resp.headers.get(name)
        if got is None or (value != "*" and got != value):
            problems.append(f"header {name}: {got!r}, expected {value!r}")
    if "expect_parquet_columns" in spec:
        import pyarrow.parquet as pq

        try:
            cols = pq.read_table(io.BytesIO(resp.content)).column_names
        except Exception as exc:  # noqa: BLE001 - any decode failure is a difference to report
            problems.append(f"body is not Parquet: {exc}")
        else:
            if sorted(cols) != sorted(spec["expect_parquet_columns"]):
                problems.append(f"parquet columns {cols}, expected {spec['expect_parquet_columns']}")
    return problems


@dataclass
class StepResult:
    step: Step
    problems: list[str]
    expected_to_differ: bool


def run_test(test: ConformanceTest, differ: DifferEntry | None) -> list[StepResult]:
    """Run one ported test function on a fresh server; every step runs, whatever earlier steps gave."""
    server = InProcessServer(test.server, test.files)
    results = []
    try:
        for step in test.steps:
            listed = differ is not None and (differ.steps is None or step.id in differ.steps)
            try:
                resp = send(server, step.spec)
            except requests.RequestException as exc:
                problems = [f"request failed: {exc}"]
            else:
                problems = check(step.spec, resp, server.token)
            results.append(StepResult(step, problems, listed))
    finally:
        server.close()
    return results


#: filled in by test_conformance.py, printed by conftest.py
TALLY = Tally()
