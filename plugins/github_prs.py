"""
{
    "plugin_type": ["scheduled", "http"],
    "scheduled_args_config": [
        {"name": "repos", "example": "influxdata/docs-v2@master influxdata/telegraf@master", "description": "Several repositories: whitespace-separated owner/name@base entries, each collected on every run (repo and base are then ignored here).", "required": false},
        {"name": "repo", "example": "influxdata/docs-v2", "description": "Repository as owner/name. Env GITHUB_REPO. Default influxdata/docs-v2.", "required": false},
        {"name": "base", "example": "master", "description": "Base branch the PRs merged into. Env GITHUB_BASE. Default master.", "required": false},
        {"name": "time_period", "example": "week", "description": "Window: day, week, <N>h or <N>d. Default week on the schedule.", "required": false},
        {"name": "since", "example": "2025-03-01T00:00:00Z", "description": "Window start as ISO 8601; overrides time_period.", "required": false},
        {"name": "github_api_url", "example": "https://api.github.com", "description": "REST base URL. Env GITHUB_API_URL. GraphQL URL is derived (<url>/graphql, or https://HOST/api/graphql for https://HOST/api/v3).", "required": false},
        {"name": "github_token_file", "example": "/run/secrets/github_token", "description": "File holding the GitHub token. Env GITHUB_TOKEN_FILE. Default /run/secrets/github_token when it exists. With a token the plugin uses GraphQL; without, REST.", "required": false},
        {"name": "github_token", "example": "ghp_xxx", "description": "Token itself (compatibility; prefer the token file). Env GITHUB_TOKEN.", "required": false},
        {"name": "timeout_seconds", "example": "10", "description": "Connect and read timeout of one GitHub request. Default 10.", "required": false},
        {"name": "budget_seconds", "example": "45", "description": "Time budget for all GitHub requests of one repository in one run, retries and rate-limit waits included. Default 45.", "required": false},
        {"name": "max_retries", "example": "4", "description": "Retries per GitHub request on rate limits, 5xx, timeouts, malformed JSON and GraphQL errors. Default 4.", "required": false},
        {"name": "backoff_seconds", "example": "1", "description": "First retry delay, doubled on each retry. Default 1.", "required": false},
        {"name": "max_pages", "example": "50", "description": "Upper bound on list pages read per run. Default 50.", "required": false}
    ],
    "http_args_config": [
        {"name": "repos", "example": "influxdata/docs-v2@master influxdata/telegraf@master", "description": "Configured repositories (owner/name@base, whitespace-separated): a request without repo collects each; with repo, that one (its base from this list unless the request names one).", "required": false},
        {"name": "repo", "example": "influxdata/docs-v2", "description": "Default repository; a request body field repo overrides it.", "required": false},
        {"name": "base", "example": "master", "description": "Default base branch; a request body field base overrides it.", "required": false},
        {"name": "time_period", "example": "day", "description": "Default window (day, week, <N>h, <N>d); default day for requests. Body fields time_period or since override it.", "required": false},
        {"name": "github_api_url", "example": "https://api.github.com", "description": "REST base URL. Env GITHUB_API_URL.", "required": false},
        {"name": "github_token_file", "example": "/run/secrets/github_token", "description": "File holding the GitHub token. Env GITHUB_TOKEN_FILE. Never send a token in the query string.", "required": false},
        {"name": "github_token", "example": "ghp_xxx", "description": "Token itself (compatibility). Env GITHUB_TOKEN. A body field github_token is also accepted.", "required": false},
        {"name": "timeout_seconds", "example": "10", "description": "Connect and read timeout of one GitHub request. Default 10.", "required": false},
        {"name": "budget_seconds", "example": "45", "description": "Time budget per repository of a request, retries and rate-limit waits included. Default 45.", "required": false},
        {"name": "max_retries", "example": "4", "description": "Retries per GitHub request. Default 4.", "required": false},
        {"name": "backoff_seconds", "example": "1", "description": "First retry delay, doubled on each retry. Default 1.", "required": false},
        {"name": "max_pages", "example": "50", "description": "Upper bound on list pages read per run. Default 50.", "required": false}
    ]
}
"""

