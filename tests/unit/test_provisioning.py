"""Unit tests for provisioning: spec normalisation, triggers.toml validation, settings, schema check, plan.

Everything here runs without a server; the whole flow against the embedded engine is in tests/stack/.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from provisioning.cli import main
from provisioning.errors import ConfigError, TriggerConfigError
from provisioning.schema import TABLES, compare_schema
from provisioning.settings import DEFAULT_TRIGGERS_FILE, Settings, read_token_file
from provisioning.specs import SpecError, format_duration, normalize_spec, parse_duration_ns, spec_key
from provisioning.triggers import (
    Action,
    LiveTrigger,
    TriggerDecl,
    differences,
    live_from_rows,
    load_triggers,
    parse_declaration,
    plan,
)

TOKEN = "apiv3_" + "A" * 86


# -- specs ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("every:10s", "every:10s"),
        ("  every:1h 30m ", "every:1h 30m"),
        ("cron:0 0 * * *", "cron:0 0 0 * * *"),
        ("cron:0 0 8 * * *", "cron:0 0 8 * * *"),
        ("cron:0  0 8 * * * 2030", "cron:0 0 8 * * * 2030"),
        ("cron:@daily", "cron:@daily"),
        ({"every": {"duration": {"secs": 10, "nanos": 0}}}, "every:10s"),
        ({"every": {"duration": {"secs": 3600, "nanos": 0}}}, "every:1h"),
        ({"schedule": "cron:0 0 * * *"}, "cron:0 0 0 * * *"),
        ({"schedule": ["0 0 * * *"]}, "cron:0 0 0 * * *"),
        ({"schedule": {"schedule": "0 * * * * *"}}, "cron:0 * * * * *"),
        ({"single_table_wal_write": {"table_name": "gh"}}, "table:gh"),
        ({"request_path": {"path": "github_prs"}}, "request:github_prs"),
        ("all_tables_wal_write", "all_tables"),
        ('{"every":{"duration":{"secs":60,"nanos":0}}}', "every:1m"),
        ("table:gh", "table:gh"),
        ("request:kapa_sources", "request:kapa_sources"),
    ],
)
def test_specs_normalise_seed_forms(given, expected):
    assert normalize_spec(given) == expected


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("cron:0 0 *", "cron expression '0 0 *' has 3 fields"),
        ("every:soon", "duration 'soon' does not parse"),
        ("every:2y", "duration '2y' is over 1 year"),
        ("request:/github_prs", "request path '/github_prs' starts with '/' and would be unreachable"),
        ("table:", "table name is empty"),
        ("hourly", "specification 'hourly' has no kind"),
        ("interval:1h", "specification kind 'interval' is unknown"),
        ({"every": 10}, 'specification {"every": 10} is not a form the server accepts'),
    ],
)
def test_specs_reject_what_cannot_work(given, problem):
    with pytest.raises(SpecError) as info:
        normalize_spec(given)
    assert info.value.problem.startswith(problem)
    assert info.value.fix


def test_specs_durations_match_humantime_units():
    assert parse_duration_ns("1h 30m") == 5400 * 10**9
    assert parse_duration_ns("1h30m") == 5400 * 10**9
    assert parse_duration_ns("1M") == 2_630_016 * 10**9
    assert format_duration(3600 * 10**9) == "1h"
    assert format_duration(90 * 10**9) == "90s"
    assert spec_key("every:60s") == spec_key({"every": {"duration": {"secs": 60, "nanos": 0}}})
    assert spec_key("every:1h") != spec_key("every:6h")


# -- triggers.toml -----------------------------------------------------------------------------------------
def test_triggers_packaged_file_declares_the_seven_design_triggers():
    decls, errors = load_triggers(DEFAULT_TRIGGERS_FILE, {"KAPA_PROJECT_ID": "p1"})
    assert errors == []
    assert {(d.name, d.spec, d.plugin) for d in decls} == {
        ("github_pr_endpoint", "request:github_prs", "github_prs.py"),
        ("github_pr_monitor", "every:1h", "github_prs.py"),
        ("kapa_sources_endpoint", "request:kapa_sources", "kapa_sources.py"),
        ("kapa_sources_monitor", "every:6h", "kapa_sources.py"),
        ("gh_kapa_monitor", "table:gh", "docs_freshness.py"),
        ("docs_freshness_daily", "cron:0 0 8 * * *", "docs_freshness.py"),
        ("freshness_endpoint", "request:freshness", "docs_freshness.py"),
    }
    by_name = {d.name: d for d in decls}
    assert by_name["github_pr_monitor"].arguments == {
        "repo": "influxdata/docs-v2",
        "base": "master",
        "time_period": "week",
        "github_api_url": "https://api.github.com",
        "github_token_file": "/run/secrets/github_token",
    }
    assert by_name["gh_kapa_monitor"].arguments["severity_threshold"] == "200"
    assert by_name["gh_kapa_monitor"].arguments["project_id"] == "p1"
    for d in decls:  # no argument carries a token, only file paths
        assert not any(k.endswith("_token") for k in d.arguments)


def test_triggers_expand_settings_and_drop_empty_values():
    decls, _ = load_triggers(DEFAULT_TRIGGERS_FILE, {"GITHUB_REPO": "acme/docs", "SEVERITY_THRESHOLD": "50"})
    by_name = {d.name: d for d in decls}
    assert by_name["github_pr_endpoint"].arguments["repo"] == "acme/docs"
    assert by_name["docs_freshness_daily"].arguments["severity_threshold"] == "50"
    assert "project_id" not in by_name["kapa_sources_endpoint"].arguments
    assert "integration_id" not in by_name["kapa_sources_endpoint"].arguments


def test_triggers_docs_freshness_watches_the_branch_github_prs_collects():
    # The server's plugins do not see provisioning's environment (compose gives GITHUB_BASE to `provision` only),
    # so docs_freshness must get the branch as an argument or it compares against `master` forever.
    decls, _ = load_triggers(DEFAULT_TRIGGERS_FILE, {"GITHUB_REPO": "acme/docs", "GITHUB_BASE": "main"})
    by_plugin: dict[str, list[TriggerDecl]] = {}
    for d in decls:
        by_plugin.setdefault(d.plugin, []).append(d)
    for d in by_plugin["github_prs.py"] + by_plugin["docs_freshness.py"]:
        assert (d.name, d.arguments.get("repo"), d.arguments.get("base")) == (d.name, "acme/docs", "main")


def _decl(raw: dict, env: dict | None = None) -> TriggerDecl:
    return parse_declaration("t1", raw, {}, env or {})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"plugin": "github_pr_req.py", "spec": "request:github_prs"},
         'trigger t1: plugin github_pr_req.py is the seed documentation\'s name; use plugin = "github_prs.py"'),
        ({"plugin": "gh_kapa_integration.py", "spec": "table:gh"},
         'trigger t1: plugin gh_kapa_integration.py is the seed documentation\'s name; use plugin = "docs_freshness.py"'),
        ({"plugin": "x.py", "spec": "cron:0 0"},
         "trigger t1: cron expression '0 0' has 2 fields; write 6 fields with seconds first, "
         "e.g. 'cron:0 0 8 * * *' for 08:00 UTC daily"),
        ({"plugin": "x.py", "spec": "every:1h", "arguments": {"github_token": "abc"}},
         "trigger t1: argument github_token would store a secret in the catalog; "
         "use github_token_file=/run/secrets/github_token"),
        ({"plugin": "x.py", "spec": "every:1h", "arguments": {"repo": "ghp_abcdef"}},
         "trigger t1: argument repo looks like a token; put the token in a file and pass its path in *_file"),
        ({"plugin": "x.py", "spec": "every:1h", "error_behavior": "explode"},
         "trigger t1: error_behavior 'explode' is unknown; use log, retry or disable"),
        ({"plugin": "../x.py", "spec": "every:1h"},
         "trigger t1: plugin ../x.py leaves the plugin directory; give a path relative to plugins/"),
        ({"spec": "every:1h"}, 'trigger t1: no plugin; add plugin = "<file>.py" (a file in plugins/)'),
        ({"plugin": "x.py", "spec": "every:1h", "arguments": {"repo": "${NOPE}"}},
         "trigger t1: argument repo uses ${NOPE}, which is not set; set NOPE in .env"),
        ({"plugin": "x.py", "spec": "every:1h", "schedule": "x"},
         "trigger t1: unknown key schedule; use only arguments, disabled, error_behavior, plugin, run_async, spec"),
    ],
)
def test_triggers_reject_with_one_line_naming_trigger_and_fix(raw, message):
    with pytest.raises(TriggerConfigError) as info:
        _decl(raw)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_triggers_accept_seed_object_spec_and_numbers():
    d = _decl({"plugin": "x.py", "spec": {"schedule": ["0 0 * * *"]}, "arguments": {"severity_threshold": 200}})
    assert d.spec == "cron:0 0 0 * * *"
    assert d.arguments == {"severity_threshold": "200"}


def test_triggers_file_errors_are_collected_per_trigger(tmp_path: Path):
    f = tmp_path / "t.toml"
    f.write_text(
        '[triggers.good]\nplugin = "github_prs.py"\nspec = "every:1h"\n'
        '[triggers.bad_cron]\nplugin = "docs_freshness.py"\nspec = "cron:1 2 3"\n'
        '[triggers.bad_plugin]\nplugin = "kapa_sources_req.py"\nspec = "request:kapa_sources"\n'
    )
    decls, errors = load_triggers(f, {})
    assert [d.name for d in decls] == ["good"]
    assert [e.trigger for e in errors] == ["bad_cron", "bad_plugin"]


def test_triggers_file_not_toml_is_a_config_error(tmp_path: Path):
    f = tmp_path / "t.toml"
    f.write_text("[triggers.x\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_triggers(f, {})


@pytest.mark.parametrize("content, message", [
    (b"\xff[triggers.x]\n", "is not UTF-8 text (byte 0); save it as UTF-8"),
    (None, "cannot be read (Is a directory); fix its permissions or set PROVISION_TRIGGERS_FILE"),
    (b'defaults = 3\n[triggers.x]\nplugin = "github_prs.py"\nspec = "every:1h"\n', "defaults is not a table"),
])
def test_triggers_file_unreadable_is_a_config_error_not_a_traceback(tmp_path: Path, content, message):
    f = tmp_path / "t.toml"
    f.mkdir() if content is None else f.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_triggers(f, {})
    assert message in str(info.value)


# -- live state and plan -----------------------------------------------------------------------------------
def _live(name="a", spec=None, args=None, plugin="p.py", disabled=False) -> LiveTrigger:
    return LiveTrigger(name, plugin, spec if spec is not None else {"every": {"duration": {"secs": 3600, "nanos": 0}}},
                       disabled, "log", args if args is not None else {"repo": "r"})


def test_plan_keeps_equal_creates_missing_replaces_changed_and_prunes_only_when_asked():
    decls = [
        TriggerDecl("a", "p.py", "every:1h", {"repo": "r"}),
        TriggerDecl("b", "p.py", "table:gh", {}),
        TriggerDecl("c", "p.py", "every:6h", {"repo": "r"}),
    ]
    live = [_live("a"), _live("c"), _live("old")]
    steps = plan(decls, live, prune=False)
    assert [(s.action, s.name) for s in steps] == [
        (Action.KEEP, "a"), (Action.CREATE, "b"), (Action.REPLACE, "c"), (Action.UNDECLARED, "old")]
    assert steps[2].detail == 'spec {\'every\': {\'duration\': {\'secs\': 3600, \'nanos\': 0}}} -> every:6h'
    pruned = plan(decls, live, prune=True)
    assert (pruned[-1].action, pruned[-1].name) == (Action.DELETE, "old")


def test_plan_reports_changed_argument_keys_but_never_values():
    decl = TriggerDecl("a", "p.py", "every:1h", {"repo": "new-secretish-value"})
    diffs = differences(decl, _live("a", args={"repo": "old"}))
    assert diffs == ["arguments repo"]
    no_args = LiveTrigger("a", "p.py", "every:1h", False, "log", None)  # server that cannot list arguments
    assert differences(decl, no_args) == []


def test_plan_reads_live_rows_from_system_tables():
    rows = [{"trigger_name": "a", "plugin_filename": "p.py",
             "trigger_specification": '{"single_table_wal_write":{"table_name":"gh"}}',
             "disabled": False, "error_behavior": "Log"}]
    args = [{"trigger_name": "a", "argument_key": "repo", "argument_value": "r"}]
    (live,) = live_from_rows(rows, args)
    assert live.arguments == {"repo": "r"}
    assert differences(TriggerDecl("a", "p.py", "table:gh", {"repo": "r"}), live) == []


def test_plan_all_tables_trigger_as_the_system_table_shows_it_is_unchanged():
    # serde renders the unit variant as a JSON string, quotes included: "all_tables_wal_write"
    rows = [{"trigger_name": "a", "plugin_filename": "p.py", "trigger_specification": '"all_tables_wal_write"',
             "disabled": False, "error_behavior": "log"}]
    (live,) = live_from_rows(rows, [])
    assert differences(TriggerDecl("a", "p.py", "all_tables", {}), live) == []
    assert normalize_spec('"all_tables_wal_write"') == "all_tables"


# -- settings ----------------------------------------------------------------------------------------------
def test_settings_read_json_and_plain_token_files(tmp_path: Path):
    j = tmp_path / "admin.json"
    j.write_text(json.dumps({"token": TOKEN, "name": "_admin"}))
    p = tmp_path / "plain"
    p.write_text(TOKEN + "\n")
    assert read_token_file(j) == TOKEN
    assert read_token_file(p) == TOKEN
    s = Settings.from_env({"INFLUXDB3_AUTH_TOKEN_FILE": str(j), "INFLUXDB3_HOST_URL": "http://127.0.0.1:9/"})
    assert s.token == TOKEN and s.host_url == "http://127.0.0.1:9" and s.database == "aichat"
    assert TOKEN not in repr(s)


@pytest.mark.parametrize("wait", ["nan", "inf", "-5", "soon"])
def test_settings_wait_seconds_must_be_a_finite_number(wait: str):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"PROVISION_WAIT_SECONDS": wait})
    assert str(info.value).startswith(f"PROVISION_WAIT_SECONDS {wait!r} is not a number of seconds")


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe{", "is not UTF-8 text"),
    (None, "cannot be read (Is a directory)"),
])
def test_settings_unreadable_token_file_is_a_config_error(tmp_path: Path, content, message):
    f = tmp_path / "admin.json"
    f.mkdir() if content is None else f.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        read_token_file(f)
    assert str(info.value).startswith(f"token file {f} ") and message in str(info.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"INFLUXDB3_HOST_URL": "localhost:8181"}, "INFLUXDB3_HOST_URL 'localhost:8181' is not an http(s) URL"),
        ({"INFLUXDB3_HOST_URL": "http://u:p@h:1"}, "INFLUXDB3_HOST_URL must not carry credentials"),
        ({"INFLUXDB3_AUTH_TOKEN_FILE": "/nonexistent/x"}, "token file /nonexistent/x does not exist"),
        ({"PROVISION_WAIT_SECONDS": "soon"}, "PROVISION_WAIT_SECONDS 'soon' is not a number"),
    ],
)
def test_settings_reject_unusable_values(env, message):
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert str(info.value).startswith(message)


def test_settings_dotenv_is_read_and_environment_wins(tmp_path: Path):
    from provisioning.settings import load_environment

    dot = tmp_path / ".env"
    dot.write_text("INFLUXDB3_DATABASE=fromfile\nGITHUB_REPO=file/repo\n")
    env = load_environment({"GITHUB_REPO": "env/repo"}, dot)
    assert env["INFLUXDB3_DATABASE"] == "fromfile" and env["GITHUB_REPO"] == "env/repo"


# -- schema ------------------------------------------------------------------------------------------------
def test_schema_compare_names_type_differences_and_missing_columns():
    gh = next(t for t in TABLES if t.name == "gh")
    live = {"repo": "Dictionary(Int32, Utf8)", "ref": "Dictionary(Int32, Utf8)", "pr_number": "Int64",
            "lines": "Float64", "additions": "Int64", "deletions": "Int64", "author": "Utf8", "title": "Utf8",
            "url": "Utf8", "time": "Timestamp(Nanosecond, None)"}
    report = compare_schema(gh, live)
    assert report.mismatches == ("column pr_number is Int64, expected tag", "column lines is Float64, expected int64")
    assert report.missing == ("activity_type (utf8)",)


# -- cli without a server ----------------------------------------------------------------------------------
def test_cli_bad_triggers_file_exits_1_with_one_line_per_failure_and_touches_nothing(tmp_path: Path):
    f = tmp_path / "t.toml"
    f.write_text('[triggers.nightly]\nplugin = "docs_freshness.py"\nspec = "cron:0 0 * *"\n')
    out, err = io.StringIO(), io.StringIO()
    rc = main(["--triggers-file", str(f)], out=out, err=err,
              environ={"INFLUXDB3_HOST_URL": "http://127.0.0.1:9", "PROVISION_ENV_FILE": str(tmp_path / "none")})
    assert rc == 1
    assert err.getvalue().splitlines() == [
        "error: trigger nightly: cron expression '0 0 * *' has 4 fields; write 6 fields with seconds first, "
        "e.g. 'cron:0 0 8 * * *' for 08:00 UTC daily",
    ]
    assert out.getvalue() == f"1 trigger(s) in {f} cannot work; nothing was changed\n"


def test_cli_unreachable_server_fails_within_the_deadline_without_printing_the_token(tmp_path: Path):
    tok = tmp_path / "tok.json"
    tok.write_text(json.dumps({"token": TOKEN, "name": "_admin"}))
    out, err = io.StringIO(), io.StringIO()
    rc = main([], out=out, err=err, environ={
        "INFLUXDB3_HOST_URL": "http://127.0.0.1:9", "INFLUXDB3_AUTH_TOKEN_FILE": str(tok),
        "PROVISION_WAIT_SECONDS": "0.5", "PROVISION_ENV_FILE": str(tmp_path / "none")})
    assert rc == 1
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: http://127.0.0.1:9 was not healthy within 0.5s")
    assert TOKEN not in out.getvalue() + err.getvalue()


# -- make secrets ------------------------------------------------------------------------------------------
def test_secrets_admin_token_in_server_form_mode_600_and_never_overwritten(tmp_path: Path):
    import re

    from scripts.make_secrets import make_secrets

    lines = make_secrets(tmp_path / "s")
    admin = tmp_path / "s" / "influxdb3_admin_token.json"
    data = json.loads(admin.read_text())
    assert set(data) == {"token", "name"} and data["name"] == "_admin"
    assert re.fullmatch(r"apiv3_[A-Za-z0-9_-]{86}", data["token"])
    for name in ("influxdb3_admin_token.json", "github_token", "kapa_token", "notify_url"):
        assert (tmp_path / "s" / name).stat().st_mode & 0o777 == 0o600, name
    assert (tmp_path / "s" / "github_token").read_text() == ""
    assert lines[0] == f"{admin}: created"
    (tmp_path / "s" / "github_token").write_text("mine")
    again = make_secrets(tmp_path / "s")
    assert json.loads(admin.read_text())["token"] == data["token"]
    assert (tmp_path / "s" / "github_token").read_text() == "mine"
    assert all(line.endswith("exists, kept") for line in again)
    assert data["token"] not in "".join(lines + again)
