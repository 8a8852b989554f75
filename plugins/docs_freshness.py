"""
{
    "plugin_type": ["onwrite", "scheduled"],
    "onwrite_args_config": [
        {"name": "source_name", "example": "Documentation", "description": "Kapa.ai source to compare with. Env KAPA_SOURCE_NAME. Default Documentation.", "required": false},
        {"name": "repo", "example": "influxdata/docs-v2", "description": "Repository whose merges count. Env GITHUB_REPO. Default influxdata/docs-v2.", "required": false},
        {"name": "base", "example": "master", "description": "Base branch (the gh ref tag). Env GITHUB_BASE. Default master.", "required": false},
        {"name": "severity_threshold", "example": "100", "description": "Lines changed since the ingestion at which an alert is a warning instead of info. Default 100.", "required": false},
        {"name": "project_id", "example": "a1b2c3d4-0000-1111-2222-333344445555", "description": "Kapa.ai project id, used only when kapa_source has no ingestion for the source. Env KAPA_PROJECT_ID.", "required": false},
        {"name": "kapa_api_url", "example": "https://api.kapa.ai", "description": "Kapa.ai API base URL. Env KAPA_API_URL.", "required": false},
        {"name": "kapa_token_file", "example": "/run/secrets/kapa_token", "description": "File holding the Kapa API key for the fallback. Env KAPA_TOKEN_FILE. Default /run/secrets/kapa_token when it exists.", "required": false},
        {"name": "kapa_token", "example": "kapa_xxx", "description": "API key itself (compatibility). Env KAPA_TOKEN.", "required": false},
        {"name": "notify_url_file", "example": "/run/secrets/notify_url", "description": "File holding a Slack-compatible webhook URL; each new alert is POSTed as {\\"text\\": ...}. Env NOTIFY_URL_FILE.", "required": false},
        {"name": "timeout_seconds", "example": "10", "description": "Timeout of one outbound request. Default 10.", "required": false},
        {"name": "max_retries", "example": "3", "description": "Retries of one outbound request. Default 3.", "required": false},
        {"name": "backoff_seconds", "example": "1", "description": "First retry delay, doubled on each retry. Default 1.", "required": false},
        {"name": "budget_seconds", "example": "30", "description": "Time budget for the outbound requests of one evaluation. Default 30.", "required": false}
    ],
    "scheduled_args_config": [
        {"name": "source_name", "example": "Documentation", "description": "Kapa.ai source to compare with. Default Documentation.", "required": false},
        {"name": "repo", "example": "influxdata/docs-v2", "description": "Repository whose merges count. Default influxdata/docs-v2.", "required": false},
        {"name": "base", "example": "master", "description": "Base branch (the gh ref tag). Default master.", "required": false},
        {"name": "severity_threshold", "example": "100", "description": "Warning threshold in lines. Default 100.", "required": false},
        {"name": "project_id", "example": "a1b2c3d4-0000-1111-2222-333344445555", "description": "Kapa.ai project id for the API fallback. Env KAPA_PROJECT_ID.", "required": false},
        {"name": "kapa_api_url", "example": "https://api.kapa.ai", "description": "Kapa.ai API base URL. Env KAPA_API_URL.", "required": false},
        {"name": "kapa_token_file", "example": "/run/secrets/kapa_token", "description": "File holding the Kapa API key. Env KAPA_TOKEN_FILE.", "required": false},
        {"name": "kapa_token", "example": "kapa_xxx", "description": "API key itself (compatibility). Env KAPA_TOKEN.", "required": false},
        {"name": "notify_url_file", "example": "/run/secrets/notify_url", "description": "File holding a Slack-compatible webhook URL. Env NOTIFY_URL_FILE.", "required": false},
        {"name": "timeout_seconds", "example": "10", "description": "Timeout of one outbound request. Default 10.", "required": false},
        {"name": "max_retries", "example": "3", "description": "Retries of one outbound request. Default 3.", "required": false},
        {"name": "backoff_seconds", "example": "1", "description": "First retry delay, doubled on each retry. Default 1.", "required": false},
        {"name": "budget_seconds", "example": "30", "description": "Time budget for the outbound requests of one evaluation. Default 30.", "required": false}
    ]
}
"""

