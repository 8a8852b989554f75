"""provisioning/freshness.py: freshness.toml read and validated once, turned into trigger arguments; bad files
stop provisioning with one error line naming the file, the source and the fix."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from provisioning.cli import load_declarations, main
from provisioning.errors import ConfigError
from provisioning.freshness import FreshnessConfigError, load_freshness, load_glob_compiler
from provisioning.settings import DEFAULT_PLUGIN_DIR, DEFAULT_TRIGGERS_FILE, Settings
from provisioning.triggers import load_triggers

GOOD = '''
[[source]]
kapa_source = "Documentation"            # Kapa source name, exact
repos = ["influxdata/docs-v2@master"]     # owner/name@base, one or more
paths = ["content/**", "data/**"]        # globs on repository paths; default ["**"]
exclude = ["**/*.png"]                   # optional
severity_threshold = 200                 # lines; default SEVERITY_THRESHOLD
[source.pages]                           # optional: how a changed file maps to a page URL
base_url = "https://docs.influxdata.com/"
strip_prefix = "content/"

[[source]]
kapa_source = "API reference"
repos = ["influxdata/openapi@main", "influxdata/docs-v2@master"]
paths = ["api-docs/"]
'''


def _load(tmp_path: Path, text: str, env: dict | None = None):
    f = tmp_path / "freshness.toml"
    f.write_text(text)
    return load_freshness(f, env or {}, DEFAULT_PLUGIN_DIR)


def test_freshness_file_of_the_issue_becomes_sources_and_repos(tmp_path: Path):
    cfg = _load(tmp_path, GOOD, {"SEVERITY_THRESHOLD": "50"})
    assert cfg.repos == ["influxdata/docs-v2@master", "influxdata/openapi@main"]
    values = cfg.trigger_values()
    assert values["FRESHNESS_REPOS"] == "influxdata/docs-v2@master influxdata/openapi@main"
    assert ", " not in values["FRESHNESS_SOURCES"] and ": " not in values["FRESHNESS_SOURCES"]  # compact
    assert json.loads(values["FRESHNESS_SOURCES"]) == [
        {"kapa_source": "Documentation", "repos": ["influxdata/docs-v2@master"], "paths": ["content/**", "data/**"],
         "exclude": ["**/*.png"], "severity_threshold": 200,
         "pages": {"base_url": "https://docs.influxdata.com/", "strip_prefix": "content/"}},
        {"kapa_source": "API reference", "repos": ["influxdata/openapi@main", "influxdata/docs-v2@master"],
         "paths": ["api-docs/"], "exclude": [], "severity_threshold": 50},
    ]


def test_freshness_defaults_paths_every_file_and_threshold_200(tmp_path: Path):
    cfg = _load(tmp_path, '[[source]]\nkapa_source = "Docs"\nrepos = ["o/r@main"]\n'
                          '[source.pages]\nbase_url = "https://x.example"\n')
    (source,) = cfg.sources
    assert source == {"kapa_source": "Docs", "repos": ["o/r@main"], "paths": ["**"], "exclude": [],
                      "severity_threshold": 200, "pages": {"base_url": "https://x.example/", "strip_prefix": ""}}


def test_freshness_values_reach_the_declared_triggers(tmp_path: Path):
    cfg = _load(tmp_path, GOOD)
    decls, errors = load_triggers(DEFAULT_TRIGGERS_FILE, {"KAPA_PROJECT_ID": "p1", **cfg.trigger_values()})
    assert errors == []
    by_name = {d.name: d.arguments for d in decls}
    for name in ("github_pr_endpoint", "github_pr_monitor"):
        assert by_name[name]["repos"] == "influxdata/docs-v2@master influxdata/openapi@main"
    for name in ("gh_kapa_monitor", "docs_freshness_daily", "freshness_endpoint"):
        assert json.loads(by_name[name]["sources"])[1]["kapa_source"] == "API reference"
    assert not any("repos" in a or "sources" in a for n, a in by_name.items() if n.startswith("kapa"))


def test_freshness_without_the_file_leaves_the_arguments_out(tmp_path: Path):
    assert load_freshness(tmp_path / "absent.toml", {}, DEFAULT_PLUGIN_DIR) is None
    decls, errors = load_triggers(DEFAULT_TRIGGERS_FILE, {"FRESHNESS_REPOS": "", "FRESHNESS_SOURCES": "",
                                                          "GITHUB_REPO": "o/r", "KAPA_SOURCE_NAME": "Docs"})
    assert errors == []
    for d in decls:
        assert "repos" not in d.arguments and "sources" not in d.arguments
    monitor = next(d for d in decls if d.name == "gh_kapa_monitor")
    assert (monitor.arguments["repo"], monitor.arguments["source_name"], monitor.arguments["severity_threshold"]) \
        == ("o/r", "Docs", "200")


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(FreshnessConfigError) as info:
        _load(tmp_path, text)
    return str(info.value)


ONE = '[[source]]\nkapa_source = "Docs"\nrepos = ["o/r@main"]\n'


@pytest.mark.parametrize("text, message", [
    (ONE + 'path = ["a/**"]\n',
     "source 'Docs': unknown key 'path'; use only kapa_source, repos, paths, exclude, severity_threshold, pages"),
    ('title = "x"\n' + ONE,
     "unknown key 'title'; declare sources as [[source]] tables, nothing else at the top level"),
    (ONE + 'paths = ["content/[a-z]*"]\n',
     "source 'Docs': paths glob 'content/[a-z]*' is not accepted: 'content/[a-z]*' uses [...] ranges, which "
     "CODEOWNERS-style globs do not support; use * or ? or list each path"),
    (ONE + 'exclude = ["!**/*.md"]\n',
     "source 'Docs': exclude glob '!**/*.md' is not accepted: '!**/*.md' uses ! negation, which CODEOWNERS-style "
     "globs do not support; list the pattern without ! under exclude"),
    (ONE + 'paths = ["content**"]\n',
     "source 'Docs': paths glob 'content**' is not accepted: 'content**' has ** inside a path segment; use ** as "
     "a whole segment (**/x, x/**, a/**/b) or * within a segment"),
    (ONE + 'paths = []\n', "source 'Docs': paths is empty, so nothing would count; leave paths out"),
    ('[[source]]\nkapa_source = "Docs"\nrepos = ["influxdata/docs-v2"]\n',
     "source 'Docs': repository 'influxdata/docs-v2' is not in owner/name@base form; write e.g. "
     '"influxdata/docs-v2@master"'),
    ('[[source]]\nkapa_source = "Docs"\nrepos = ["o/r@ma in"]\n', "'o/r@ma in' is not in owner/name@base form"),
    ('[[source]]\nkapa_source = "Docs"\nrepos = ["o/r@a..b"]\n', "'o/r@a..b' is not in owner/name@base form"),
    ('[[source]]\nkapa_source = "Docs"\nrepos = "o/r@main"\n', "source 'Docs': repos is not a list of strings"),
    ('[[source]]\nkapa_source = "Docs"\nrepos = ["o/r@main", "o/r@v2"]\n',
     "repository o/r is listed twice (o/r@main, o/r@v2); list each repository once per source"),
    ('[[source]]\nrepos = ["o/r@main"]\n', "[[source]] #1: kapa_source is missing or empty"),
    (ONE + ONE.replace("o/r", "o/s"),
     "source 'Docs': is declared twice ([[source]] #1 and #2); merge them into one [[source]]"),
    (ONE + 'severity_threshold = "200"\n', "source 'Docs': severity_threshold '200' is not a whole number"),
    (ONE + '[source.pages]\nbase_url = "docs.example.com"\n', "pages.base_url 'docs.example.com' is not an http(s) URL"),
    (ONE + '[source.pages]\nbase_url = "https://d.example/"\nprefix = "c/"\n',
     "unknown key 'prefix' in [source.pages]; use only base_url, strip_prefix"),
    ('[[source]]\nkapa_source = "Docs"\nrepos = [\n', "is not valid TOML"),
    ('', "declares no [[source]]"),
])
def test_freshness_bad_file_one_line_naming_file_source_and_fix(tmp_path: Path, text: str, message: str):
    error = _error(tmp_path, text)
    assert error.startswith(f"{tmp_path / 'freshness.toml'}: ")
    assert message in error
    assert "\n" not in error


def test_freshness_file_not_utf8_is_one_line_not_a_traceback(tmp_path: Path):
    f = tmp_path / "freshness.toml"
    f.write_bytes(b"\xff\xfe[[source]]\n")
    with pytest.raises(FreshnessConfigError) as info:
        load_freshness(f, {}, DEFAULT_PLUGIN_DIR)
    assert str(info.value) == f"{f}: is not UTF-8 text (byte 0); save it as UTF-8"


def test_freshness_bad_file_makes_provisioning_exit_1_with_one_error_line_before_any_request(tmp_path: Path):
    f = tmp_path / "freshness.toml"
    f.write_text(ONE + ONE)
    out, err = io.StringIO(), io.StringIO()
    rc = main(["--freshness-file", str(f)], out=out, err=err,
              environ={"INFLUXDB3_HOST_URL": "http://127.0.0.1:9", "PROVISION_ENV_FILE": str(tmp_path / "none")})
    assert rc == 1
    assert err.getvalue().splitlines() == [
        f"error: {f}: source 'Docs': is declared twice ([[source]] #1 and #2); merge them into one [[source]] "
        "(list both repositories under repos)"]
    assert out.getvalue() == ""


@pytest.mark.parametrize("with_file", [False, True])
def test_freshness_environment_cannot_inject_unvalidated_arguments(tmp_path: Path, with_file: bool):
    """FRESHNESS_SOURCES/FRESHNESS_REPOS from the environment are replaced by provisioning's own values."""
    f = _write(tmp_path, ONE) if with_file else tmp_path / "absent.toml"
    env = {"PROVISION_FRESHNESS_FILE": str(f), "FRESHNESS_SOURCES": "not json", "FRESHNESS_REPOS": "x/y@z"}
    freshness, decls, errors = load_declarations(Settings.from_env(env), env)
    assert errors == [] and (freshness is not None) == with_file
    monitor = {d.name: d for d in decls}["gh_kapa_monitor"].arguments
    pr_monitor = {d.name: d for d in decls}["github_pr_monitor"].arguments
    if with_file:
        assert json.loads(monitor["sources"])[0]["kapa_source"] == "Docs" and pr_monitor["repos"] == "o/r@main"
    else:
        assert "sources" not in monitor and "repos" not in pr_monitor


