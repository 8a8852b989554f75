"""``freshness.toml``: which Kapa source is compared with which repositories and content paths.

Read and validated once here; the plugins get plain, already-valid trigger arguments:

- ``repos`` (github_prs.py triggers): every repository of the file as ``owner/name@base``, whitespace-separated,
  in file order without repeats;
- ``sources`` (docs_freshness.py triggers): one compact JSON array of the sources, each with every key filled
  in (``paths`` default ``["**"]``, ``exclude`` default ``[]``, ``severity_threshold`` default
  ``SEVERITY_THRESHOLD`` or 200, ``pages`` only when given, ``base_url`` ending in ``/``).

One JSON argument rather than one trigger per source: the daily run and ``request:freshness`` need every source
at once, and the trigger list stays fixed whatever the file holds. triggers.toml refers to the two values as
``${FRESHNESS_REPOS-}`` and ``${FRESHNESS_SOURCES-}``; provisioning always sets them itself ("" without the
file, so those arguments are left out and the single-source settings apply as before).

Path globs are checked by ``compile_glob`` loaded from ``plugins/docs_freshness.py``: the rules live in the
plugin (which must stay a self-contained file the server loads alone) and exist only there.

File shape::

    [[source]]
    kapa_source = "Documentation"            # Kapa source name, exact
    repos = ["influxdata/docs-v2@master"]     # owner/name@base, one or more
    paths = ["content/**", "data/**"]        # globs on repository paths; default ["**"]
    exclude = ["**/*.png"]                   # optional
    severity_threshold = 200                 # lines; default SEVERITY_THRESHOLD
    [source.pages]                           # optional
    base_url = "https://docs.influxdata.com/"
    strip_prefix = "content/"
"""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioning.errors import ConfigError

SOURCE_KEYS = ("kapa_source", "repos", "paths", "exclude", "severity_threshold", "pages")
PAGES_KEYS = ("base_url", "strip_prefix")
DEFAULT_SEVERITY_THRESHOLD = 200
MAX_SEVERITY_THRESHOLD = 10**9
# owner and name as GitHub allows them; the base branch as git allows a branch name (git-check-ref-format(1)),
# at most 255 characters: the same entries as _split_repo_at_base of plugins/github_prs.py and
# plugins/docs_freshness.py accept (tests/unit/test_repo_at_base.py checks the three agree).
_REPO_AT = re.compile(r"^([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)@(.+)\Z", re.S)
_BAD_BRANCH = re.compile(r"[\s\x00-\x1f\x7f~^:?*\[\\]|\.\.|@\{|//|^[/.-]|/\.|\.lock(?:/|$)|[/.]$|^@$")
_MAX_BRANCH = 255
_PLUGIN_FILE = "docs_freshness.py"


class FreshnessConfigError(ConfigError):
    """freshness.toml cannot work; one line naming the file, the source and the fix."""

    def __init__(self, path: Path, where: str | None, problem: str, fix: str):
        self.path = path
        self.where = where
        self.problem = problem
        self.fix = fix
        super().__init__(f"{path}: {where + ': ' if where else ''}{problem}; {fix}")


@dataclass(frozen=True)
class FreshnessConfig:
    """The validated file: sources as the plugin receives them."""

    path: Path
    sources: tuple[dict[str, Any], ...]

    @property
    def repos(self) -> list[str]:
        """Every ``owner/name@base`` of the file, in file order, without repeats."""
        return list(dict.fromkeys(r for s in self.sources for r in s["repos"]))

    def trigger_values(self) -> dict[str, str]:
        """``FRESHNESS_REPOS`` and ``FRESHNESS_SOURCES``, the values triggers.toml refers to."""
        return {
            "FRESHNESS_REPOS": " ".join(self.repos),
            "FRESHNESS_SOURCES": json.dumps(list(self.sources), separators=(",", ":")),
        }


#: the values triggers.toml refers to when there is no freshness.toml (arguments left out)
NO_FILE_VALUES = {"FRESHNESS_REPOS": "", "FRESHNESS_SOURCES": ""}


