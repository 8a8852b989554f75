"""
{
    "plugin_type": ["onwrite", "scheduled", "http"],
    "onwrite_args_config": [
        {"name": "sources", "example": "[{\\"kapa_source\\":\\"Documentation\\",\\"repos\\":[\\"influxdata/docs-v2@master\\"],\\"paths\\":[\\"content/**\\"],\\"exclude\\":[],\\"severity_threshold\\":200}]", "description": "Compact JSON array of the sources of provisioning/freshness.toml, validated and completed by provisioning (kapa_source, repos owner/name@base, paths, exclude, severity_threshold, optional pages {base_url, strip_prefix}). When set, source_name, repo, base and severity_threshold are ignored.", "required": false},
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
        {"name": "sources", "example": "[{\\"kapa_source\\":\\"Documentation\\",\\"repos\\":[\\"influxdata/docs-v2@master\\"],\\"paths\\":[\\"content/**\\"],\\"exclude\\":[],\\"severity_threshold\\":200}]", "description": "Compact JSON array of the sources of provisioning/freshness.toml, validated and completed by provisioning (kapa_source, repos owner/name@base, paths, exclude, severity_threshold, optional pages {base_url, strip_prefix}). When set, source_name, repo, base and severity_threshold are ignored.", "required": false},
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
    ],
    "http_args_config": [
        {"name": "sources", "example": "[{\\"kapa_source\\":\\"Documentation\\",\\"repos\\":[\\"influxdata/docs-v2@master\\"],\\"paths\\":[\\"content/**\\"],\\"exclude\\":[],\\"severity_threshold\\":200}]", "description": "Compact JSON array of the sources of provisioning/freshness.toml, validated and completed by provisioning (kapa_source, repos owner/name@base, paths, exclude, severity_threshold, optional pages {base_url, strip_prefix}). When set, source_name, repo, base and severity_threshold are ignored.", "required": false},
        {"name": "source_name", "example": "Documentation", "description": "Kapa.ai source when sources is not set. Env KAPA_SOURCE_NAME.", "required": false},
        {"name": "repo", "example": "influxdata/docs-v2", "description": "Repository when sources is not set. Env GITHUB_REPO.", "required": false},
        {"name": "base", "example": "master", "description": "Base branch when sources is not set. Env GITHUB_BASE.", "required": false},
        {"name": "severity_threshold", "example": "200", "description": "Warning threshold in lines when sources is not set. Default 100.", "required": false},
        {"name": "project_id", "example": "a1b2c3d4-0000-1111-2222-333344445555", "description": "Kapa.ai project id; restricts kapa_source rows to it. Env KAPA_PROJECT_ID.", "required": false}
    ]
}
"""

# Compares what merged since the last Kapa.ai ingestion of each configured knowledge source with a line
# threshold. A source (provisioning/freshness.toml, passed here as the `sources` argument) names a Kapa source,
# the repositories `owner/name@base` feeding it, and the content paths (globs) that count; without `sources`,
# one source comes from the single-source settings, counting every path. For every source and repository an
# evaluation writes one `integration_status` row, one `stale_page` row per changed page (at the ingestion time,
# so re-evaluations replace them instead of adding rows), and a `documentation_alert` row only when the state
# is new or worse than the alerts already written since that ingestion, so repeated evaluations do not repeat
# alerts. Runs after writes to `gh` (it never writes `gh`
# itself, so it cannot loop), daily, and answers `request:freshness` from the tables alone.
#
# Path globs follow GitHub CODEOWNERS (gitignore-style `**`); see compile_glob. Provisioning loads
# compile_glob from this file to validate freshness.toml, so the rules exist once.

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
_SOURCE_KEYS = ("kapa_source", "repos", "paths", "exclude", "severity_threshold", "pages")
_PAGES_KEYS = ("base_url", "strip_prefix")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KAPA_PAGE_SIZE = 100
_KAPA_MAX_PAGES = 50
_TOP_PAGES = 5
_MAX_PAGE_ROWS = 1000
_USER_AGENT = "aichat-stack-docs-freshness"


class ConfigError(ValueError):
    """A setting is invalid; the evaluation is skipped and the reason logged."""


class UpstreamError(RuntimeError):
    """An outbound request (Kapa fallback or webhook) failed within its retry policy."""


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


# ---------------------------------------------------------------- path globs (written down once)


class GlobError(ValueError):
    """A path glob this stack does not accept. ``problem`` says what is wrong, ``fix`` what to write."""

    def __init__(self, problem, fix):
        super().__init__(f"{problem}; {fix}")
        self.problem = problem
        self.fix = fix


