"""
{
    "plugin_type": ["scheduled", "http"],
    "scheduled_args_config": [
        {"name": "project_id", "example": "a1b2c3d4-0000-1111-2222-333344445555", "description": "Kapa.ai project id. Env KAPA_PROJECT_ID.", "required": true},
        {"name": "integration_id", "example": "e5f6a7b8-0000-1111-2222-333344445555", "description": "Kapa.ai integration id, echoed back in the response. Env KAPA_INTEGRATION_ID.", "required": false},
        {"name": "kapa_api_url", "example": "https://api.kapa.ai", "description": "Kapa.ai API base URL. Env KAPA_API_URL. Default https://api.kapa.ai.", "required": false},
        {"name": "kapa_token_file", "example": "/run/secrets/kapa_token", "description": "File holding the Kapa API key. Env KAPA_TOKEN_FILE. Default /run/secrets/kapa_token when it exists.", "required": false},
        {"name": "kapa_token", "example": "kapa_xxx", "description": "API key itself (compatibility; prefer the token file). Env KAPA_TOKEN.", "required": false},
        {"name": "page_size", "example": "100", "description": "Sources per page. Default 100.", "required": false},
        {"name": "max_pages", "example": "100", "description": "Upper bound on pages read per run. Default 100.", "required": false},
        {"name": "timeout_seconds", "example": "10", "description": "Connect and read timeout of one Kapa request. Default 10.", "required": false},
        {"name": "budget_seconds", "example": "45", "description": "Total time budget per run, retries included. Default 45.", "required": false},
        {"name": "max_retries", "example": "4", "description": "Retries per Kapa request on 429, 5xx, timeouts and malformed JSON. Default 4.", "required": false},
        {"name": "backoff_seconds", "example": "1", "description": "First retry delay, doubled on each retry. Default 1.", "required": false}
    ],
    "http_args_config": [
        {"name": "project_id", "example": "a1b2c3d4-0000-1111-2222-333344445555", "description": "Default Kapa.ai project id; a body field project_id overrides it. Env KAPA_PROJECT_ID.", "required": false},
        {"name": "integration_id", "example": "e5f6a7b8-0000-1111-2222-333344445555", "description": "Default integration id, echoed back. Env KAPA_INTEGRATION_ID.", "required": false},
        {"name": "kapa_api_url", "example": "https://api.kapa.ai", "description": "Kapa.ai API base URL. Env KAPA_API_URL.", "required": false},
        {"name": "kapa_token_file", "example": "/run/secrets/kapa_token", "description": "File holding the Kapa API key. Env KAPA_TOKEN_FILE. Never send a key in the query string.", "required": false},
        {"name": "kapa_token", "example": "kapa_xxx", "description": "API key itself (compatibility). Env KAPA_TOKEN. A body field kapa_token is also accepted.", "required": false},
        {"name": "page_size", "example": "100", "description": "Sources per page. Default 100.", "required": false},
        {"name": "max_pages", "example": "100", "description": "Upper bound on pages read per run. Default 100.", "required": false},
        {"name": "timeout_seconds", "example": "10", "description": "Connect and read timeout of one Kapa request. Default 10.", "required": false},
        {"name": "budget_seconds", "example": "45", "description": "Total time budget per request, retries included. Default 45.", "required": false},
        {"name": "max_retries", "example": "4", "description": "Retries per Kapa request. Default 4.", "required": false},
        {"name": "backoff_seconds", "example": "1", "description": "First retry delay, doubled on each retry. Default 1.", "required": false}
    ]
}
"""

# Reads the knowledge sources of one Kapa.ai project (page by page until `count` is reached) and writes two
# `kapa_source` rows per source: event_type=ingested_at (occurred=1) and event_type=next_run_at (scheduled=1),
# each at that event's time. Sources never ingested are reported in the response and not written.

import errno
import json
import os
import re
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import requests