# Compares PRs merged since the last Kapa.ai ingestion of a source with a line threshold. Every evaluation
# writes one `integration_status` row; a `documentation_alert` row is written only when the state is new or
# worse than the alerts already written since that ingestion, so repeated evaluations do not repeat alerts.
# Runs after writes to `gh` (it never writes `gh` itself, so it cannot loop) and daily.

import os
import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import requests

_DEFAULTS = {
    "source_name": "Documentation",
    "repo": "influxdata/docs-v2",
    "base": "master",
    "severity_threshold": "100",
    "kapa_api_url": "https://api.kapa.ai",
    "timeout_seconds": "10",
    "max_retries": "3",
    "backoff_seconds": "1",
    "budget_seconds": "30",
}
_ENV_NAMES = {
    "source_name": "KAPA_SOURCE_NAME",
    "repo": "GITHUB_REPO",
    "base": "GITHUB_BASE",
    "project_id": "KAPA_PROJECT_ID",
    "kapa_api_url": "KAPA_API_URL",
    "notify_url_file": "NOTIFY_URL_FILE",
}
_DEFAULT_KAPA_TOKEN_FILE = "/run/secrets/kapa_token"
_SEVERITY_RANK = {"info": 1, "warning": 2}
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KAPA_PAGE_SIZE = 100
_KAPA_MAX_PAGES = 50
_USER_AGENT = "aichat-stack-docs-freshness"


class ConfigError(ValueError):
    """A setting is invalid; the evaluation is skipped and the reason logged."""


class UpstreamError(RuntimeError):
    """An outbound request (Kapa fallback or webhook) failed within its retry policy."""


class _Retryable(Exception):
    """One answer worth asking again."""

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


def _setting(name, args):
    """One setting: trigger argument, then environment, then default."""
    value = (args or {}).get(name)
    if value is not None and str(value).strip():
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