def _segment_regex(segment):
    out = []
    for char in segment:
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(char))
    return "".join(out)


def compile_glob(pattern):
    """Compile one path glob to a regular expression matched against whole repository paths.

    The semantics are GitHub CODEOWNERS' (docs.github.com, "About code owners", "CODEOWNERS syntax"), which
    are gitignore's pattern rules (git-scm.com/docs/gitignore, "PATTERN FORMAT") for files:
    - paths are repository-relative with `/` separators and no leading `/` (as GitHub lists a PR's files);
    - a pattern with no `/` except a trailing one matches at any depth (`*.png`, `README.md`, `docs/`);
      a leading `/`, or a `/` in the middle, anchors it at the repository root (`/README.md`, `content/*.md`);
    - `*` matches any characters but `/`, `?` one character but `/`;
    - `**` is a whole path segment: `**/x` is x at any depth (the root included), `x/**` everything inside
      x, `a/**/b` zero or more directories between a and b;
    - a trailing `/` matches directories only, so it selects everything inside a directory of that name;
    - a pattern whose last segment is a plain name also selects everything inside a directory of that name
      (`content/en` selects content/en/a.md), while `docs/*` selects docs/a.md but not docs/b/c.md.
    Rejected, as CODEOWNERS does not support them: `!` negation (use `exclude`), `[...]` ranges, `\\`
    escapes, a leading `#`; also an empty pattern, spaces at either end, `//`, `.`/`..` segments and `**`
    inside a segment (`a**`).

    Args:
        pattern: the glob text.
    Returns:
        a compiled `re.Pattern`; use `.fullmatch(path)`.
    Raises:
        GlobError: the pattern is not accepted (problem and fix in the message).
    """
    if not isinstance(pattern, str) or not pattern:
        raise GlobError("empty pattern", 'write "**" for every file')
    if pattern != pattern.strip():
        raise GlobError(f"{pattern!r} has spaces at either end", "remove them")
    if pattern.startswith("!"):
        raise GlobError(f"{pattern!r} uses ! negation, which CODEOWNERS-style globs do not support",
                        "list the pattern without ! under exclude")
    if pattern.startswith("#"):
        raise GlobError(f"{pattern!r} starts with #", "remove the #")
    for char, name in (("[", "[...] ranges"), ("]", "[...] ranges"), ("\\", "\\ escapes")):
        if char in pattern:
            raise GlobError(f"{pattern!r} uses {name}, which CODEOWNERS-style globs do not support",
                            "use * or ? or list each path")
    text = pattern
    dir_only = text.endswith("/")
    if dir_only:
        text = text[:-1]
    anchored = text.startswith("/")
    if anchored:
        text = text[1:]
    if not text:
        raise GlobError(f"{pattern!r} names no path", 'write "**" for every file')
    segments = text.split("/")
    for segment in segments:
        if segment == "":
            raise GlobError(f"{pattern!r} has an empty path segment (//)", "write a single /")
        if segment in (".", ".."):
            raise GlobError(f"{pattern!r} has a {segment} segment", "write the path from the repository root")
        if "**" in segment and segment != "**":
            raise GlobError(f"{pattern!r} has ** inside a path segment",
                            "use ** as a whole segment (**/x, x/**, a/**/b) or * within a segment")
    if len(segments) > 1:
        anchored = True
    if not anchored and segments[0] != "**":
        segments = ["**", *segments]
    regex = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            regex.append(".+" if last else "(?:[^/]+/)*")
        else:
            regex.append(_segment_regex(segment) + ("" if last else "/"))
    if dir_only:
        regex.append("/.+")
    elif "*" not in segments[-1] and "?" not in segments[-1]:
        regex.append("(?:/.+)?")
    return re.compile("".join(regex), re.DOTALL)


def path_selected(path, include, exclude):
    """Whether `path` matches one of `include` and none of `exclude` (lists of compile_glob results)."""
    return (any(rx.fullmatch(path) for rx in include)
            and not any(rx.fullmatch(path) for rx in exclude))