_DEFAULTS = {
    "kapa_api_url": "https://api.kapa.ai",
    "page_size": "100",
    "max_pages": "100",
    "timeout_seconds": "10",
    "budget_seconds": "45",
    "max_retries": "4",
    "backoff_seconds": "1",
}
_ENV_NAMES = {
    "project_id": "KAPA_PROJECT_ID",
    "integration_id": "KAPA_INTEGRATION_ID",
    "kapa_api_url": "KAPA_API_URL",
}
_DEFAULT_TOKEN_FILE = "/run/secrets/kapa_token"
_BODY_FIELDS = ("project_id", "integration_id", "kapa_token")
_QUERY_FIELDS = ("project_id", "integration_id")
_TOKEN_QUERY_KEYS = ("kapa_token", "token", "api_key", "x-api-key", "x_api_key", "apikey")
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_USER_AGENT = "aichat-stack-kapa-sources"


class ConfigError(ValueError):
    """A setting or request field is missing or invalid (answered 400)."""


class UpstreamError(RuntimeError):
    """Kapa could not be read within the retry policy and time budget (answered 502)."""


def _unreachable_reason(exc):
    """"name not resolved" or "network unreachable" when a requests ConnectionError says this machine cannot
    reach the host at all (offline, or a mistyped host), else None (refused, reset: those are retried).

    Looks through the chain requests -> urllib3 (MaxRetryError.reason, NameResolutionError) -> socket.gaierror.
    """
    todo, seen = [exc], set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, socket.gaierror) or type(e).__name__ == "NameResolutionError":
            return "name not resolved"
        if isinstance(e, OSError) and e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "network unreachable"
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None)]
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    return None


def _host(url):
    """host[:port] of `url` for messages: never the user info, path or query (they may hold secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


class _Retryable(Exception):
    """One Kapa answer worth asking again; `wait` is the delay Kapa asked for, if any."""

    def __init__(self, problem, wait=None):
        super().__init__(problem)
        self.problem = problem
        self.wait = wait


class _Log:
    """Log lines prefixed with a task id; every known secret is replaced by *** before it is logged."""

    def __init__(self, influxdb3_local):
        self._local = influxdb3_local
        self.task_id = uuid.uuid4().hex[:8]
        self._secrets = []

    def add_secret(self, secret):
        if secret and len(secret) >= 4 and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)

    def redact(self, text):
        text = str(text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def info(self, text):
        self._local.info(f"[{self.task_id}] {self.redact(text)}")

    def warn(self, text):
        self._local.warn(f"[{self.task_id}] {self.redact(text)}")

    def error(self, text):
        self._local.error(f"[{self.task_id}] {self.redact(text)}")


# ---------------------------------------------------------------- configuration


def _setting(name, args, overrides=None):
    """One setting: request override, then trigger argument, then environment, then default."""
    for source in (overrides or {}, args or {}):
        value = source.get(name)
        if value is not None and str(value).strip() != "":
            return str(value).strip()
    env_name = _ENV_NAMES.get(name)
    if env_name and os.environ.get(env_name, "").strip():
        return os.environ[env_name].strip()
    return _DEFAULTS.get(name)


def _number(name, raw, cast, low, high):
    try:
        value = cast(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {raw!r}")
    return value


def _read_token_file(path, setting):
    """The file's stripped text, or None when it is empty. Raises ConfigError when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path} ({exc.strerror or type(exc).__name__})") from None
    # An empty file means "not configured": `make secrets` and Compose mount empty placeholders.
    return token or None


def _resolve_token(args, body_token):
    """Key: body field (compat), then token file (arg, env, /run/secrets), then token (arg, env)."""
    if body_token:
        return body_token
    for source, name in (((args or {}).get("kapa_token_file"), "kapa_token_file"),
                         (os.environ.get("KAPA_TOKEN_FILE"), "KAPA_TOKEN_FILE")):
        if source and source.strip():
            return _read_token_file(source.strip(), name)
    if os.path.isfile(_DEFAULT_TOKEN_FILE):
        return _read_token_file(_DEFAULT_TOKEN_FILE, _DEFAULT_TOKEN_FILE)
    for value in ((args or {}).get("kapa_token"), os.environ.get("KAPA_TOKEN")):
        if value and value.strip():
            return value.strip()
    return None