def load_glob_compiler(plugin_dir: Path) -> Callable[[str], Any]:
    """``compile_glob`` of ``plugin_dir/docs_freshness.py``, loaded from the file (never copied).

    Raises ConfigError when the file is missing or does not define it.
    """
    path = Path(plugin_dir) / _PLUGIN_FILE
    if not path.is_file():
        raise ConfigError(
            f"{path} not found: provisioning checks freshness.toml's globs with the plugin's own matcher; "
            "set PROVISION_PLUGIN_DIR to the plugins/ directory"
        )
    spec = importlib.util.spec_from_file_location("_aichat_docs_freshness_globs", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a broken plugin file: say so in one line, whatever it raised
        raise ConfigError(f"{path} does not load ({type(exc).__name__}: {exc})") from None
    compiler = getattr(module, "compile_glob", None)
    glob_error = getattr(module, "GlobError", None)
    if not callable(compiler) or glob_error is None:
        raise ConfigError(f"{path} defines no compile_glob/GlobError; use the plugins/ of this stack")
    return compiler


def _severity_default(env: Mapping[str, str], path: Path) -> int:
    raw = (env.get("SEVERITY_THRESHOLD") or "").strip()
    if not raw:
        return DEFAULT_SEVERITY_THRESHOLD
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_SEVERITY_THRESHOLD:
        raise FreshnessConfigError(path, None, f"SEVERITY_THRESHOLD {raw!r} (the default severity_threshold) is "
                                   "not a whole number from 1 to 1000000000", "fix it in .env")
    return value


def _string_list(path: Path, where: str, key: str, raw: Any) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise FreshnessConfigError(path, where, f"{key} is not a list of strings", f'write {key} = ["..."]')
    return list(raw)


def _parse_source(path: Path, index: int, raw: Any, compile_glob: Callable[[str], Any],
                  default_threshold: int) -> dict[str, Any]:
    where = f"[[source]] #{index + 1}"
    if not isinstance(raw, dict):
        raise FreshnessConfigError(path, where, "is not a table", "write [[source]] followed by its keys")
    name = raw.get("kapa_source")
    if isinstance(name, str) and name.strip():
        where = f"source {name!r}"
    unknown = sorted(set(raw) - set(SOURCE_KEYS))
    if unknown:
        raise FreshnessConfigError(path, where, f"unknown key {unknown[0]!r}",
                                   f"use only {', '.join(SOURCE_KEYS)}")
    if not isinstance(name, str) or not name.strip():
        raise FreshnessConfigError(path, where, "kapa_source is missing or empty",
                                   'add kapa_source = "<the Kapa source name, exact>"')
    if name != name.strip() or any(ord(c) < 32 for c in name):
        raise FreshnessConfigError(path, where, "kapa_source has spaces at either end or control characters",
                                   "write the name exactly as Kapa shows it")
    repos = raw.get("repos")
    if repos is None:
        raise FreshnessConfigError(path, where, "repos is missing", 'add repos = ["owner/name@base"]')
    repos = _string_list(path, where, "repos", repos)
    if not repos:
        raise FreshnessConfigError(path, where, "repos is empty", 'list at least one "owner/name@base"')
    seen: dict[str, str] = {}
    for entry in repos:
        match = _REPO_AT.match(entry)
        if not match or len(match.group(3)) > _MAX_BRANCH or _BAD_BRANCH.search(match.group(3)):
            raise FreshnessConfigError(path, where, f"repository {entry!r} is not in owner/name@base form",
                                       'write e.g. "influxdata/docs-v2@master"')
        full = f"{match.group(1)}/{match.group(2)}"
        if full in seen:
            raise FreshnessConfigError(path, where, f"repository {full} is listed twice ({seen[full]}, {entry})",
                                       "list each repository once per source")
        seen[full] = entry
    globs: dict[str, list[str]] = {}
    for key, default in (("paths", ["**"]), ("exclude", [])):
        values = _string_list(path, where, key, raw.get(key, default))
        if key == "paths" and not values:
            raise FreshnessConfigError(path, where, "paths is empty, so nothing would count",
                                       'leave paths out (every file) or list globs such as "content/**"')
        for pattern in values:
            try:
                compile_glob(pattern)
            except ValueError as exc:  # the plugin's GlobError is a ValueError with .problem and .fix
                problem = getattr(exc, "problem", str(exc))
                fix = getattr(exc, "fix", "see README, freshness.toml globs")
                raise FreshnessConfigError(path, where, f"{key} glob {pattern!r} is not accepted: {problem}",
                                           fix) from None
        globs[key] = values
    threshold = raw.get("severity_threshold", default_threshold)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= MAX_SEVERITY_THRESHOLD:
        raise FreshnessConfigError(path, where, f"severity_threshold {threshold!r} is not a whole number of lines "
                                   "from 1 to 1000000000", "write e.g. severity_threshold = 200")
    source: dict[str, Any] = {"kapa_source": name, "repos": repos, "paths": globs["paths"],
                              "exclude": globs["exclude"], "severity_threshold": threshold}
    pages = raw.get("pages")
    if pages is not None:
        if not isinstance(pages, dict):
            raise FreshnessConfigError(path, where, "pages is not a table", "write [source.pages] with base_url")
        unknown = sorted(set(pages) - set(PAGES_KEYS))
        if unknown:
            raise FreshnessConfigError(path, where, f"unknown key {unknown[0]!r} in [source.pages]",
                                       f"use only {', '.join(PAGES_KEYS)}")
        base_url = pages.get("base_url")
        if not isinstance(base_url, str) or not re.match(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", base_url):
            raise FreshnessConfigError(path, where, f"pages.base_url {base_url!r} is not an http(s) URL",
                                       'write base_url = "https://docs.example.com/"')
        strip_prefix = pages.get("strip_prefix", "")
        if not isinstance(strip_prefix, str) or strip_prefix.startswith("/"):
            raise FreshnessConfigError(path, where, f"pages.strip_prefix {strip_prefix!r} is not a repository path",
                                       'write e.g. strip_prefix = "content/" (no leading /)')
        source["pages"] = {"base_url": base_url if base_url.endswith("/") else base_url + "/",
                           "strip_prefix": strip_prefix}
    return source


def load_freshness(path: Path, env: Mapping[str, str], plugin_dir: Path) -> FreshnessConfig | None:
    """Read and validate ``path``; None when it does not exist (the single-source settings apply).

    Raises FreshnessConfigError (one line: file, source, problem, fix) at the first problem, or ConfigError
    when the plugin holding the glob rules cannot be loaded.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FreshnessConfigError(path, None, f"cannot be read ({exc.strerror or type(exc).__name__})",
                                   "fix its permissions or set PROVISION_FRESHNESS_FILE") from None
    except UnicodeDecodeError as exc:
        raise FreshnessConfigError(path, None, f"is not UTF-8 text (byte {exc.start})", "save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise FreshnessConfigError(path, None, f"is not valid TOML ({exc})", "fix the syntax") from None
    unknown = sorted(set(data) - {"source"})
    if unknown:
        raise FreshnessConfigError(path, None, f"unknown key {unknown[0]!r}",
                                   "declare sources as [[source]] tables, nothing else at the top level")
    raw_sources = data.get("source")
    if not isinstance(raw_sources, list) or not raw_sources:
        raise FreshnessConfigError(path, None, "declares no [[source]]",
                                   "add one [[source]] per Kapa source, or delete the file to use the settings")
    default_threshold = _severity_default(env, path)
    compile_glob = load_glob_compiler(plugin_dir)
    sources: list[dict[str, Any]] = []
    first_index: dict[str, int] = {}
    for index, raw in enumerate(raw_sources):
        source = _parse_source(path, index, raw, compile_glob, default_threshold)
        name = source["kapa_source"]
        if name in first_index:
            raise FreshnessConfigError(
                path, f"source {name!r}",
                f"is declared twice ([[source]] #{first_index[name] + 1} and #{index + 1})",
                "merge them into one [[source]] (list both repositories under repos)")
        first_index[name] = index
        sources.append(source)
    return FreshnessConfig(path, tuple(sources))