def page_for(path, pages):
    """The page a changed file stands for.

    With `pages` ({"base_url": ..., "strip_prefix": ...}), a `.md` or `.html` file under strip_prefix maps to
    base_url + its path without strip_prefix, without the extension, without a final `index`/`_index`, with
    a trailing `/` (content/influxdb3/_index.md -> https://docs.example.com/influxdb3/); any other file, or
    without `pages`, is its repository path.
    """
    if not pages:
        return path
    prefix = pages.get("strip_prefix") or ""
    if not path.startswith(prefix):
        return path
    rest = path[len(prefix):]
    if rest.endswith(".md"):
        rest = rest[:-3]
    elif rest.endswith(".html"):
        rest = rest[:-5]
    else:
        return path
    parts = rest.split("/")
    if parts and parts[-1] in ("index", "_index"):
        parts = parts[:-1]
    rest = "/".join(parts)
    return pages["base_url"].rstrip("/") + "/" + (rest + "/" if rest else "")


# ---------------------------------------------------------------- configuration

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


def _source_problem(index, item, problem):
    name = item.get("kapa_source") if isinstance(item, dict) else None
    where = f"source {name!r}" if isinstance(name, str) and name else f"source #{index + 1}"
    return ConfigError(f"sources argument, {where}: {problem} (provisioning writes this argument from "
                       "freshness.toml; re-run it)")


def _globs(index, item, key, default):
    raw = item.get(key, default)
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise _source_problem(index, item, f"{key} must be a list of strings")
    try:
        return list(raw), [compile_glob(p) for p in raw]
    except GlobError as exc:
        raise _source_problem(index, item, f"{key}: {exc}") from None


