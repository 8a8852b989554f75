"""make run's flow on the embedded engine with the fake GitHub and Kapa: provisioning (twice), both endpoints,
PRs landing in gh, integration_status and exactly one alert, and the seven triggers; freshness.toml through the
trigger API to request:freshness; plus make demo itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from provisioning.freshness import load_freshness
from tests.fakes.sample import DEMO_BASE, DEMO_PROJECT, DEMO_REPO, DEMO_SOURCE
from tests.flight_clients import assert_flight_clients_query
from tests.stack.running import ROOT, Stack, poll, running_stack
from tests.support import free_port

SEVEN = {
    "github_pr_endpoint": '{"request_path":{"path":"github_prs"}}',
    "github_pr_monitor": '{"every":{"duration":{"secs":3600,"nanos":0}}}',
    "kapa_sources_endpoint": '{"request_path":{"path":"kapa_sources"}}',
    "kapa_sources_monitor": '{"every":{"duration":{"secs":21600,"nanos":0}}}',
    "gh_kapa_monitor": '{"single_table_wal_write":{"table_name":"gh"}}',
    "docs_freshness_daily": '{"schedule":{"schedule":"0 0 8 * * *"}}',
    "freshness_endpoint": '{"request_path":{"path":"freshness"}}',
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    with running_stack(tmp, PROVISION_FRESHNESS_FILE=str(tmp / "no-freshness.toml"),  # the single-source settings
                       GITHUB_REPO=DEMO_REPO, GITHUB_BASE=DEMO_BASE, KAPA_SOURCE_NAME=DEMO_SOURCE) as running:
        yield running


def test_stack_provision_twice_second_run_changes_nothing(stack: Stack):
    rc, out, err = stack.provision()
    assert (rc, err) == (0, "")
    assert [line for line in out.splitlines() if line.startswith("created trigger")] == [
        "created trigger github_pr_endpoint (request:github_prs -> github_prs.py)",
        "created trigger github_pr_monitor (every:1h -> github_prs.py)",
        "created trigger kapa_sources_endpoint (request:kapa_sources -> kapa_sources.py)",
        "created trigger kapa_sources_monitor (every:6h -> kapa_sources.py)",
        "created trigger gh_kapa_monitor (table:gh -> docs_freshness.py)",
        "created trigger docs_freshness_daily (cron:0 0 8 * * * -> docs_freshness.py)",
        "created trigger freshness_endpoint (request:freshness -> docs_freshness.py)",
    ]
    rc, out, err = stack.provision()
    assert (rc, err) == (0, "")
    assert out.splitlines()[-1] == "no change: database, tables and triggers already as declared"
    assert sum(line.endswith(": unchanged") for line in out.splitlines()) == 7
    assert stack.server.token not in out + err


def test_stack_seven_triggers_present(stack: Stack):
    rows = stack.sql("SELECT trigger_name, plugin_filename, trigger_specification, disabled "
                     "FROM system.processing_engine_triggers")
    assert {r["trigger_name"]: r["trigger_specification"] for r in rows} == SEVEN
    assert all(r["disabled"] is False for r in rows)
    args = stack.sql("SELECT argument_key, argument_value FROM system.processing_engine_trigger_arguments "
                     "WHERE trigger_name = 'gh_kapa_monitor'")
    assert {a["argument_key"]: a["argument_value"] for a in args} == {
        "repo": DEMO_REPO, "base": DEMO_BASE, "source_name": DEMO_SOURCE, "severity_threshold": "200",
        "project_id": DEMO_PROJECT,
        "kapa_api_url": stack.kapa.url, "kapa_token_file": stack.env["KAPA_TOKEN_FILE"]}


def test_stack_changed_setting_replaces_only_affected_triggers_and_prune_removes_undeclared(stack: Stack, tmp_path):
    rc, out, _ = stack.provision(SEVERITY_THRESHOLD="300")
    assert rc == 0
    assert [line for line in out.splitlines() if line.startswith("replaced")] == [
        "replaced trigger gh_kapa_monitor (arguments severity_threshold)",
        "replaced trigger docs_freshness_daily (arguments severity_threshold)",
        "replaced trigger freshness_endpoint (arguments severity_threshold)",
    ]
    extra = tmp_path / "extra.toml"
    extra.write_text((ROOT / "provisioning" / "triggers.toml").read_text()
                     + '\n[triggers.scratch]\nplugin = "docs_freshness.py"\nspec = "every:1d"\n')
    assert stack.provision("--triggers-file", str(extra))[0] == 0
    rc, out, _ = stack.provision()  # back to the packaged file and threshold: scratch is kept without --prune
    assert rc == 0 and "trigger scratch: not declared; kept (--prune removes it)" in out.splitlines()
    rc, out, _ = stack.provision("--prune")
    assert rc == 0 and "deleted trigger scratch (not declared)" in out.splitlines()
    names = {r["trigger_name"] for r in stack.sql("SELECT trigger_name FROM system.processing_engine_triggers")}
    assert names == set(SEVEN)


def test_stack_bad_trigger_gives_one_clear_line_and_non_zero_exit(stack: Stack, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[triggers.gh_pr_monitor]\nplugin = "github_pr_sched.py"\nspec = "every:1h"\n')
    rc, out, err = stack.provision("--triggers-file", str(bad))
    assert rc == 1
    assert err.splitlines() == [
        'error: trigger gh_pr_monitor: plugin github_pr_sched.py is the seed documentation\'s name; '
        'use plugin = "github_prs.py"']
    missing = tmp_path / "missing.toml"
    missing.write_text('[triggers.ghost]\nplugin = "no_such_plugin.py"\nspec = "every:1h"\n')
    rc, _, err = stack.provision("--triggers-file", str(missing))
    assert rc == 1
    assert err.splitlines() == [
        "error: trigger ghost: plugin file no_such_plugin.py is not in the server's plugin directory; put the "
        "file in plugins/ (the server's --plugin-dir) or correct plugin in triggers.toml"]


def test_stack_endpoints_collect_rows_and_alert_once(stack: Stack):
    r = stack.call("kapa_sources", {})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["project_id"]) == ("success", DEMO_PROJECT)
    assert body["source_count"] == len(body["sources"]) >= 1
    assert poll(lambda: stack.sql("SELECT COUNT(*) AS n FROM kapa_source WHERE event_type = 'ingested_at'")[0]["n"],
                "kapa_source rows")

    r = stack.call("github_prs", {"time_period": "week"})
    assert r.status_code == 200, r.text
    prs = r.json()
    assert prs["status"] == "success" and prs["pr_count"] > 0
    assert stack.sql("SELECT COUNT(*) AS n FROM gh")[0]["n"] == prs["pr_count"]

    status = poll(lambda: stack.sql("SELECT * FROM integration_status"), "an integration_status row")
    assert {(s["repo"], s["source_name"]) for s in status} == {(DEMO_REPO, DEMO_SOURCE)}
    alerts = poll(lambda: stack.sql("SELECT * FROM documentation_alert"), "a documentation_alert row")
    assert len(alerts) == 1
    assert (alerts[0]["repo"], alerts[0]["source_name"]) == (DEMO_REPO, DEMO_SOURCE)
    assert alerts[0]["severity"] in ("info", "warning")


def test_stack_freshness_file_reaches_the_triggers_and_the_endpoint(stack: Stack, tmp_path):
    f = tmp_path / "freshness.toml"
    f.write_text(f"""