def test_freshness_globs_are_checked_with_the_plugins_own_matcher(tmp_path: Path):
    compile_glob = load_glob_compiler(DEFAULT_PLUGIN_DIR)
    assert compile_glob("content/**").fullmatch("content/a.md")
    with pytest.raises(ConfigError, match="set PROVISION_PLUGIN_DIR"):
        load_glob_compiler(tmp_path)
    with pytest.raises(ConfigError, match="set PROVISION_PLUGIN_DIR"):
        load_freshness(_write(tmp_path, ONE), {}, tmp_path / "nowhere")


def test_freshness_bad_severity_default_names_the_setting(tmp_path: Path):
    with pytest.raises(FreshnessConfigError, match="SEVERITY_THRESHOLD 'lots'"):
        load_freshness(_write(tmp_path, ONE), {"SEVERITY_THRESHOLD": "lots"}, DEFAULT_PLUGIN_DIR)


def _write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "f.toml"
    f.write_text(text)
    return f


def test_freshness_missing_file_is_announced_so_a_mistyped_path_is_seen(tmp_path: Path):
    """Without a file the single-source settings apply; provisioning says so, naming the path it looked at."""
    missing = tmp_path / "freshnes.toml"  # a typo: the file is not there
    out, err = io.StringIO(), io.StringIO()
    rc = main(["--dry-run"], out=out, err=err,
              environ={"INFLUXDB3_HOST_URL": "http://127.0.0.1:9", "PROVISION_WAIT_SECONDS": "0",
                       "PROVISION_ENV_FILE": str(tmp_path / "none"), "PROVISION_FRESHNESS_FILE": str(missing)})
    assert rc == 1  # nothing answers on port 9; the mode was announced before the first request
    assert out.getvalue().splitlines()[0] == (
        f"freshness: {missing} (PROVISION_FRESHNESS_FILE) does not exist: one source from KAPA_SOURCE_NAME, "
        "GITHUB_REPO, GITHUB_BASE and SEVERITY_THRESHOLD")