def _parse_sources(raw):
    """The `sources` argument (a compact JSON array from provisioning) as validated source dicts:
    {"name", "repos": [(repo, base)], "paths", "exclude" (texts), "include_rx", "exclude_rx", "threshold",
    "pages" (dict or None)}. Raises ConfigError."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"sources argument is not valid JSON ({exc}); re-run provisioning, which writes it "
                          "from freshness.toml") from None
    if not isinstance(data, list) or not data:
        raise ConfigError("sources argument must be a non-empty JSON array; re-run provisioning")
    sources, names = [], set()
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise _source_problem(index, {}, "is not an object")
        unknown = sorted(set(item) - set(_SOURCE_KEYS))
        if unknown:
            raise _source_problem(index, item, f"unknown key {unknown[0]}")
        name = item.get("kapa_source")
        if not isinstance(name, str) or not name.strip():
            raise _source_problem(index, item, "kapa_source must be a non-empty string")
        if name in names:
            raise _source_problem(index, item, "kapa_source is listed twice")
        names.add(name)
        repos = item.get("repos")
        if not isinstance(repos, list) or not repos:
            raise _source_problem(index, item, "repos must be a non-empty list of owner/name@base")
        parsed = []
        for entry in repos:
            target = _split_repo_at_base(entry)
            if target is None:
                raise _source_problem(index, item, f"repos entry {entry!r} is not owner/name@base")
            parsed.append(target)
        paths, include_rx = _globs(index, item, "paths", ["**"])
        exclude, exclude_rx = _globs(index, item, "exclude", [])
        threshold = item.get("severity_threshold", int(_DEFAULTS["severity_threshold"]))
        if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= 10**9:
            raise _source_problem(index, item, "severity_threshold must be an integer from 1 to 1000000000")
        pages = item.get("pages")
        if pages is not None:
            if (not isinstance(pages, dict) or set(pages) - set(_PAGES_KEYS)
                    or not isinstance(pages.get("base_url"), str)
                    or not pages["base_url"].startswith(("http://", "https://"))
                    or not isinstance(pages.get("strip_prefix", ""), str)):
                raise _source_problem(index, item, "pages must be {base_url: http(s) URL, strip_prefix: string}")
        sources.append({"name": name, "repos": parsed, "paths": paths, "exclude": exclude,
                        "include_rx": include_rx, "exclude_rx": exclude_rx, "threshold": threshold,
                        "pages": dict(pages) if pages else None})
    return sources


def _legacy_source(args):
    """The one source of the single-source settings: every path of one repository counts."""
    return {"name": _setting("source_name", args), "repos": [(_setting("repo", args), _setting("base", args))],
            "paths": ["**"], "exclude": [], "include_rx": [compile_glob("**")], "exclude_rx": [],
            "threshold": _number("severity_threshold", _setting("severity_threshold", args), int, 1, 10**9),
            "pages": None}


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
    raw_sources = ((args or {}).get("sources") or "").strip()
    return {
        "sources": _parse_sources(raw_sources) if raw_sources else [_legacy_source(args)],
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


def _with_retries(cfg, log, what, deadline, send, host):
    """Call send() until it returns, retrying _Retryable/timeouts/connection errors with backoff.

    `host` (host[:port], no path: the webhook URL is a secret) names the peer in connection failures. A name
    that does not resolve or an unreachable network raises UpstreamError at once (a retry cannot help);
    refused or reset connections are retried. Raises UpstreamError when the retries or the budget run out."""
    attempt = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UpstreamError(f"{what}: time budget of {cfg['budget']:g}s exhausted")
        try:
            return send(min(cfg["timeout"], remaining))
        except requests.exceptions.Timeout as exc:
            failure = _Retryable(f"timed out ({type(exc).__name__})")
        except requests.exceptions.ConnectionError as exc:
            offline = _unreachable_reason(exc)
            if offline:  # a retry cannot help: fail at once, naming the host (as github_prs does)
                raise UpstreamError(f"{what}: cannot reach {host} ({offline}); check this machine's "
                                    "network and the configured URL") from None
            failure = _Retryable(f"connection to {host} failed")
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


# ---------------------------------------------------------------- the evaluation


def _new_run():
    """State shared by the sources of one call: the Kapa API listing and the kapa_source names, each read
    at most once, and the source names Kapa does not list (warned about once)."""
    return {"kapa_listing": None, "kapa_listing_done": False, "known_names": None, "unknown": []}


def _table_ingestion(influxdb3_local, cfg, log, name):
    """The latest ingested_at of source `name` in kapa_source, as int ns, or None."""
    sql = ("SELECT time FROM kapa_source WHERE source_name = $source_name AND event_type = 'ingested_at'"
           + (" AND project_id = $project_id" if cfg["project_id"] else "")
           + " ORDER BY time DESC LIMIT 1")
    params = {"source_name": name}
    if cfg["project_id"]:
        params["project_id"] = cfg["project_id"]
    rows = _query(influxdb3_local, log, sql, params)
    if rows and rows[0].get("time") is not None:
        return int(rows[0]["time"])
    return None


def _known_names(influxdb3_local, cfg, log, run):
    """Source names kapa_source holds (any event), read once per run."""
    if run["known_names"] is None:
        sql = "SELECT DISTINCT source_name FROM kapa_source"
        params = None
        if cfg["project_id"]:
            sql += " WHERE project_id = $project_id"
            params = {"project_id": cfg["project_id"]}
        rows = _query(influxdb3_local, log, sql, params)
        run["known_names"] = sorted({str(r["source_name"]) for r in rows if r.get("source_name")})
    return run["known_names"]


def _latest_ingestion(influxdb3_local, cfg, log, name, run):
    """(ns or None, origin, listed) for source `name`: kapa_source first, the Kapa API only when it has none.

    listed is False when Kapa demonstrably does not list the name (the API listing lacks it, or kapa_source
    holds other sources of the project but never this one), else True or None (unknown)."""
    found = _table_ingestion(influxdb3_local, cfg, log, name)
    if found is not None:
        return found, "kapa_source", True
    listing = None
    if cfg["project_id"] and cfg["kapa_token"]:
        if not run["kapa_listing_done"]:
            run["kapa_listing_done"] = True
            try:
                run["kapa_listing"] = _kapa_listing(cfg, log)
            except UpstreamError as exc:
                log.warn(f"Kapa API fallback failed: {exc}")
        listing = run["kapa_listing"]
    if listing is not None:
        for source in listing:
            if source.get("name") == name:
                moment = _parse_ts(source.get("ingested_at"))
                return (_ns(moment) if moment else None), "kapa_api", True
        return None, "none", False
    known = _known_names(influxdb3_local, cfg, log, run)
    if known and name not in known:
        return None, "none", False
    return None, "none", None


def _kapa_listing(cfg, log):
    """Every source of the project from the Kapa API (page by page), as a list of dicts."""
    url = f"{cfg['kapa_api_url']}/ingestion/v1/projects/{cfg['project_id']}/sources/"
    headers = {"X-API-KEY": cfg["kapa_token"], "Accept": "application/json", "User-Agent": _USER_AGENT}
    deadline = time.monotonic() + cfg["budget"]
    found = []
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
            except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the decoder's limit
                raise _Retryable("malformed JSON") from None

        data = _with_retries(cfg, log, f"Kapa sources page {page}", deadline, send, _host(url))
        results = data.get("results") if isinstance(data, dict) else None
        if not results:
            break
        found.extend(s for s in results if isinstance(s, dict))
        if isinstance(data.get("count"), int) and len(found) >= data["count"]:
            break
    return found


def _alert_rank_since(influxdb3_local, log, repo, name, since_iso):
    sql = ("SELECT severity FROM documentation_alert "
           "WHERE repo = $repo AND source_name = $source_name AND time >= $since")
    rows = _query(influxdb3_local, log, sql, {"repo": repo, "source_name": name, "since": since_iso})
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
        _with_retries(cfg, log, "webhook", time.monotonic() + cfg["budget"], send, _host(cfg["notify_url"]))
    except UpstreamError as exc:
        log.error(f"alert notification failed (the alert row is kept): {exc}")
        return False
    log.info("alert notification sent")
    return True


def _int(value):
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _pr_sort_key(number):
    return (0, int(number), "") if str(number).isdigit() else (1, 0, str(number))


def _changes(influxdb3_local, log, source, repo, base, since_iso):
    """What merged into repo@base after `since_iso` and matters to `source`.

    A PR counts with the files of it (gh_file) that match the source's paths and none of its exclude; a
    renamed file matches by its new or its previous path. A PR with no gh_file rows at all (collected before
    gh_file existed) counts whole, with gh.lines, as before this table existed.

    Returns:
        {"prs": set of pr_number text, "lines": int, "files": set of paths, "unlisted_prs": int,
         "pages": {page: {"lines": int, "prs": set, "last_ns": int}}}
    """
    params = {"repo": repo, "ref": base, "since": since_iso}
    prs = _query(influxdb3_local, log,
                 "SELECT pr_number, lines, time FROM gh WHERE repo = $repo AND ref = $ref "
                 "AND activity_type = 'pr_merge' AND time > $since", params)
    files = _query(influxdb3_local, log,
                   # *: previous_path exists only once some rename was written (or the table was created)
                   "SELECT * FROM gh_file WHERE repo = $repo AND ref = $ref AND time > $since",
                   params) if prs else []
    by_pr = {}
    for row in files:
        by_pr.setdefault(str(row.get("pr_number")), []).append(row)
    out = {"prs": set(), "lines": 0, "files": set(), "unlisted_prs": 0, "pages": {}}
    for pr in prs:
        number = str(pr.get("pr_number"))
        pr_files = by_pr.get(number)
        if not pr_files:
            out["unlisted_prs"] += 1
            out["prs"].add(number)
            out["lines"] += _int(pr.get("lines"))
            continue
        for row in pr_files:
            path = str(row.get("path") or "")
            previous = row.get("previous_path")
            candidates = [path] + ([str(previous)] if previous and str(previous) != path else [])
            matched = [p for p in candidates if p and path_selected(p, source["include_rx"], source["exclude_rx"])]
            if not matched:
                continue
            lines = _int(row.get("additions")) + _int(row.get("deletions"))
            merged_ns = _int(row.get("time"))
            out["prs"].add(number)
            out["lines"] += lines
            out["files"].add(path)
            for page in dict.fromkeys(page_for(p, source["pages"]) for p in matched):
                entry = out["pages"].setdefault(page, {"lines": 0, "prs": set(), "last_ns": 0})
                entry["lines"] += lines
                entry["prs"].add(number)
                entry["last_ns"] = max(entry["last_ns"], merged_ns)
    return out


def _ranked_pages(pages):
    """[(page, info)] most lines first, then by page."""
    return sorted(pages.items(), key=lambda item: (-item[1]["lines"], item[0]))


def _pages_text(changes):
    ranked = _ranked_pages(changes["pages"])
    parts = []
    if ranked:
        shown = ", ".join(f"{page} ({info['lines']} lines)" for page, info in ranked[:_TOP_PAGES])
        more = len(ranked) - _TOP_PAGES
        parts.append(f"most changed: {shown}" + (f" and {more} more" if more > 0 else ""))
    if changes["unlisted_prs"]:
        parts.append(f"{changes['unlisted_prs']} PRs without a file list counted whole")
    return "; ".join(parts)


def _write_status(influxdb3_local, log, source, repo, now_ns, fields, status):
    """Queue one integration_status row; returns None, or why it could not be stored (then it is skipped)."""
    line = _CheckedLine("integration_status")
    line.tag("repo", repo)
    line.tag("source_name", source["name"])
    for key, value in fields.items():
        line.int64_field(key, value)
    line.int64_field("severity_threshold", source["threshold"])
    line.string_field("status", status)
    line.time_ns(now_ns)
    return _write_checked(influxdb3_local, log, line, f"source {source['name']!r}, repo {repo}")


def _write_pages(influxdb3_local, log, source, repo, ingestion_ns, now_ns, changes):
    """Queue one stale_page row per changed page (the _MAX_PAGE_ROWS most changed).

    time = the ingestion the changes are counted from, not the evaluation time: every evaluation within one
    ingestion window rewrites the same series and time, and a write with the same series key and time replaces
    the row, so the table grows per ingestion and changed page, never per evaluation (issue 11 follow-up).
    Within a window the set of changed pages only grows and a page's counts only rise, so the rows of the
    latest evaluation are exact; `evaluated_at` (RFC 3339 with nanoseconds, equal to the time of this
    evaluation's integration_status row) tells them apart from pages an earlier evaluation of the window wrote
    that this one no longer lists (a changed `paths`, the 1,000 cut): readers such as the Grafana "Stale
    pages" panel join it with the latest integration_status time per repository. Older windows stay as
    history at their own ingestion time."""
    ranked = _ranked_pages(changes["pages"])
    if len(ranked) > _MAX_PAGE_ROWS:
        log.info(f"{source['name']} vs {repo}: {len(ranked)} changed pages; stale_page keeps the "
                 f"{_MAX_PAGE_ROWS} most changed")
    evaluated_at = _ns_to_iso(now_ns)
    for page, info in ranked[:_MAX_PAGE_ROWS]:
        line = _CheckedLine("stale_page")
        line.tag("source_name", source["name"])
        line.tag("repo", repo)
        line.tag("page", page)
        line.int64_field("lines_changed", info["lines"])
        line.int64_field("pr_count", len(info["prs"]))
        line.string_field("pr_numbers", " ".join(sorted(info["prs"], key=_pr_sort_key)))
        line.string_field("last_merged_at", _ns_to_iso(info["last_ns"])[:19] + "Z")
        line.string_field("evaluated_at", evaluated_at)
        line.time_ns(ingestion_ns)
        _write_checked(influxdb3_local, log, line, f"source {source['name']!r}, repo {repo}, page {page!r}")


def _evaluate_repo(influxdb3_local, cfg, log, source, repo, base, ingestion_ns, now_ns):
    """One source and repository: status row, stale_page rows, and an alert when new or worse."""
    since_iso = _ns_to_iso(ingestion_ns)
    changes = _changes(influxdb3_local, log, source, repo, base, since_iso)
    age_days = max(0.0, (now_ns - ingestion_ns) / 86_400e9)
    pr_count, total_lines = len(changes["prs"]), changes["lines"]
    needs_update = 1 if total_lines > 0 or changes["files"] else 0
    skipped = _write_status(influxdb3_local, log, source, repo, now_ns, {
        "days_since_ingestion": int(age_days), "prs_since_ingestion": pr_count,
        "lines_since_ingestion": total_lines, "files_changed": len(changes["files"]),
        "pages_changed": len(changes["pages"]), "needs_update": needs_update}, "ok")
    result = {"source": source["name"], "repo": repo, "base": base, "ingestion": since_iso,
              "pr_count": pr_count, "total_lines": total_lines, "files_changed": len(changes["files"]),
              "pages_changed": len(changes["pages"]), "needs_update": needs_update, "alert": None,
              "skipped": [] if skipped is None else [{"table": "integration_status", "reason": skipped}]}
    log.info(f"{source['name']} vs {repo}@{base}: {pr_count} PRs, {total_lines} lines, "
             f"{len(changes['files'])} files, {len(changes['pages'])} pages since ingestion at {since_iso}")
    if not needs_update:
        return result
    _write_pages(influxdb3_local, log, source, repo, ingestion_ns, now_ns, changes)
    severity = "warning" if total_lines >= source["threshold"] else "info"
    if _SEVERITY_RANK[severity] <= _alert_rank_since(influxdb3_local, log, repo, source["name"], since_iso):
        log.info(f"{severity} alert for {source['name']} vs {repo} already raised since this ingestion; "
                 "not repeating it")
        return result
    message = (f"{source['name']} needs update: {pr_count} PRs with {total_lines} lines changed "
               f"in the last {age_days:.1f} days")
    detail = _pages_text(changes)
    if changes["files"]:
        message += f" ({len(changes['files'])} files, {len(changes['pages'])} pages)"
    if detail:
        message += f"; {detail}"
    alert = _CheckedLine("documentation_alert")
    alert.tag("repo", repo)
    alert.tag("source_name", source["name"])
    alert.tag("severity", severity)
    alert.string_field("message", message)
    alert.int64_field("lines_changed", total_lines)
    alert.int64_field("days_since_ingestion", int(age_days))
    alert.time_ns(now_ns)
    skipped = _write_checked(influxdb3_local, log, alert, f"source {source['name']!r}, repo {repo}")
    if skipped is not None:  # not stored: no notification either, it could not be deduplicated
        result["skipped"].append({"table": "documentation_alert", "reason": skipped})
        return result
    result["alert"] = severity
    log.info(f"raised {severity} alert: {message}")
    if cfg["notify_url"]:
        _notify(cfg, log, f"[{severity}] {message} ({repo}@{base})")
    return result


def _evaluate(influxdb3_local, cfg, log, now, only=None):
    """Evaluate every configured source (or, with `only`, the (repo, base) pairs in it). Returns a list of
    per-repository result dicts."""
    now_ns = _ns(now)
    run = _new_run()
    results = []
    for source in cfg["sources"]:
        repos = [(r, b) for r, b in source["repos"] if only is None or (r, b) in only]
        if not repos:
            continue
        ingestion_ns, origin, listed = _latest_ingestion(influxdb3_local, cfg, log, source["name"], run)
        if listed is False:
            run["unknown"].append(source["name"])
            for repo, _base in repos:
                _write_status(influxdb3_local, log, source, repo, now_ns, {"needs_update": 0}, "unknown_source")
            continue
        if ingestion_ns is None:
            log.warn(f"no ingestion time known for source {source['name']!r}; nothing to compare "
                     "(collect kapa_sources first, or set project_id and a Kapa key)")
            continue
        log.info(f"{source['name']}: last ingestion {_ns_to_iso(ingestion_ns)} (from {origin})")
        for repo, base in repos:
            results.append(_evaluate_repo(influxdb3_local, cfg, log, source, repo, base, ingestion_ns, now_ns))
    if run["unknown"]:
        known = run["kapa_listing"] and [s.get("name") for s in run["kapa_listing"]] or run["known_names"] or []
        log.warn(f"Kapa lists no source named {', '.join(repr(n) for n in run['unknown'])} (known: "
                 f"{', '.join(str(n) for n in known) or 'none'}); fix kapa_source in freshness.toml "
                 "(names are exact); their integration_status rows say status=unknown_source")
    return results


def _relevant(table_batches, cfg):
    """The (repo, base) pairs of configured sources that the gh rows of `table_batches` touch."""
    wanted = {pair for source in cfg["sources"] for pair in source["repos"]}
    hit = set()
    for batch in table_batches or []:
        if not isinstance(batch, dict) or batch.get("table_name") != "gh":
            continue
        for row in batch.get("rows") or []:
            if row.get("activity_type") not in (None, "pr_merge"):
                continue
            for repo, base in wanted:
                if row.get("repo") == repo and row.get("ref") in (None, base):
                    hit.add((repo, base))
    return hit


def _configured(influxdb3_local, args):
    log = _Log(influxdb3_local)
    try:
        cfg = _load_config(args, log)
    except ConfigError as exc:
        log.error(f"bad configuration: {log.redact(exc)}")
        return log, None
    return log, cfg


# ---------------------------------------------------------------- request:freshness


_TOKEN_QUERY_KEYS = ("github_token", "kapa_token", "token", "access_token", "api_key")


def _request_source(query_parameters, request_body):
    """The optional `source` of a request (JSON body first, then the query string). Raises ConfigError."""
    for key in query_parameters or {}:
        if str(key).lower() in _TOKEN_QUERY_KEYS:
            raise ConfigError(f"do not send a token in the query string ({key}): URLs end up in logs; this "
                              "endpoint needs none beyond the server's Authorization header")
    raw = request_body or b""
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("request body is not UTF-8 JSON") from None
    body = {}
    if raw.strip():
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"request body is not valid JSON: {exc.msg} at line {exc.lineno} "
                              f"column {exc.colno}") from None
        except RecursionError:  # the C decoder's answer to deep nesting, on 3.11 and 3.13
            raise ConfigError("request body is not valid JSON: nested too deeply") from None
        if not isinstance(body, dict):
            raise ConfigError("request body must be a JSON object")
    value = body.get("source")
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"field 'source' must be a string, got {type(value).__name__}")
    if value is None or not value.strip():
        value = (query_parameters or {}).get("source")
    return value if value else None


def _source_report(influxdb3_local, cfg, log, source, now_ns):
    """One source's JSON for request:freshness, from the tables only."""
    ingestion_ns = _table_ingestion(influxdb3_local, cfg, log, source["name"])
    report = {"source": source["name"], "repos": [f"{r}@{b}" for r, b in source["repos"]],
              "last_ingestion": None, "days_since_ingestion": None, "pr_count": 0, "lines": 0, "files": 0,
              "pages_changed": 0, "severity_threshold": source["threshold"], "pages": []}
    if ingestion_ns is None:
        report["note"] = "kapa_source holds no ingestion of this source (collect kapa_sources first)"
        return report
    since_iso = _ns_to_iso(ingestion_ns)
    report["last_ingestion"] = since_iso[:19] + "Z"
    report["days_since_ingestion"] = round(max(0.0, (now_ns - ingestion_ns) / 86_400e9), 2)
    pages = {}
    unlisted = 0
    for repo, base in source["repos"]:
        changes = _changes(influxdb3_local, log, source, repo, base, since_iso)
        report["pr_count"] += len(changes["prs"])
        report["lines"] += changes["lines"]
        report["files"] += len(changes["files"])
        unlisted += changes["unlisted_prs"]
        for page, info in changes["pages"].items():
            pages[(page, repo)] = info
    ranked = sorted(pages.items(), key=lambda item: (-item[1]["lines"], item[0][0], item[0][1]))
    report["pages_changed"] = len(ranked)
    report["pages"] = [
        {"page": page, "repo": repo, "lines": info["lines"],
         "prs": [int(n) if n.isdigit() else n for n in sorted(info["prs"], key=_pr_sort_key)],
         "last_merged_at": _ns_to_iso(info["last_ns"])[:19] + "Z"}
        for (page, repo), info in ranked]
    if unlisted:
        report["note"] = f"{unlisted} PRs have no file list (collected before gh_file) and count whole"
    return report


# ---------------------------------------------------------------- entry points


def process_writes(influxdb3_local, table_batches, args=None):
    """Evaluate after writes to gh (trigger `table:gh`); only sources whose repositories the new gh rows
    belong to are evaluated, and batches without such rows are ignored.

    Args:
        influxdb3_local: the engine's API object.
        table_batches: [{"table_name": str, "rows": [dict, ...]}]; rows hold only present columns.
        args: trigger arguments (see the metadata above), or None.
    """
    log, cfg = _configured(influxdb3_local, args)
    if cfg is None:
        return
    hit = _relevant(table_batches, cfg)
    if not hit:
        pairs = sorted({f"{r}@{b}" for s in cfg["sources"] for r, b in s["repos"]})
        log.info(f"no new gh rows for {', '.join(pairs)}; skipped")
        return
    _evaluate(influxdb3_local, cfg, log, datetime.now(UTC), hit)


def process_scheduled_call(influxdb3_local, call_time, args=None):
    """Evaluate every source daily (trigger `cron:0 0 8 * * *`).

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


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    """Which pages changed since each source's last ingestion (trigger `request:freshness`, GET or POST).

    Reads kapa_source, gh and gh_file with $parameters only; never calls GitHub or Kapa and writes nothing.

    Args:
        influxdb3_local: the engine's API object.
        query_parameters: optional `source` (a kapa_source name of the configuration).
        request_headers: unused.
        request_body: bytes; optional JSON object {"source": "..."} (wins over the query string).
        args: trigger arguments (see the metadata above), or None.

    Returns:
        (dict, status): 200 {"status": "success", "evaluated_at", "sources": [{"source", "repos",
        "last_ingestion", "days_since_ingestion", "pr_count", "lines", "files", "pages_changed",
        "severity_threshold", "pages": [{"page", "repo", "lines", "prs", "last_merged_at"}], "note"?}]},
        pages sorted by lines, most first; 400 for a bad body or configuration; 404 for an unknown source.
    """
    log = _Log(influxdb3_local)
    try:
        wanted = _request_source(query_parameters, request_body)
    except ConfigError as exc:
        log.error(f"bad request: {exc}")
        return {"status": "error", "message": str(exc)}, 400
    try:
        cfg = _load_config(args, log)
    except ConfigError as exc:
        message = f"bad configuration: {log.redact(exc)}"
        log.error(message)
        return {"status": "error", "message": message}, 400
    sources = cfg["sources"]
    if wanted is not None:
        sources = [s for s in sources if s["name"] == wanted]
        if not sources:
            known = ", ".join(repr(s["name"]) for s in cfg["sources"])
            message = f"unknown source {wanted!r}; known sources: {known}"
            log.warn(message)
            return {"status": "error", "message": message}, 404
    now = datetime.now(UTC)
    reports = [_source_report(influxdb3_local, cfg, log, source, _ns(now)) for source in sources]
    log.info("freshness: " + ", ".join(f"{r['source']} {r['lines']} lines, {r['pages_changed']} pages"
                                        for r in reports))
    return {"status": "success", "evaluated_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "sources": reports}, 200