def _load_config(args, log, overrides=None, body_token=None):
    """Read every setting once into a validated dict; the key is registered with `log` first, so no later
    error can echo it. Raises ConfigError."""
    for candidate in ((args or {}).get("kapa_token"), os.environ.get("KAPA_TOKEN"), body_token):
        log.add_secret((candidate or "").strip())
    token = _resolve_token(args, body_token)
    log.add_secret(token)
    project_id = _setting("project_id", args, overrides)
    if not project_id:
        raise ConfigError("missing setting project_id: give it in the request body, the trigger argument "
                          "project_id or the KAPA_PROJECT_ID setting")
    if not _ID_RE.match(project_id):
        raise ConfigError(f"invalid project_id {project_id!r}: letters, digits, '-' and '_' only")
    api_url = _setting("kapa_api_url", args).rstrip("/")
    if not api_url.startswith(("http://", "https://")):
        raise ConfigError(f"invalid kapa_api_url {api_url!r}: must start with http:// or https://")
    if not token:
        raise ConfigError("missing Kapa API key: set the trigger argument kapa_token_file or KAPA_TOKEN_FILE "
                          "(or mount /run/secrets/kapa_token)")
    if any(ch.isspace() for ch in token) or not token.isprintable():
        raise ConfigError("the Kapa API key contains whitespace or control characters")
    return {
        "project_id": project_id,
        "integration_id": _setting("integration_id", args, overrides),
        "api_url": api_url,
        "token": token,
        "page_size": _number("page_size", _setting("page_size", args), int, 1, 1000),
        "max_pages": _number("max_pages", _setting("max_pages", args), int, 1, 10000),
        "timeout": _number("timeout_seconds", _setting("timeout_seconds", args), float, 0.05, 120),
        "budget": _number("budget_seconds", _setting("budget_seconds", args), float, 0.1, 600),
        "max_retries": _number("max_retries", _setting("max_retries", args), int, 0, 10),
        "backoff": _number("backoff_seconds", _setting("backoff_seconds", args), float, 0, 60),
    }


# ---------------------------------------------------------------- Kapa HTTP


def _upstream_message(resp):
    try:
        data = resp.json()
        message = data.get("detail") or data.get("message") or data if isinstance(data, dict) else data
    except (ValueError, RecursionError):
        message = resp.text
    return " ".join(str(message).split())[:200]


def _get_page(cfg, log, state, page):
    """GET one page with retries inside the run's budget. Returns parsed JSON, or None for a 404 past page 1."""
    url = f"{cfg['api_url']}/ingestion/v1/projects/{cfg['project_id']}/sources/"
    headers = {"X-API-KEY": cfg["token"], "Accept": "application/json", "User-Agent": _USER_AGENT}
    params = {"page": str(page), "page_size": str(cfg["page_size"])}
    what = f"Kapa sources page {page}"
    attempt = 0
    while True:
        remaining = state["deadline"] - time.monotonic()
        if remaining <= 0:
            raise UpstreamError(f"{what}: time budget of {cfg['budget']:g}s exhausted")
        timeout = min(cfg["timeout"], remaining)
        state["api_calls"] += 1
        try:
            resp = requests.get(url, params=params, headers=headers, timeout=(timeout, timeout))
            status = resp.status_code
            if status == 429:
                retry_after = resp.headers.get("retry-after", "").strip()
                raise _Retryable("rate limited (HTTP 429)", float(retry_after) if retry_after.isdigit() else None)
            if status >= 500:
                raise _Retryable(f"HTTP {status}")
            if status == 404 and page > 1:
                return None
            if status in (401, 403):
                raise UpstreamError(f"{what}: Kapa rejected the API key (HTTP {status}: {_upstream_message(resp)})")
            if status != 200:
                raise UpstreamError(f"{what}: Kapa answered HTTP {status}: {_upstream_message(resp)}")
            try:
                data = resp.json()
            except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the decoder's limit
                raise _Retryable("malformed JSON in the answer") from None
            if not isinstance(data, dict) or not isinstance(data.get("results"), list):
                raise _Retryable("answer without a results list")
            return data
        except requests.exceptions.Timeout as exc:
            failure = _Retryable(f"timed out after {timeout:g}s ({type(exc).__name__})")
        except requests.exceptions.ConnectionError as exc:
            host = _host(url)
            offline = _unreachable_reason(exc)
            if offline:  # a retry cannot help: answer at once, naming the host (as github_prs does)
                raise UpstreamError(f"{what}: cannot reach {host} ({offline}); check this machine's network "
                                    "and kapa_api_url") from None
            failure = _Retryable(f"connection to {host} failed")
        except requests.exceptions.RequestException as exc:  # e.g. a body cut short; text may hold the URL
            failure = _Retryable(f"request failed ({type(exc).__name__})")
        except _Retryable as exc:
            failure = exc
        attempt += 1
        if attempt > cfg["max_retries"]:
            raise UpstreamError(f"{what}: {failure.problem}; gave up after {attempt} attempts")
        delay = max(cfg["backoff"] * (2 ** (attempt - 1)), failure.wait or 0.0)
        if time.monotonic() + delay >= state["deadline"]:
            raise UpstreamError(f"{what}: {failure.problem}; a retry in {delay:g}s would exceed the "
                                f"time budget of {cfg['budget']:g}s")
        log.warn(f"{what}: {failure.problem}; retry {attempt}/{cfg['max_retries']} in {delay:g}s")
        time.sleep(delay)