def _read_secret_file(path, setting):
    """The file's stripped text, or None when it is empty. Raises ConfigError when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path} ({exc.strerror or type(exc).__name__})") from None
    # An empty file means "not configured": `make secrets` and Compose mount empty placeholders.
    return value or None


def _resolve_kapa_token(args):
    """Key: token file (arg, env, /run/secrets), then token (arg, env); None when there is none."""
    for source, name in (((args or {}).get("kapa_token_file"), "kapa_token_file"),
                         (os.environ.get("KAPA_TOKEN_FILE"), "KAPA_TOKEN_FILE")):
        if source and source.strip():
            return _read_secret_file(source.strip(), name)
    if os.path.isfile(_DEFAULT_KAPA_TOKEN_FILE):
        return _read_secret_file(_DEFAULT_KAPA_TOKEN_FILE, _DEFAULT_KAPA_TOKEN_FILE)
    for value in ((args or {}).get("kapa_token"), os.environ.get("KAPA_TOKEN")):
        if value and value.strip():
            return value.strip()
    return None


def _load_config(args, log):
    """Read every setting once into a validated dict; secrets are registered with `log` as soon as they are
    known. Raises ConfigError."""
    log.add_secret(((args or {}).get("kapa_token") or "").strip())
    log.add_secret(os.environ.get("KAPA_TOKEN", "").strip())
    project_id = _setting("project_id", args)
    if project_id and not _ID_RE.match(project_id):
        raise ConfigError(f"invalid project_id {project_id!r}: letters, digits, '-' and '_' only")
    api_url = _setting("kapa_api_url", args).rstrip("/")
    if not api_url.startswith(("http://", "https://")):
        raise ConfigError(f"invalid kapa_api_url {api_url!r}: must start with http:// or https://")
    # The webhook and the Kapa key are optional extras: a file that cannot be used turns that extra off for
    # this run (logged as an error), while the integration_status and alert rows are still written.
    notify_url = None
    notify_file = _setting("notify_url_file", args)
    if notify_file:
        try:
            notify_url = _read_secret_file(notify_file, "notify_url_file")
        except ConfigError as exc:
            log.error(f"webhook off for this run (alerts are still written): {exc}")
        log.add_secret(notify_url)
        if notify_url and not notify_url.startswith(("http://", "https://")):
            log.error("webhook off for this run (alerts are still written): notify_url_file must hold an "
                      "http:// or https:// URL")
            notify_url = None
    kapa_token = None
    if project_id:
        try:
            kapa_token = _resolve_kapa_token(args)
        except ConfigError as exc:
            log.error(f"Kapa API fallback off for this run: {exc}")
        log.add_secret(kapa_token)
    return {
        "source_name": _setting("source_name", args),
        "repo": _setting("repo", args),
        "base": _setting("base", args),
        "severity_threshold": _number("severity_threshold", _setting("severity_threshold", args), int, 1, 10**9),
        "project_id": project_id,
        "kapa_api_url": api_url,
        "kapa_token": kapa_token,
        "notify_url": notify_url,
        "timeout": _number("timeout_seconds", _setting("timeout_seconds", args), float, 0.05, 120),
        "max_retries": _number("max_retries", _setting("max_retries", args), int, 0, 10),
        "backoff": _number("backoff_seconds", _setting("backoff_seconds", args), float, 0, 60),
        "budget": _number("budget_seconds", _setting("budget_seconds", args), float, 0.1, 600),
    }


# ---------------------------------------------------------------- helpers


def _ns(moment):
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def _ns_to_iso(ns):
    """RFC 3339 text with nanoseconds, usable as a $parameter compared with `time`."""
    seconds, fraction = divmod(int(ns), 1_000_000_000)
    whole = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{fraction:09d}Z"


def _parse_ts(value):
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _query(influxdb3_local, log, sql, params):
    """Rows, or [] when the table does not exist yet (the engine raises a plain Exception then)."""
    try:
        return influxdb3_local.query(sql, params) or []
    except Exception as exc:  # QueryError is not injected into plugins, so no narrower class exists
        text = " ".join(str(exc).split())[:200]
        if "not found" in text.lower() or "does not exist" in text.lower():
            log.info(f"table not created yet, treating as no rows ({text})")
        else:
            log.warn(f"query failed, treating as no rows ({text})")
        return []


def _with_retries(cfg, log, what, deadline, send):
    """Call send() until it returns, retrying _Retryable/timeouts/connection errors with backoff."""
    attempt = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UpstreamError(f"{what}: time budget of {cfg['budget']:g}s exhausted")
        try:
            return send(min(cfg["timeout"], remaining))
        except requests.exceptions.Timeout as exc:
            failure = _Retryable(f"timed out ({type(exc).__name__})")
        except requests.exceptions.ConnectionError:
            failure = _Retryable("connection failed")
        except requests.exceptions.RequestException as exc:  # e.g. a body cut short; text may hold the URL
            failure = _Retryable(f"request failed ({type(exc).__name__})")
        except _Retryable as exc:
            failure = exc
        attempt += 1
        if attempt > cfg["max_retries"]:
            raise UpstreamError(f"{what}: {failure.problem}; gave up after {attempt} attempts")
        delay = max(cfg["backoff"] * (2 ** (attempt - 1)), failure.wait or 0.0)
        if time.monotonic() + delay >= deadline:
            raise UpstreamError(f"{what}: {failure.problem}; a retry would exceed the time budget")
        log.warn(f"{what}: {failure.problem}; retry {attempt}/{cfg['max_retries']} in {delay:g}s")
        time.sleep(delay)


def _status_check(resp):
    if resp.status_code == 429:
        retry_after = resp.headers.get("retry-after", "").strip()
        raise _Retryable("HTTP 429", float(retry_after) if retry_after.isdigit() else None)
    if resp.status_code >= 500:
        raise _Retryable(f"HTTP {resp.status_code}")


# ---------------------------------------------------------------- the evaluation


def _latest_ingestion(influxdb3_local, cfg, log):
    """The latest ingestion of the source as int ns: kapa_source first, the Kapa API only when it has none."""
    sql = ("SELECT time FROM kapa_source WHERE source_name = $source_name AND event_type = 'ingested_at'"
           + (" AND project_id = $project_id" if cfg["project_id"] else "")
           + " ORDER BY time DESC LIMIT 1")
    params = {"source_name": cfg["source_name"]}
    if cfg["project_id"]:
        params["project_id"] = cfg["project_id"]
    rows = _query(influxdb3_local, log, sql, params)
    if rows and rows[0].get("time") is not None:
        return int(rows[0]["time"]), "kapa_source"
    if not (cfg["project_id"] and cfg["kapa_token"]):
        return None, "none"
    try:
        found = _kapa_ingestion(cfg, log)
    except UpstreamError as exc:
        log.warn(f"Kapa API fallback failed: {exc}")
        return None, "none"
    return (_ns(found), "kapa_api") if found else (None, "none")


def _kapa_ingestion(cfg, log):
    """ingested_at of the source from the Kapa API (page by page), or None."""
    url = f"{cfg['kapa_api_url']}/ingestion/v1/projects/{cfg['project_id']}/sources/"
    headers = {"X-API-KEY": cfg["kapa_token"], "Accept": "application/json", "User-Agent": _USER_AGENT}
    deadline = time.monotonic() + cfg["budget"]
    seen = 0
    for page in range(1, _KAPA_MAX_PAGES + 1):
        params = {"page": str(page), "page_size": str(_KAPA_PAGE_SIZE)}

        def send(timeout, params=params, page=page):
            resp = requests.get(url, params=params, headers=headers, timeout=(timeout, timeout))
            _status_check(resp)
            if resp.status_code == 404 and page > 1:
                return None
            if resp.status_code != 200:
                raise UpstreamError(f"Kapa answered HTTP {resp.status_code}")
            try:
                return resp.json()
            except ValueError:
                raise _Retryable("malformed JSON") from None

        data = _with_retries(cfg, log, f"Kapa sources page {page}", deadline, send)
        results = data.get("results") if isinstance(data, dict) else None
        if not results:
            return None
        for source in results:
            if isinstance(source, dict) and source.get("name") == cfg["source_name"]:
                return _parse_ts(source.get("ingested_at"))
        seen += len(results)
        if isinstance(data.get("count"), int) and seen >= data["count"]:
            return None
    return None


def _alert_rank_since(influxdb3_local, cfg, log, since_iso):
    sql = ("SELECT severity FROM documentation_alert "
           "WHERE repo = $repo AND source_name = $source_name AND time >= $since")
    rows = _query(influxdb3_local, log, sql,
                  {"repo": cfg["repo"], "source_name": cfg["source_name"], "since": since_iso})
    return max((_SEVERITY_RANK.get(str(row.get("severity")), 0) for row in rows), default=0)


def _notify(cfg, log, text):
    """POST {"text": ...} to the webhook with retries. Never raises; the URL is never logged."""
    payload = {"text": text}

    def send(timeout):
        resp = requests.post(cfg["notify_url"], json=payload, timeout=(timeout, timeout),
                             headers={"User-Agent": _USER_AGENT})
        _status_check(resp)
        if not 200 <= resp.status_code < 300:
            raise UpstreamError(f"webhook answered HTTP {resp.status_code}")
        return True

    try:
        _with_retries(cfg, log, "webhook", time.monotonic() + cfg["budget"], send)
    except UpstreamError as exc:
        log.error(f"alert notification failed (the alert row is kept): {exc}")
        return False
    log.info("alert notification sent")
    return True


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


def _evaluate(influxdb3_local, cfg, log, now):
    """One evaluation: writes integration_status, and documentation_alert when new or worse. Returns a dict."""
    ingestion_ns, origin = _latest_ingestion(influxdb3_local, cfg, log)
    if ingestion_ns is None:
        log.warn(f"no ingestion time known for source {cfg['source_name']!r}; nothing to compare "
                 "(collect kapa_sources first, or set project_id and a Kapa key)")
        return {"evaluated": False}
    since_iso = _ns_to_iso(ingestion_ns)
    rows = _query(influxdb3_local, log,
                  "SELECT SUM(lines) AS total_lines, COUNT(*) AS pr_count FROM gh "
                  "WHERE repo = $repo AND ref = $ref AND activity_type = 'pr_merge' AND time > $since",
                  {"repo": cfg["repo"], "ref": cfg["base"], "since": since_iso})
    total_lines = int((rows[0].get("total_lines") if rows else None) or 0)
    pr_count = int((rows[0].get("pr_count") if rows else None) or 0)
    now_ns = _ns(now)
    age_days = max(0.0, (now_ns - ingestion_ns) / 86_400e9)
    needs_update = 1 if total_lines > 0 else 0

    status = _CheckedLine("integration_status")
    status.tag("repo", cfg["repo"])
    status.tag("source_name", cfg["source_name"])
    status.int64_field("days_since_ingestion", int(age_days))
    status.int64_field("prs_since_ingestion", pr_count)
    status.int64_field("lines_since_ingestion", total_lines)
    status.int64_field("needs_update", needs_update)
    status.int64_field("severity_threshold", cfg["severity_threshold"])
    status.time_ns(now_ns)
    skipped = _write_checked(influxdb3_local, log, status, f"source {cfg['source_name']!r}, repo {cfg['repo']}")

    result = {"evaluated": True, "ingestion": since_iso, "origin": origin, "pr_count": pr_count,
              "total_lines": total_lines, "needs_update": needs_update, "alert": None,
              "skipped": [] if skipped is None else [{"table": "integration_status", "reason": skipped}]}
    log.info(f"{cfg['source_name']} vs {cfg['repo']}@{cfg['base']}: {pr_count} PRs, {total_lines} lines since "
             f"ingestion at {since_iso} (from {origin})")
    if not needs_update:
        return result
    severity = "warning" if total_lines >= cfg["severity_threshold"] else "info"
    previous = _alert_rank_since(influxdb3_local, cfg, log, since_iso)
    if _SEVERITY_RANK[severity] <= previous:
        log.info(f"{severity} alert already raised since this ingestion; not repeating it")
        return result
    message = (f"{cfg['source_name']} needs update: {pr_count} PRs with {total_lines} lines changed "
               f"in the last {age_days:.1f} days")
    alert = _CheckedLine("documentation_alert")
    alert.tag("repo", cfg["repo"])
    alert.tag("source_name", cfg["source_name"])
    alert.tag("severity", severity)
    alert.string_field("message", message)
    alert.int64_field("lines_changed", total_lines)
    alert.int64_field("days_since_ingestion", int(age_days))
    alert.time_ns(now_ns)
    skipped = _write_checked(influxdb3_local, log, alert, f"source {cfg['source_name']!r}, repo {cfg['repo']}")
    if skipped is not None:  # not stored: no notification either, it could not be deduplicated
        result["skipped"].append({"table": "documentation_alert", "reason": skipped})
        return result
    result["alert"] = severity
    log.info(f"raised {severity} alert: {message}")
    if cfg["notify_url"]:
        _notify(cfg, log, f"[{severity}] {message} ({cfg['repo']}@{cfg['base']})")
    return result


def _relevant(table_batches, cfg):
    for batch in table_batches or []:
        if not isinstance(batch, dict) or batch.get("table_name") != "gh":
            continue
        for row in batch.get("rows") or []:
            if (row.get("repo") == cfg["repo"] and row.get("ref") in (None, cfg["base"])
                    and row.get("activity_type") in (None, "pr_merge")):
                return True
    return False


def _configured(influxdb3_local, args):
    log = _Log(influxdb3_local)
    try:
        cfg = _load_config(args, log)
    except ConfigError as exc:
        log.error(f"bad configuration: {log.redact(exc)}")
        return log, None
    return log, cfg


# ---------------------------------------------------------------- entry points


def process_writes(influxdb3_local, table_batches, args=None):
    """Evaluate after writes to gh (trigger `table:gh`); batches without relevant gh rows are ignored.

    Args:
        influxdb3_local: the engine's API object.
        table_batches: [{"table_name": str, "rows": [dict, ...]}]; rows hold only present columns.
        args: trigger arguments (see the metadata above), or None.
    """
    log, cfg = _configured(influxdb3_local, args)
    if cfg is None:
        return
    if not _relevant(table_batches, cfg):
        log.info(f"no new gh rows for {cfg['repo']}@{cfg['base']}; skipped")
        return
    _evaluate(influxdb3_local, cfg, log, datetime.now(UTC))


def process_scheduled_call(influxdb3_local, call_time, args=None):
    """Evaluate daily (trigger `cron:0 0 8 * * *`).

    Args:
        influxdb3_local: the engine's API object.
        call_time: naive local datetime of the scheduled fire time (the evaluation time).
        args: trigger arguments (see the metadata above), or None.
    """
    log, cfg = _configured(influxdb3_local, args)
    if cfg is None:
        return
    now = call_time.astimezone(UTC) if isinstance(call_time, datetime) else datetime.now(UTC)
    _evaluate(influxdb3_local, cfg, log, now)