[[source]]
kapa_source = "{DEMO_SOURCE}"
repos = ["{DEMO_REPO}@{DEMO_BASE}"]
paths = ["content/**"]
exclude = ["**/*.png"]
[source.pages]
base_url = "https://docs.example.com/"
strip_prefix = "content/"

[[source]]
kapa_source = "API reference"
repos = ["{DEMO_REPO}@{DEMO_BASE}", "influxdata/openapi@main"]
paths = ["api-docs/"]
""")
    rc, out, err = stack.provision(PROVISION_FRESHNESS_FILE=str(f))
    assert (rc, err) == (0, "")
    assert f"freshness: 2 source(s), 2 repositories from {f}" in out.splitlines()
    assert [line for line in out.splitlines() if line.startswith("replaced")] == [
        "replaced trigger github_pr_endpoint (arguments repos)",
        "replaced trigger github_pr_monitor (arguments repos)",
        "replaced trigger gh_kapa_monitor (arguments sources)",
        "replaced trigger docs_freshness_daily (arguments sources)",
        "replaced trigger freshness_endpoint (arguments sources)",
    ]
    # the arguments survive the HTTP trigger API unchanged (quotes, commas, slashes, @, spaces)
    expected = load_freshness(f, stack.env, ROOT / "plugins").trigger_values()
    args = {(a["trigger_name"], a["argument_key"]): a["argument_value"] for a in stack.sql(
        "SELECT trigger_name, argument_key, argument_value FROM system.processing_engine_trigger_arguments "
        "WHERE argument_key IN ('sources', 'repos')")}
    assert args[("gh_kapa_monitor", "sources")] == expected["FRESHNESS_SOURCES"]
    assert args[("freshness_endpoint", "sources")] == expected["FRESHNESS_SOURCES"]
    assert args[("github_pr_monitor", "repos")] == f"{DEMO_REPO}@{DEMO_BASE} influxdata/openapi@main"

    merged = (int(time.time()) - 60) * 1_000_000_000
    lp = "\n".join([
        f'gh,repo={DEMO_REPO},ref={DEMO_BASE},pr_number=9001 activity_type="pr_merge",lines=57i,additions=50i,'
        f'deletions=7i,author="a",title="t",url="u" {merged}',
        f'gh_file,repo={DEMO_REPO},ref={DEMO_BASE},pr_number=9001,path=content/x/_index.md additions=40i,'
        f'deletions=5i,change_type="modified" {merged}',
        f'gh_file,repo={DEMO_REPO},ref={DEMO_BASE},pr_number=9001,path=.github/ci.yml additions=10i,'
        f'deletions=2i,change_type="modified" {merged}',
    ])
    r = stack.server.session.post(f"{stack.server.url}/api/v3/write_lp?db=aichat", data=lp, timeout=30)
    assert r.status_code == 204, r.text
    poll(lambda: stack.sql("SELECT * FROM integration_status WHERE source_name = 'API reference'"),
         "a status row of the second source")
    body = poll(lambda: (lambda b: b if any(p["page"] == "https://docs.example.com/x/" for p in
                                            b["sources"][0]["pages"]) else None)(
        stack.server.session.get(f"{stack.server.url}/api/v3/engine/freshness",
                                 params={"source": DEMO_SOURCE}, timeout=30).json()), "the changed page")
    (docs,) = body["sources"]
    assert docs["source"] == DEMO_SOURCE and docs["repos"] == [f"{DEMO_REPO}@{DEMO_BASE}"]
    page = next(p for p in docs["pages"] if p["page"] == "https://docs.example.com/x/")
    assert (page["lines"], page["prs"], page["repo"]) == (45, [9001], DEMO_REPO)
    r = stack.call("freshness", {"source": "API reference"})
    assert r.status_code == 200 and [s["source"] for s in r.json()["sources"]] == ["API reference"]
    r = stack.server.session.get(f"{stack.server.url}/api/v3/engine/freshness", params={"source": "Nope"})
    assert (r.status_code, r.json()) == (404, {"status": "error", "message": (
        f"unknown source 'Nope'; known sources: '{DEMO_SOURCE}', 'API reference'")})
    # back to the single-source settings: the two arguments are removed again
    rc, out, _ = stack.provision()
    assert rc == 0 and sum(line.startswith("replaced") for line in out.splitlines()) == 5


def test_stack_make_demo_serves_both_endpoints_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB3_", "GITHUB_", "KAPA_"))}
    env.update(PROVISION_ENV_FILE=str(tmp_path / "no.env"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.run_stack", "--demo", "--port", str(port), "--data-dir", str(tmp_path / "d"),
         "--secrets-dir", str(tmp_path / "secrets"), "--log-file", str(tmp_path / "server.log")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output: list[str] = []
        assert proc.stdout is not None
        reader = threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True)
        reader.start()
        end = time.monotonic() + 60
        while not any(line.startswith("aichat-stack is ready") for line in list(output)):
            if proc.poll() is not None or time.monotonic() > end:
                pytest.fail("make demo did not become ready:\n" + "".join(output))
            time.sleep(0.05)
        admin = tmp_path / "secrets" / "influxdb3_admin_token.json"
        assert admin.stat().st_mode & 0o777 == 0o600
        token = json.loads(admin.read_text())["token"]
        assert token not in "".join(output)
        h = {"Authorization": f"Bearer {token}"}
        url = f"http://127.0.0.1:{port}/api/v3/engine"
        kapa = requests.post(f"{url}/kapa_sources", headers=h, timeout=60)
        gh = requests.post(f"{url}/github_prs", headers=h, json={"time_period": "week"}, timeout=60)
        assert kapa.status_code == 200 and kapa.json()["source_count"] >= 1, kapa.text
        assert gh.status_code == 200 and gh.json()["pr_count"] >= 1, gh.text
        # the demo's freshness.demo.toml: Documentation stale (pages changed), API reference fresh
        fresh = requests.get(f"{url}/freshness", headers=h, timeout=60)
        assert fresh.status_code == 200, fresh.text
        by_source = {s["source"]: s for s in fresh.json()["sources"]}
        assert by_source["Documentation"]["pages_changed"] > 100 and by_source["API reference"]["pages"] == []
        # the official clients query make run's engine over Flight on the same port (influxdb3-python, ADBC)
        assert assert_flight_clients_query(port, token, "aichat", "SELECT * FROM gh") >= 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:  # SIGTERM first: run_stack then stops its server and fakes
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