# Collects pull requests merged into a branch of one or more GitHub repositories and writes one `gh` row per PR
# (tags repo, ref, pr_number; time = merged_at) and one `gh_file` row per file the PR changed (tags repo, ref,
# pr_number, path; fields additions, deletions, change_type and, for renames, previous_path; time = merged_at).
#
# With a token it asks GraphQL: 100 PRs per request with line counts and their first 100 files
# (`files(first: 100)`); a PR with more files gets follow-up requests for its files only, one per further 100.
# Requests per repository and run, first and repeat alike: ceil(PRs / 100) + sum over PRs of
# (ceil(files / 100) - 1). GraphQL's PullRequestChangedFile has path, additions, deletions and changeType but no
# previous path, so with a token a renamed file is written with change_type "renamed" and no previous_path
# (fetching it would cost a REST call per PR with a rename; see docs/collectors.md).
# Without a token it lists closed PRs over REST, following Link pagination, and for each merged PR not yet
# recorded (no `gh` row, or no `gh_file` rows for a PR with changed lines) fetches the detail and the files
# (`/pulls/{n}/files?per_page=100`, Link pagination; GitHub lists at most 3,000 files of a PR, logged when hit):
# list pages + per new PR 1 + ceil(files / 100), and only the list pages on a repeat.
# Rows use the series key (tags + merged_at), so collecting again overwrites and never duplicates.
# Each value is checked before its row is queued (see "write validation").
# Runs on InfluxDB 3 Core's processing engine: fresh globals on every call, `LineBuilder` is a builtin, writes
# are flushed after a normal return.

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
    "repo": "influxdata/docs-v2",
    "base": "master",
    "github_api_url": "https://api.github.com",
    "timeout_seconds": "10",
    "budget_seconds": "45",
    "max_retries": "4",
    "backoff_seconds": "1",
    "max_pages": "50",
}
_ENV_NAMES = {
    "repo": "GITHUB_REPO",
    "base": "GITHUB_BASE",
    "github_api_url": "GITHUB_API_URL",
    "github_token_file": "GITHUB_TOKEN_FILE",
    "github_token": "GITHUB_TOKEN",
}
_DEFAULT_TOKEN_FILE = "/run/secrets/github_token"
_BODY_FIELDS = ("repo", "base", "time_period", "since", "github_token")
_QUERY_FIELDS = ("repo", "base", "time_period", "since")
_TOKEN_QUERY_KEYS = ("github_token", "token", "access_token", "api_key")
_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_PERIOD_RE = re.compile(r"^([1-9][0-9]{0,4})([hd])$")
_MAX_WINDOW = timedelta(days=366)
_PAGE_SIZE = 100
_USER_AGENT = "aichat-stack-github-prs"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_GRAPHQL_FILES = "files(first: 100AFTER) { pageInfo { hasNextPage endCursor } nodes { path additions deletions changeType } }"
_GRAPHQL_QUERY = """
query($owner: String!, $name: String!, $base: String!, $cursor: String) {
  rateLimit { cost remaining resetAt }
  repository(owner: $owner, name: $name) {
    pullRequests(first: 100, after: $cursor, states: [MERGED], baseRefName: $base,
                 orderBy: {field: UPDATED_AT, direction: DESC}) {
      pageInfo { hasNextPage endCursor }
      nodes { number title url mergedAt updatedAt additions deletions changedFiles baseRefName author { login }
              FILES }
    }
  }
}
""".replace("FILES", _GRAPHQL_FILES.replace("AFTER", ""))
_GRAPHQL_FILES_QUERY = """
query($owner: String!, $name: String!, $number: Int!, $cursor: String) {
  rateLimit { cost remaining resetAt }
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) { FILES }
  }
}
""".replace("FILES", _GRAPHQL_FILES.replace("AFTER", ", after: $cursor"))
_GRAPHQL_FATAL_TYPES = {"NOT_FOUND", "FORBIDDEN", "UNAUTHORIZED"}
# GraphQL PatchStatus and REST file status -> gh_file.change_type (REST's rare "unchanged", and any word GitHub
# may add, become "changed": listed by GitHub without a content change we can name).
_CHANGE_TYPES = {"ADDED": "added", "DELETED": "removed", "MODIFIED": "modified", "RENAMED": "renamed",
                 "COPIED": "copied", "CHANGED": "changed", "added": "added", "removed": "removed",
                 "modified": "modified", "renamed": "renamed", "copied": "copied", "changed": "changed"}
_MAX_LISTED_FILES = 3000  # GitHub lists at most 3,000 files of one PR (REST "List pull requests files")
_RATE_LIMIT_MARGIN = 0.5  # seconds added to a wait for x-ratelimit-reset (whole seconds, other clocks)


class ConfigError(ValueError):
    """A setting or request field is missing or invalid (answered 400)."""


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


class UpstreamError(RuntimeError):
    """GitHub could not be read within the retry policy and time budget (answered 502)."""


class _Retryable(Exception):
    """One GitHub answer that is worth asking again; `wait` is the delay GitHub asked for, if any, and `reset`
    the epoch second at which an exhausted rate limit resets (x-ratelimit-reset), if GitHub said."""

    def __init__(self, problem, wait=None, reset=None):
        super().__init__(problem)
        self.problem = problem
        self.wait = wait
        self.reset = reset


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


# owner/name@base: the same block in github_prs.py and docs_freshness.py (a test keeps the copies identical, and
# provisioning/freshness.py accepts the same entries). The branch follows git's check-ref-format rules.
_REPO_AT_BASE_RE = re.compile(r"^([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)@(.+)\Z", re.S)
_BAD_BRANCH_RE = re.compile(r"[\s\x00-\x1f\x7f~^:?*\[\\]|\.\.|@\{|//|^[/.-]|/\.|\.lock(?:/|$)|[/.]$|^@$")
_MAX_BRANCH = 255


def _branch_ok(base):
    """True when `base` is a branch name git accepts, at most 255 characters: no whitespace or control character,
    none of ~ ^ : ? * [ \\, no "..", "@{" or "//", no part starting with "." or ending in ".lock", not starting
    with "/" or "-", not ending in "/" or ".", not "@" alone (git-check-ref-format(1))."""
    return isinstance(base, str) and 0 < len(base) <= _MAX_BRANCH and not _BAD_BRANCH_RE.search(base)


def _split_repo_at_base(entry):
    """(owner/name, base) of one `owner/name@base` string, or None when it is not one."""
    match = _REPO_AT_BASE_RE.match(entry) if isinstance(entry, str) else None
    if match is None or not _branch_ok(match.group(2)):
        return None
    return match.group(1), match.group(2)


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
    """Token: body field (compat), then token file (arg, env, /run/secrets), then token (arg, env)."""
    if body_token:
        return body_token
    for source, name in (((args or {}).get("github_token_file"), "github_token_file"),
                         (os.environ.get("GITHUB_TOKEN_FILE"), "GITHUB_TOKEN_FILE")):
        if source and source.strip():
            return _read_token_file(source.strip(), name)
    if os.path.isfile(_DEFAULT_TOKEN_FILE):
        return _read_token_file(_DEFAULT_TOKEN_FILE, _DEFAULT_TOKEN_FILE)
    for value in ((args or {}).get("github_token"), os.environ.get("GITHUB_TOKEN")):
        if value and value.strip():
            return value.strip()
    return None