def _fetch_sources(cfg, log):
    """Every source of the project: pages 1.. until `count` is reached, an empty page, or max_pages."""
    state = {"deadline": time.monotonic() + cfg["budget"], "api_calls": 0}
    sources, seen = [], set()
    count = None
    for page in range(1, cfg["max_pages"] + 1):
        data = _get_page(cfg, log, state, page)
        if data is None or not data["results"]:
            break
        if isinstance(data.get("count"), int):
            count = data["count"]
        for source in data["results"]:
            if not isinstance(source, dict):
                continue
            key = str(source.get("id"))
            if key not in seen:
                seen.add(key)
                sources.append(source)
        if count is not None and len(sources) >= count:
            break
    else:
        log.warn(f"stopped after max_pages={cfg['max_pages']} pages with {len(sources)} of {count} sources")
    return sources, state["api_calls"]


# ---------------------------------------------------------------- rows


def _parse_ts(value):
    """An aware UTC datetime from an ISO 8601 string, or None when absent or unparseable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _ns(moment):
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def _tag_value(value, fallback):
    text = " ".join(str(value or "").split())
    return text or fallback


# ---------------------------------------------------------------- write validation
# The same block sits in every plugin (each plugin is one self-contained file; tests/unit/test_write_validation.py
# keeps the copies identical). Queued writes are flushed after the plugin returns and fail as a whole, so a value
# the server's line protocol parser rejects would lose every row of the run: each value is checked before its row
# is queued, and a row that cannot be stored is skipped and reported instead.

_I64_MIN = -(2 ** 63)
_I64_MAX = 2 ** 63 - 1
_MAX_VALUE_BYTES = 65_536  # tag values and strings: "String is greater than 64KB" (influxdb_line_protocol)


def _value_problem(kind, key, value):
    """Why the server would reject `value` as tag or field `key`, or None.

    kind: "tag" (non-empty, no control character, no trailing backslash, at most 64 KB of UTF-8), "string"
    (at most 64 KB of UTF-8), "int64" or "time" (an int within the signed 64-bit range; for time that is
    nanoseconds since the epoch, 1677-09-21T00:12:43Z..2262-04-11T23:47:16Z).
    """
    if kind in ("int64", "time"):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{key} is not an integer ({type(value).__name__})"
        if not _I64_MIN <= value <= _I64_MAX:
            if kind == "time":
                return f"time {value} ns is outside 1677-09-21T00:12:43Z..2262-04-11T23:47:16Z"
            return f"{key} {value} is outside the signed 64-bit range"
        return None
    if not isinstance(value, str):
        return f"{key} is not a string ({type(value).__name__})"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return f"{key} is not valid UTF-8 (it holds a lone surrogate)"
    if size > _MAX_VALUE_BYTES:
        return f"{key} is {size} bytes, over the 64 KB limit"
    if kind == "tag":
        if not value:
            return f"tag {key} is empty"
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            return f"tag {key} holds a control character"
        if value.endswith("\\"):
            return f"tag {key} ends with a backslash"
    return None


class _CheckedLine:
    """A LineBuilder (same methods, for the kinds written here) that checks each value as it is added.

    `problems` lists what the server would reject; a value with a problem is not added. `build()` is
    LineBuilder's. Queue it with `_write_checked`, which skips the row when `problems` is not empty.
    """

    def __init__(self, table):
        self.table = table
        self.problems = []
        self._line = LineBuilder(table)

    def _ok(self, kind, key, value):
        problem = _value_problem(kind, key, value)
        if problem is not None:
            self.problems.append(problem)
        return problem is None

    def tag(self, key, value):
        value = str(value)
        if self._ok("tag", key, value):
            self._line.tag(key, value)
        return self

    def int64_field(self, key, value):
        if self._ok("int64", key, value):
            self._line.int64_field(key, value)
        return self

    def string_field(self, key, value):
        if self._ok("string", key, value):
            self._line.string_field(key, value)
        return self

    def time_ns(self, value):
        if self._ok("time", "time", value):
            self._line.time_ns(value)
        return self

    def build(self):
        return self._line.build()


def _write_checked(influxdb3_local, log, row, what):
    """Queue `row` (a _CheckedLine) when all its values can be stored; otherwise log a warning naming `what`
    and skip it. Returns None when queued, else the reason (text)."""
    if row.problems:
        reason = "; ".join(row.problems)
        log.warn(f"skipped one {row.table} row ({what}): {reason}")
        return reason
    influxdb3_local.write(row)
    return None


def _source_line(cfg, source, event_type, moment):
    """One kapa_source row as a _CheckedLine (its `problems` say what the server would reject)."""
    line = _CheckedLine("kapa_source")
    line.tag("project_id", cfg["project_id"])
    line.tag("source_id", _tag_value(source.get("id"), "unknown"))
    line.tag("source_name", _tag_value(source.get("name"), "unnamed"))
    line.tag("source_type", _tag_value(source.get("type"), "unknown"))
    line.tag("event_type", event_type)
    line.int64_field("timestamp_unix", int(moment.timestamp()))
    line.string_field("timezone", moment.tzname() or "UTC")
    line.int64_field("occurred" if event_type == "ingested_at" else "scheduled", 1)
    line.time_ns(_ns(moment))
    return line


def _run(influxdb3_local, cfg, log):
    """Fetch and write. Returns the response dict. Raises UpstreamError (nothing written then).

    A value the server cannot store (a time outside 1677..2262, a name it rejects as a tag) skips that one row:
    it is listed under `skipped` ({id, name, event_type, value, reason}) and not counted in rows_written.
    """
    sources, api_calls = _fetch_sources(cfg, log)
    listed, not_ingested, skipped, rows = [], [], [], 0
    for source in sources:
        ingested = _parse_ts(source.get("ingested_at"))
        next_run = _parse_ts(source.get("next_run_at"))
        if ingested is None:
            not_ingested.append({"id": source.get("id"), "name": source.get("name")})
        for event_type, moment in (("ingested_at", ingested), ("next_run_at", next_run)):
            if moment is None:
                continue
            what = f"source {source.get('id')!r} {source.get('name')!r}, {event_type} {source.get(event_type)!r}"
            reason = _write_checked(influxdb3_local, log, _source_line(cfg, source, event_type, moment), what)
            if reason is None:
                rows += 1
            else:
                skipped.append({"id": source.get("id"), "name": source.get("name"), "event_type": event_type,
                                "value": source.get(event_type), "reason": reason})
        listed.append({"id": source.get("id"), "name": source.get("name"), "type": source.get("type"),
                       "ingested_at": source.get("ingested_at"), "next_run_at": source.get("next_run_at")})
    return {
        "status": "success",
        "project_id": cfg["project_id"],
        "integration_id": cfg["integration_id"],
        "source_count": len(listed),
        "sources": listed,
        "not_ingested": not_ingested,
        "rows_written": rows,
        "skipped": skipped,
        "api_calls": api_calls,
    }


# ---------------------------------------------------------------- entry points


def _request_overrides(query_parameters, request_body):
    """Validated request fields (body first, then query string). Raises ConfigError."""
    query = dict(query_parameters or {})
    for key in query:
        if key.lower() in _TOKEN_QUERY_KEYS:
            raise ConfigError(
                f"do not send an API key in the query string ({key}): URLs end up in logs. Put it in the JSON "
                "request body field \"kapa_token\", or better in a token file named by the trigger argument "
                "kapa_token_file or the KAPA_TOKEN_FILE setting")
    body = {}
    raw = request_body or b""
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("request body is not UTF-8 JSON") from None
    if raw.strip():
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except RecursionError:  # the C decoder's answer to deep nesting, on 3.11 and 3.13
            raise ConfigError("request body is not valid JSON: nested too deeply") from None
        if not isinstance(body, dict):
            raise ConfigError("request body must be a JSON object")
    overrides = {}
    for key in _BODY_FIELDS:
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"field {key!r} must be a string, got {type(value).__name__}")
        if value is not None and value.strip():
            overrides[key] = value.strip()
    for key in _QUERY_FIELDS:
        if key not in overrides and query.get(key, "").strip():
            overrides[key] = query[key].strip()
    body_token = overrides.pop("kapa_token", None)
    return overrides, body_token


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    """Collect Kapa source ingestion times on demand (trigger `request:kapa_sources`).

    Args:
        influxdb3_local: the engine's API object.
        query_parameters: URL query parameters (project_id, integration_id); never an API key.
        request_headers: lowercase header names; unused.
        request_body: bytes; optional JSON object with project_id, integration_id, kapa_token.
        args: trigger arguments (see the metadata above), or None.

    Returns:
        (dict, status): 200 with the seed's JSON, 400 for bad input, 502 when Kapa failed.
    """
    log = _Log(influxdb3_local)
    try:
        overrides, body_token = _request_overrides(query_parameters, request_body)
        cfg = _load_config(args, log, overrides, body_token)
    except ConfigError as exc:
        message = log.redact(exc)
        log.error(f"bad request: {message}")
        return {"status": "error", "message": message}, 400
    try:
        result = _run(influxdb3_local, cfg, log)
    except UpstreamError as exc:
        message = f"Kapa collection failed: {log.redact(exc)}"
        log.error(message)
        return {"status": "error", "message": message}, 502
    log.info(f"project {cfg['project_id']}: {result['source_count']} sources, {result['rows_written']} rows, "
             f"{len(result['skipped'])} skipped, {len(result['not_ingested'])} never ingested, "
             f"{result['api_calls']} Kapa requests")
    return result, 200


def process_scheduled_call(influxdb3_local, call_time, args=None):
    """Collect Kapa source ingestion times on a schedule (trigger `every:6h`).

    Args:
        influxdb3_local: the engine's API object.
        call_time: naive local datetime of the scheduled fire time; unused.
        args: trigger arguments (see the metadata above), or None.
    """
    log = _Log(influxdb3_local)
    try:
        cfg = _load_config(args, log)
    except ConfigError as exc:
        log.error(f"bad configuration: {log.redact(exc)}")
        return
    try:
        result = _run(influxdb3_local, cfg, log)
    except UpstreamError as exc:
        log.error(f"Kapa collection failed: {log.redact(exc)}")
        return
    names = ", ".join(str(item["name"]) for item in result["not_ingested"]) or "none"
    log.info(f"project {cfg['project_id']}: {result['source_count']} sources, {result['rows_written']} rows, "
             f"{len(result['skipped'])} skipped, never ingested: {names}; {result['api_calls']} Kapa requests")