def _parse_since(text, now):
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(f"invalid since {text!r}: use ISO 8601, e.g. 2025-03-01T00:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    parsed = parsed.astimezone(UTC)
    if parsed > now:
        raise ConfigError(f"invalid since {text!r}: it is in the future")
    if now - parsed > _MAX_WINDOW:
        raise ConfigError(f"invalid since {text!r}: the window may span at most 366 days")
    return parsed


def _period_delta(period):
    if period == "day":
        return timedelta(days=1)
    if period == "week":
        return timedelta(days=7)
    match = _PERIOD_RE.match(period or "")
    if match:
        count, unit = int(match.group(1)), match.group(2)
        delta = timedelta(hours=count) if unit == "h" else timedelta(days=count)
        if delta <= _MAX_WINDOW:
            return delta
    raise ConfigError(f"invalid time_period {period!r}: use day, week, <N>h or <N>d (at most 366 days)")


def _graphql_url(api_url):
    if api_url.endswith("/api/v3"):
        return api_url[: -len("/api/v3")] + "/api/graphql"
    return api_url + "/graphql"


def _parse_repos(text):
    """[(repo, base), ...] from the `repos` argument: whitespace-separated owner/name@base. Raises ConfigError."""
    targets = []
    for entry in text.split():
        target = _split_repo_at_base(entry)
        if target is None:
            raise ConfigError(f"invalid repos entry {entry!r}: use owner/name@base, e.g. influxdata/docs-v2@master")
        if target in targets:
            raise ConfigError(f"repos lists {entry} twice")
        targets.append(target)
    return targets


def _targets(args, overrides):
    """The (repo, base) pairs to collect: with `repos` configured, all of them, or the one a request names (its
    base from the request, else from `repos`, else the base setting); without `repos`, repo and base as
    always. Raises ConfigError."""
    overrides = overrides or {}
    repos_text = str((args or {}).get("repos") or "").strip()
    if not repos_text:
        return [(_setting("repo", args, overrides), _setting("base", args, overrides))]
    configured = _parse_repos(repos_text)
    repo = overrides.get("repo")
    if not repo:
        if overrides.get("base"):
            raise ConfigError("base without repo: several repositories are configured (repos), name the one "
                              "to collect with repo")
        return configured
    base = overrides.get("base") or next((b for r, b in configured if r.lower() == repo.lower()), None)
    return [(repo, base or _setting("base", args))]


def _load_config(args, now, default_period, log, overrides=None, body_token=None):
    """Read every setting once into a validated dict; the token is registered with `log` first, so no later
    error can echo it. cfg["targets"] lists the (repo, base) pairs to collect; `_for_target` makes the
    per-repository dict. Raises ConfigError."""
    for candidate in ((args or {}).get("github_token"), os.environ.get("GITHUB_TOKEN"), body_token):
        log.add_secret((candidate or "").strip())
    token = _resolve_token(args, body_token)
    log.add_secret(token)
    targets = _targets(args, overrides)
    for repo, base in targets:
        if not _REPO_RE.match(repo):
            raise ConfigError(f"invalid repo {repo!r}: use owner/name")
        if not _branch_ok(base):
            raise ConfigError(f"invalid base {base!r}: a git branch name of at most 255 characters")
    api_url = _setting("github_api_url", args).rstrip("/")
    if not api_url.startswith(("http://", "https://")):
        raise ConfigError(f"invalid github_api_url {api_url!r}: must start with http:// or https://")
    since_text = _setting("since", args, overrides)
    if since_text:
        since = _parse_since(since_text, now)
        period = None
    else:
        period = _setting("time_period", args, overrides) or default_period
        since = now - _period_delta(period)
    if token is not None and (any(ch.isspace() for ch in token) or not token.isprintable()):
        raise ConfigError("the GitHub token contains whitespace or control characters")
    return {
        "targets": targets,
        "api_url": api_url,
        "graphql_url": _graphql_url(api_url),
        "since": since,
        "since_iso": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "time_period": period,
        "token": token,
        "timeout": _number("timeout_seconds", _setting("timeout_seconds", args), float, 0.05, 120),
        "budget": _number("budget_seconds", _setting("budget_seconds", args), float, 0.1, 600),
        "max_retries": _number("max_retries", _setting("max_retries", args), int, 0, 10),
        "backoff": _number("backoff_seconds", _setting("backoff_seconds", args), float, 0, 60),
        "max_pages": _number("max_pages", _setting("max_pages", args), int, 1, 1000),
    }


def _for_target(cfg, repo, base):
    """The settings of one repository's collection: cfg plus repo, owner, name and base."""
    owner, name = repo.split("/")
    return {**cfg, "repo": repo, "owner": owner, "name": name, "base": base}


# ---------------------------------------------------------------- GitHub HTTP


class _GitHub:
    """Serial GitHub client with bounded retries inside one time budget; counts requests."""

    def __init__(self, cfg, log):
        self.cfg = cfg
        self.log = log
        self.api_calls = 0
        self.rate_limit_remaining = None
        self.rate_limited_until = None  # epoch second: the rate limit is exhausted until then (beyond the budget)
        self.deadline = time.monotonic() + cfg["budget"]
        self.headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": _USER_AGENT,
        }
        if cfg["token"]:
            self.headers["Authorization"] = f"Bearer {cfg['token']}"

    def _note_rate(self, headers):
        remaining = headers.get("x-ratelimit-remaining")
        if remaining is not None and remaining.strip().isdigit():
            self.rate_limit_remaining = int(remaining)

    @staticmethod
    def _rate_limit_wait(resp, limited=False):
        """(seconds to wait, reset epoch or None) when `resp` is a rate limit, else None. GitHub's rules
        (docs.github.com, "Rate limits for the REST API" / "... for the GraphQL API"): retry-after first; with
        x-ratelimit-remaining 0, until x-ratelimit-reset; otherwise at least a minute. `limited`: the answer
        is known to be a rate limit (GraphQL's RATE_LIMITED error)."""
        retry_after = resp.headers.get("retry-after", "").strip()
        if retry_after.isdigit():
            return float(retry_after), None
        if resp.headers.get("x-ratelimit-remaining", "").strip() == "0":
            reset = resp.headers.get("x-ratelimit-reset", "").strip()
            if reset.isdigit():
                return max(0.0, int(reset) - time.time()) + _RATE_LIMIT_MARGIN, int(reset)
            return 60.0, None
        if limited or resp.status_code == 429 or "rate limit" in resp.text[:2000].lower():
            return 60.0, None
        return None

    @staticmethod
    def _upstream_message(resp):
        try:
            message = resp.json().get("message", "")
        except (ValueError, AttributeError, RecursionError):
            message = resp.text
        return " ".join(str(message).split())[:200]

    def call(self, what, method, url, params=None, json_body=None, check=None):
        """One logical request with retries. Returns (response, parsed JSON). Raises UpstreamError."""
        attempt = 0
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamError(f"{what}: time budget of {self.cfg['budget']:g}s exhausted")
            timeout = min(self.cfg["timeout"], remaining)
            self.api_calls += 1
            try:
                resp = requests.request(method, url, params=params, json=json_body, headers=self.headers,
                                        timeout=(timeout, timeout))
                self._note_rate(resp.headers)
                data = self._classify(what, resp, check)
                return resp, data
            except requests.exceptions.Timeout as exc:
                failure = _Retryable(f"timed out after {timeout:g}s ({type(exc).__name__})")
            except requests.exceptions.ConnectionError as exc:
                host = urlsplit(url).netloc
                offline = _unreachable_reason(exc)
                if offline:  # a retry cannot help: answer at once, naming the host (issue 8)
                    raise UpstreamError(f"{what}: cannot reach {host} ({offline}); check this machine's network "
                                        "and github_api_url") from None
                failure = _Retryable(f"connection to {host} failed")
            except requests.exceptions.RequestException as exc:  # e.g. a body cut short; text may hold the URL
                failure = _Retryable(f"request failed ({type(exc).__name__})")
            except _Retryable as exc:
                failure = exc
            attempt += 1
            if failure.reset is not None and time.monotonic() + (failure.wait or 0.0) >= self.deadline:
                self.rate_limited_until = failure.reset
                when = datetime.fromtimestamp(failure.reset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                raise UpstreamError(f"{what}: {failure.problem}; GitHub's rate limit resets at {when} (in "
                                    f"{max(0, failure.reset - time.time()):.0f}s), after this run's time budget of "
                                    f"{self.cfg['budget']:g}s: collect again after {when}")
            if attempt > self.cfg["max_retries"]:
                raise UpstreamError(f"{what}: {failure.problem}; gave up after {attempt} attempts")
            delay = max(self.cfg["backoff"] * (2 ** (attempt - 1)), failure.wait or 0.0)
            if time.monotonic() + delay >= self.deadline:
                raise UpstreamError(f"{what}: {failure.problem}; a retry in {delay:g}s would exceed the "
                                    f"time budget of {self.cfg['budget']:g}s")
            self.log.warn(f"{what}: {failure.problem}; retry {attempt}/{self.cfg['max_retries']} in {delay:g}s")
            time.sleep(delay)

    def _classify(self, what, resp, check):
        status = resp.status_code
        if status in (403, 429):
            limit = self._rate_limit_wait(resp)
            if limit is not None:
                raise _Retryable(f"rate limited (HTTP {status})", *limit)
        if status >= 500:
            raise _Retryable(f"HTTP {status}")
        if status == 401:
            raise UpstreamError(f"{what}: GitHub rejected the token (HTTP 401: {self._upstream_message(resp)})")
        if status != 200:
            raise UpstreamError(f"{what}: GitHub answered HTTP {status}: {self._upstream_message(resp)}")
        try:
            data = resp.json()
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the decoder's limit
            raise _Retryable("malformed JSON in the answer") from None
        errors = data.get("errors") if isinstance(data, dict) else None
        errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
        if any(e.get("type") == "RATE_LIMITED" for e in errors):
            # GraphQL answers an exhausted limit with HTTP 200 and this error type: the REST rules apply
            raise _Retryable("GraphQL rate limit exhausted (RATE_LIMITED)", *self._rate_limit_wait(resp, True))
        if any("secondary rate limit" in str(e.get("message", "")).lower() for e in errors):
            # a secondary limit may also come as HTTP 200: retry-after, else the reset, else at least a minute
            raise _Retryable("GraphQL secondary rate limit", *self._rate_limit_wait(resp, True))
        if check is not None:
            check(data)
        return data


# ---------------------------------------------------------------- collection


def _parse_ts(text):
    parsed = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _ns(moment):
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def _iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _one_line(text):
    return " ".join(str(text or "").split())


def _known_prs(influxdb3_local, cfg, log):
    """pr_number -> stored row for the repo/ref in the window; one parameterised query. No table: {}."""
    sql = ("SELECT pr_number, lines, author, title, time FROM gh "
           "WHERE repo = $repo AND ref = $ref AND time >= $since")
    try:
        rows = influxdb3_local.query(sql, {"repo": cfg["repo"], "ref": cfg["base"], "since": cfg["since_iso"]})
    except Exception as exc:  # the engine raises a plain Exception; a missing table is the usual cause
        log.info(f"gh not readable yet, treating as empty ({_one_line(exc)[:160]})")
        return {}
    return {str(row.get("pr_number")): row for row in rows or []}


def _recorded_files(influxdb3_local, cfg, log):
    """pr_number -> number of gh_file rows for the repo/ref in the window; one query. No table: {}."""
    sql = ("SELECT pr_number, count(*) AS n FROM gh_file "
           "WHERE repo = $repo AND ref = $ref AND time >= $since GROUP BY pr_number")
    try:
        rows = influxdb3_local.query(sql, {"repo": cfg["repo"], "ref": cfg["base"], "since": cfg["since_iso"]})
    except Exception as exc:  # the engine raises a plain Exception; a missing table is the usual cause
        log.info(f"gh_file not readable yet, treating as empty ({_one_line(exc)[:160]})")
        return {}
    return {str(row.get("pr_number")): int(row.get("n") or 0) for row in rows or []}


def _graphql_check(data):
    errors = data.get("errors") if isinstance(data, dict) else None
    if errors:
        types = {str(err.get("type", "")) for err in errors if isinstance(err, dict)}
        text = "; ".join(_one_line(err.get("message", "")) for err in errors if isinstance(err, dict))[:200]
        if types & _GRAPHQL_FATAL_TYPES:
            raise UpstreamError(f"GitHub GraphQL error: {text}")
        raise _Retryable(f"GraphQL errors: {text}")
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
        raise _Retryable("GraphQL answer without data")


def _file(path, additions, deletions, kind, previous=None):
    """One changed file as written to gh_file: path, additions, deletions, change_type and, for a rename with a
    known previous path, previous_path. `kind` is GraphQL's PatchStatus or REST's status word."""
    row = {"path": str(path), "additions": int(additions or 0), "deletions": int(deletions or 0),
           "change_type": _CHANGE_TYPES.get(str(kind), "changed")}
    if row["change_type"] == "renamed" and previous:
        row["previous_path"] = str(previous)
    return row


def _check_file_count(log, pr, expected):
    """Log when GitHub listed fewer files than the PR changed (it lists at most 3,000)."""
    listed = len(pr["files"])
    short = (listed < expected) if isinstance(expected, int) else (listed >= _MAX_LISTED_FILES)
    if short:
        log.warn(f"PR #{pr['number']} changed {expected if isinstance(expected, int) else 'more'} files; GitHub "
                 f"lists only {listed} (at most {_MAX_LISTED_FILES:,}), so gh_file holds {listed} of them")


def _rate_note(gh, data):
    rate = data.get("rateLimit") or {}
    if isinstance(rate.get("remaining"), int):
        gh.rate_limit_remaining = rate["remaining"]


def _graphql_more_files(gh, cfg, pr, cursor):
    """Follow-up pages of one PR's files (100 each) until GitHub has no more; then the PR is complete."""
    files = []
    for _page in range(_MAX_LISTED_FILES // _PAGE_SIZE + 1):
        variables = {"owner": cfg["owner"], "name": cfg["name"], "number": pr["number"], "cursor": cursor}
        _resp, data = gh.call(f"GraphQL files of #{pr['number']}", "POST", cfg["graphql_url"],
                              json_body={"query": _GRAPHQL_FILES_QUERY, "variables": variables},
                              check=_graphql_check)
        _rate_note(gh, data["data"])
        node = ((data["data"].get("repository") or {}).get("pullRequest")) or {}
        connection = node.get("files") or {}
        files += [_file(f["path"], f.get("additions"), f.get("deletions"), f.get("changeType"))
                  for f in connection.get("nodes") or []]
        info = connection.get("pageInfo") or {}
        if not info.get("hasNextPage") or not info.get("endCursor"):
            return files
        cursor = info["endCursor"]
    return files


def _collect_graphql(gh, cfg, prs):
    """Add merged PRs in the window to `prs` (number -> record), page by page, newest update first; each with
    its files (the first 100 in the same request, further ones from follow-up requests)."""
    cursor = None
    for _page in range(cfg["max_pages"]):
        variables = {"owner": cfg["owner"], "name": cfg["name"], "base": cfg["base"], "cursor": cursor}
        _resp, data = gh.call("GraphQL pullRequests", "POST", cfg["graphql_url"],
                              json_body={"query": _GRAPHQL_QUERY, "variables": variables}, check=_graphql_check)
        body = data["data"]
        _rate_note(gh, body)
        repository = body.get("repository")
        if repository is None:
            raise UpstreamError(f"GitHub GraphQL: repository {cfg['repo']} not found")
        connection = repository["pullRequests"]
        older_seen = False
        pending = []
        for node in connection.get("nodes") or []:
            if _parse_ts(node["updatedAt"]) < cfg["since"]:
                older_seen = True
                continue
            if not node.get("mergedAt") or node.get("baseRefName") != cfg["base"]:
                continue
            merged = _parse_ts(node["mergedAt"])
            if merged < cfg["since"]:
                continue
            files = node.get("files") or {}
            record = {
                "number": int(node["number"]),
                "title": _one_line(node.get("title")),
                "author": ((node.get("author") or {}).get("login")) or "ghost",
                "url": node.get("url") or "",
                "merged": merged,
                "additions": int(node.get("additions") or 0),
                "deletions": int(node.get("deletions") or 0),
                "files": [_file(f["path"], f.get("additions"), f.get("deletions"), f.get("changeType"))
                          for f in files.get("nodes") or []],
                "complete": True,
            }
            info = files.get("pageInfo") or {}
            if info.get("hasNextPage") and info.get("endCursor"):
                record["complete"] = False
                pending.append((record, info["endCursor"], node.get("changedFiles")))
            else:
                _check_file_count(gh.log, record, node.get("changedFiles"))
            prs[str(record["number"])] = record
        for record, files_cursor, expected in pending:
            record["files"] += _graphql_more_files(gh, cfg, record, files_cursor)
            record["complete"] = True
            _check_file_count(gh.log, record, expected)
        info = connection.get("pageInfo") or {}
        if older_seen or not info.get("hasNextPage"):
            return
        cursor = info.get("endCursor")
    gh.log.warn(f"stopped after max_pages={cfg['max_pages']} GraphQL pages")


def _list_rest(gh, cfg):
    """Merged PRs into base in the window, from the closed-PR list (no line counts yet)."""
    url = f"{cfg['api_url']}/repos/{cfg['repo']}/pulls"
    params = {"state": "closed", "base": cfg["base"], "sort": "updated", "direction": "desc",
              "per_page": str(_PAGE_SIZE)}
    found = {}
    for _page in range(cfg["max_pages"]):
        resp, items = gh.call("REST list pulls", "GET", url, params=params)
        if not isinstance(items, list):
            raise UpstreamError("REST list pulls: GitHub answered JSON that is not a list")
        older_seen = False
        for item in items:
            if _parse_ts(item["updated_at"]) < cfg["since"]:
                older_seen = True
                continue
            if not item.get("merged_at") or (item.get("base") or {}).get("ref") != cfg["base"]:
                continue
            merged = _parse_ts(item["merged_at"])
            if merged >= cfg["since"]:
                found[str(item["number"])] = item
        next_url = (resp.links.get("next") or {}).get("url")
        if older_seen or not next_url:
            return found
        url, params = next_url, None
    gh.log.warn(f"stopped after max_pages={cfg['max_pages']} REST list pages")
    return found


def _rest_files(gh, cfg, number):
    """Every file GitHub lists for PR `number`: 100 per request, following Link pagination."""
    url = f"{cfg['api_url']}/repos/{cfg['repo']}/pulls/{number}/files"
    params = {"per_page": str(_PAGE_SIZE)}
    files = []
    for _page in range(_MAX_LISTED_FILES // _PAGE_SIZE + 1):
        resp, items = gh.call(f"REST files of #{number}", "GET", url, params=params)
        if not isinstance(items, list):
            raise UpstreamError(f"REST files of #{number}: GitHub answered JSON that is not a list")
        files += [_file(item["filename"], item.get("additions"), item.get("deletions"), item.get("status"),
                        item.get("previous_filename")) for item in items]
        next_url = (resp.links.get("next") or {}).get("url")
        if not next_url:
            break
        url, params = next_url, None
    return files


def _collect_rest(gh, cfg, known, with_files, prs):
    """List, then for each merged PR not yet recorded one detail GET and its file pages; recorded PRs (a gh row,
    and gh_file rows unless the PR changed no lines) come from the tables."""
    listed = _list_rest(gh, cfg)
    for number, item in sorted(listed.items(), key=lambda kv: int(kv[0])):
        stored = known.get(number)
        if stored is not None and (number in with_files or not int(stored.get("lines") or 0)):
            prs[number] = {
                "number": int(number), "title": stored.get("title") or _one_line(item.get("title")),
                "author": stored.get("author") or "ghost", "url": item.get("html_url") or "",
                "merged": _parse_ts(item["merged_at"]), "lines": int(stored.get("lines") or 0), "known": True,
                "file_count": with_files.get(number, 0),
            }
            continue
        _resp, detail = gh.call(f"REST pull #{number}", "GET", f"{cfg['api_url']}/repos/{cfg['repo']}/pulls/{number}")
        if not isinstance(detail, dict) or "additions" not in detail:
            raise UpstreamError(f"REST pull #{number}: answer lacks additions/deletions")
        record = {
            "number": int(number),
            "title": _one_line(detail.get("title") or item.get("title")),
            "author": ((detail.get("user") or item.get("user") or {}).get("login")) or "ghost",
            "url": detail.get("html_url") or item.get("html_url") or "",
            "merged": _parse_ts(detail.get("merged_at") or item["merged_at"]),
            "additions": int(detail.get("additions") or 0),
            "deletions": int(detail.get("deletions") or 0),
            "files": [],
            "complete": False,
        }
        prs[number] = record
        expected = detail.get("changed_files")
        if not (isinstance(expected, int) and expected == 0):
            record["files"] = _rest_files(gh, cfg, number)
            _check_file_count(gh.log, record, expected)
        record["complete"] = True


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


def _gh_line(cfg, pr):
    line = _CheckedLine("gh")
    line.tag("repo", cfg["repo"])
    line.tag("ref", cfg["base"])
    line.tag("pr_number", str(pr["number"]))
    line.string_field("activity_type", "pr_merge")
    line.int64_field("lines", pr["additions"] + pr["deletions"])
    line.int64_field("additions", pr["additions"])
    line.int64_field("deletions", pr["deletions"])
    line.string_field("author", pr["author"])
    line.string_field("title", pr["title"])
    line.string_field("url", pr["url"])
    line.time_ns(_ns(pr["merged"]))
    return line


def _gh_file_line(cfg, pr, changed):
    line = _CheckedLine("gh_file")
    line.tag("repo", cfg["repo"])
    line.tag("ref", cfg["base"])
    line.tag("pr_number", str(pr["number"]))
    line.tag("path", changed["path"])
    line.int64_field("additions", changed["additions"])
    line.int64_field("deletions", changed["deletions"])
    line.string_field("change_type", changed["change_type"])
    if "previous_path" in changed:
        line.string_field("previous_path", changed["previous_path"])
    line.time_ns(_ns(pr["merged"]))
    return line


def _write_pr(influxdb3_local, cfg, log, pr, in_gh, has_files, skipped):
    """Queue a complete PR's gh_file rows (unless recorded) and its gh row (unless stored). Returns
    (gh rows queued, gh_file rows queued)."""
    files_written = 0
    if not has_files:
        for changed in pr["files"]:
            reason = _write_checked(influxdb3_local, log, _gh_file_line(cfg, pr, changed),
                                    f"PR #{pr['number']} file {changed['path'][:200]!r}")
            if reason is None:
                files_written += 1
            else:
                skipped.append({"table": "gh_file", "pr_number": pr["number"], "path": changed["path"][:200],
                                "reason": reason})
    if in_gh:
        return 0, files_written
    reason = _write_checked(influxdb3_local, log, _gh_line(cfg, pr), f"PR #{pr['number']}")
    if reason is not None:
        skipped.append({"table": "gh", "pr_number": pr["number"], "reason": reason})
        return 0, files_written
    return 1, files_written


def _run(influxdb3_local, cfg, log):
    """Collect one repository (cfg from `_for_target`) and write. Returns (summary dict, error text or None,
    epoch second until which GitHub's rate limit is exhausted or None); complete PRs (line counts and every
    listed file) are written either way."""
    gh = _GitHub(cfg, log)
    known = _known_prs(influxdb3_local, cfg, log)
    with_files = _recorded_files(influxdb3_local, cfg, log)
    prs = {}
    mode = "graphql" if cfg["token"] else "rest"
    error = None
    try:
        if mode == "graphql":
            _collect_graphql(gh, cfg, prs)
        else:
            _collect_rest(gh, cfg, known, with_files, prs)
    except UpstreamError as exc:
        error = log.redact(exc)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        error = f"unexpected answer shape from GitHub ({type(exc).__name__}: {log.redact(_one_line(exc))[:160]})"
    new_count = file_count = 0
    pulls, skipped = [], []
    for pr in sorted(prs.values(), key=lambda p: (p["merged"], p["number"]), reverse=True):
        number = str(pr["number"])
        if pr.get("known"):
            files = pr["file_count"]
        elif pr.get("complete"):
            pr["lines"] = pr["additions"] + pr["deletions"]
            rows, written = _write_pr(influxdb3_local, cfg, log, pr, number in known, number in with_files, skipped)
            new_count += rows
            file_count += written
            files = len(pr["files"])
        else:
            continue  # files incomplete (GitHub failed mid-way): nothing written, collected next run
        pulls.append({"number": pr["number"], "title": pr["title"], "author": pr["author"],
                      "merged_at": _iso(pr["merged"]), "lines": pr["lines"], "files": files})
    summary = {
        "repository": cfg["repo"], "base": cfg["base"], "mode": mode,
        "time_period": cfg["time_period"], "since": cfg["since_iso"],
        "pr_count": len(pulls), "new_count": new_count, "file_count": file_count,
        "api_calls": gh.api_calls, "rate_limit_remaining": gh.rate_limit_remaining,
        "skipped": skipped, "pull_requests": pulls,
    }
    return summary, error, gh.rate_limited_until


def _run_all(influxdb3_local, cfg, log):
    """Collect every target of cfg in turn. Returns [(target cfg, summary, error)]. Once GitHub's rate limit
    is exhausted beyond a repository's budget, the remaining repositories are not asked (same token, same
    limit) and carry that error."""
    results = []
    limited_until = None
    for repo, base in cfg["targets"]:
        target = _for_target(cfg, repo, base)
        if limited_until is not None and time.time() + cfg["budget"] <= limited_until:
            when = datetime.fromtimestamp(limited_until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            summary = {"repository": repo, "base": base, "mode": "graphql" if cfg["token"] else "rest",
                       "time_period": cfg["time_period"], "since": cfg["since_iso"], "pr_count": 0,
                       "new_count": 0, "file_count": 0, "api_calls": 0, "rate_limit_remaining": 0,
                       "skipped": [], "pull_requests": []}
            results.append((target, summary, f"not asked: GitHub's rate limit is exhausted until {when}"))
            continue
        summary, error, until = _run(influxdb3_local, target, log)
        limited_until = until or limited_until
        results.append((target, summary, error))
    return results


# ---------------------------------------------------------------- entry points


def _request_overrides(query_parameters, request_body):
    """Validated request fields (body first, then query string). Raises ConfigError."""
    query = dict(query_parameters or {})
    for key in query:
        if key.lower() in _TOKEN_QUERY_KEYS:
            raise ConfigError(
                f"do not send a token in the query string ({key}): URLs end up in logs. Put it in the JSON "
                "request body field \"github_token\", or better in a token file named by the trigger argument "
                "github_token_file or the GITHUB_TOKEN_FILE setting")
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
    body_token = overrides.pop("github_token", None)
    return overrides, body_token


def _single_response(summary, error, log):
    """Today's response for one repository: (dict, status)."""
    if error:
        message = f"GitHub collection failed: {error}; {summary['new_count']} complete rows kept"
        log.error(message)
        return {"status": "error", "message": message, "new_count": summary["new_count"],
                "file_count": summary["file_count"], "api_calls": summary["api_calls"]}, 502
    message = (f"Wrote {summary['new_count']} PR merge events to database"
               f" ({summary['pr_count']} merged PRs in the window)")
    log.info(f"{message}; {summary['file_count']} file rows; {summary['api_calls']} GitHub requests")
    return {"status": "success", "message": message, **summary}, 200


def _several_response(cfg, results, log):
    """The response for several repositories: totals, and per repository its summary with a status and,
    when it failed, a message. 502 when any repository failed, else 200."""
    repositories, failed = [], []
    for _target, summary, error in results:
        entry = {"status": "error" if error else "success", **summary}
        if error:
            entry["message"] = f"GitHub collection failed: {error}; {summary['new_count']} complete rows kept"
            failed.append(f"{summary['repository']}@{summary['base']}")
            log.error(f"{summary['repository']}@{summary['base']}: {entry['message']}")
        repositories.append(entry)
    totals = {key: sum(r[key] for r in repositories) for key in ("pr_count", "new_count", "file_count",
                                                                  "api_calls")}
    message = (f"Wrote {totals['new_count']} PR merge events to database ({totals['pr_count']} merged PRs in the "
               f"window) from {len(repositories)} repositories")
    if failed:
        message = f"GitHub collection failed for {', '.join(failed)}; {message}"
    log.info(f"{message}; {totals['file_count']} file rows; {totals['api_calls']} GitHub requests")
    body = {"status": "error" if failed else "success", "message": message,
            "mode": "graphql" if cfg["token"] else "rest", "time_period": cfg["time_period"],
            "since": cfg["since_iso"], **totals, "repositories": repositories}
    return body, 502 if failed else 200


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    """Collect merged PRs and their files on demand (trigger `request:github_prs`).

    With the `repos` argument, a request without `repo` collects every configured repository; with `repo`
    (and optionally `base`), that one. Without `repos`, the repository of the request or of `repo`/`base`.

    Args:
        influxdb3_local: the engine's API object (query, write, info/warn/error, cache).
        query_parameters: URL query parameters (repo, base, time_period, since); never a token.
        request_headers: lowercase header names; unused.
        request_body: bytes; optional JSON object with repo, base, time_period, since, github_token.
        args: trigger arguments (see the metadata above), or None.

    Returns:
        (dict, status): 200 with the collection summary, 400 for bad input, 502 when GitHub failed. One
        repository: {status, message, repository, base, mode, time_period, since, pr_count, new_count,
        file_count, api_calls, rate_limit_remaining, skipped, pull_requests}. Several: {status, message, mode,
        time_period, since, pr_count, new_count, file_count, api_calls (totals), repositories: [one such
        summary per repository, with its own status and, when it failed, message]}; 502 when any failed.
    """
    log = _Log(influxdb3_local)
    now = datetime.now(UTC)
    try:
        overrides, body_token = _request_overrides(query_parameters, request_body)
        cfg = _load_config(args, now, "day", log, overrides, body_token)
    except ConfigError as exc:
        message = log.redact(exc)
        log.error(f"bad request: {message}")
        return {"status": "error", "message": message}, 400
    names = ", ".join(f"{repo}@{base}" for repo, base in cfg["targets"])
    log.info(f"collecting PRs merged into {names} since {cfg['since_iso']} "
             f"({'GraphQL, token set' if cfg['token'] else 'REST, no token'})")
    results = _run_all(influxdb3_local, cfg, log)
    if len(results) == 1:
        _target, summary, error = results[0]
        return _single_response(summary, error, log)
    return _several_response(cfg, results, log)


def process_scheduled_call(influxdb3_local, call_time, args=None):
    """Collect merged PRs and their files on a schedule (trigger `every:1h`), for every repository of `repos`
    (or the one of `repo`/`base`); default window one week.

    Args:
        influxdb3_local: the engine's API object.
        call_time: naive local datetime of the scheduled fire time.
        args: trigger arguments (see the metadata above), or None.
    """
    log = _Log(influxdb3_local)
    now = call_time.astimezone(UTC) if isinstance(call_time, datetime) else datetime.now(UTC)
    try:
        cfg = _load_config(args, now, "week", log)
    except ConfigError as exc:
        log.error(f"bad configuration: {log.redact(exc)}")
        return
    for target, summary, error in _run_all(influxdb3_local, cfg, log):
        text = (f"{target['repo']}@{target['base']} since {cfg['since_iso']}: {summary['pr_count']} merged PRs, "
                f"{summary['new_count']} new rows, {summary['file_count']} file rows, {summary['api_calls']} "
                f"GitHub requests ({summary['mode']}), rate limit remaining {summary['rate_limit_remaining']}")
        if error:
            log.error(f"GitHub collection failed: {error}; kept {summary['new_count']} complete rows; {text}")
        else:
            log.info(text)
