"""plugins/github_prs.py on the plugin runtime, against the loopback FakeGitHub."""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes.base import blackhole

PLUGIN = "github_prs.py"
REPO = "influxdata/docs-v2"


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000


def _args(github, fast, token=None, **extra):
    args = {"repo": REPO, "github_api_url": github.url, **fast, **extra}
    if token:
        args["github_token"] = token
    return args


def _merged(github, now, count, *, start_minutes=1, base="master"):
    return [github.add_pr(REPO, base=base, merged_at=now - timedelta(minutes=start_minutes + i),
                          additions=i + 1, deletions=i % 3) for i in range(count)]


@pytest.fixture(params=["rest", "graphql"])
def mode(request):
    return request.param


def _token_for(mode, github_token):
    return github_token if mode == "graphql" else None


# ------------------------------------------------------------------ collection


def test_github_prs_rest_collects_more_than_100_over_linked_pages(github, make_harness, fast, now):
    prs = _merged(github, now, 250)
    h = make_harness(PLUGIN, _args(github, fast))
    r = h.request(body={"time_period": "day"})
    assert r.status == 200, r.body
    body = r.json()
    assert (body["status"], body["pr_count"], body["new_count"]) == ("success", 250, 250)
    assert (github.count("list"), github.count("detail"), github.count("files"), github.count("graphql")) == (
        3, 250, 250, 0)
    assert body["api_calls"] == 503
    assert h.query("SELECT count(*) AS n, count(DISTINCT pr_number) AS d FROM gh") == [{"n": 250, "d": 250}]
    assert h.query("SELECT sum(lines) AS s FROM gh") == [{"s": sum(p.additions + p.deletions for p in prs)}]
    assert github.auth_headers() == [None] * 503


def test_github_prs_graphql_collects_more_than_100_in_three_requests(github, make_harness, fast, now, github_token):
    _merged(github, now, 250)
    h = make_harness(PLUGIN, _args(github, fast, github_token))
    r = h.request(body={"time_period": "day"})
    assert r.status == 200, r.body
    body = r.json()
    assert (body["pr_count"], body["new_count"], body["api_calls"]) == (250, 250, 3)
    assert dict(github.counts) == {"graphql": 3}
    assert set(github.auth_headers()) == {f"Bearer {github_token}"}
    assert body["rate_limit_remaining"] == 4997
    assert h.query("SELECT count(DISTINCT pr_number) AS d FROM gh") == [{"d": 250}]


def test_github_prs_row_and_response_shape(github, make_harness, fast, now, mode, github_token):
    merged = now - timedelta(hours=2)
    github.add_pr(REPO, number=42, merged_at=merged, title='Fix "quotes", commas', author="jstirnaman", files=[
        {"path": "content/a b,c=d.md", "additions": 30, "deletions": 2},
        {"path": "content/new.md", "additions": 0, "deletions": 10, "status": "renamed",
         "previous_path": "content/old.md"}])
    h = make_harness(PLUGIN, _args(github, fast, _token_for(mode, github_token)))
    r = h.request(body={"time_period": "day"})
    assert r.status == 200
    # GraphQL's PullRequestChangedFile has no previous path: renames carry it only on the REST path
    previous = ',previous_path="content/old.md"' if mode == "rest" else ""
    assert r.writes == [
        "gh_file,repo=influxdata/docs-v2,ref=master,pr_number=42,path=content/a\\ b\\,c\\=d.md additions=30i,"
        f'deletions=2i,change_type="modified" {_ns(merged)}',
        "gh_file,repo=influxdata/docs-v2,ref=master,pr_number=42,path=content/new.md additions=0i,deletions=10i,"
        f'change_type="renamed"{previous} {_ns(merged)}',
        'gh,repo=influxdata/docs-v2,ref=master,pr_number=42 activity_type="pr_merge",lines=42i,additions=30i,'
        'deletions=12i,author="jstirnaman",title="Fix \\"quotes\\", commas",'
        f'url="https://github.com/influxdata/docs-v2/pull/42" {_ns(merged)}'
    ]
    body = r.json()
    assert set(body) == {"status", "message", "repository", "base", "mode", "time_period", "since", "pr_count",
                         "new_count", "file_count", "api_calls", "rate_limit_remaining", "skipped", "pull_requests"}
    assert (body["file_count"], body["skipped"]) == (2, [])
    assert body["pull_requests"] == [{"number": 42, "title": 'Fix "quotes", commas', "author": "jstirnaman",
                                      "merged_at": merged.strftime("%Y-%m-%dT%H:%M:%SZ"), "lines": 42, "files": 2}]
    assert (body["repository"], body["time_period"], body["mode"]) == (REPO, "day", mode)
    assert body["since"] == (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ") or body["since"] > (
        now - timedelta(days=1, seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert body["message"] == "Wrote 1 PR merge events to database (1 merged PRs in the window)"
    assert h.query("SELECT activity_type, lines, additions, deletions, author, time FROM gh") == [
        {"activity_type": "pr_merge", "lines": 42, "additions": 30, "deletions": 12, "author": "jstirnaman",
         "time": _ns(merged)}]


def test_github_prs_two_merges_in_the_same_second_are_two_rows(github, make_harness, fast, now, mode,
                                                                 github_token):
    same = now - timedelta(minutes=30)
    github.add_pr(REPO, merged_at=same, additions=5, deletions=0)
    github.add_pr(REPO, merged_at=same, additions=7, deletions=1)
    h = make_harness(PLUGIN, _args(github, fast, _token_for(mode, github_token)))
    assert h.request().status == 200
    assert h.query("SELECT pr_number, lines, time FROM gh ORDER BY pr_number") == [
        {"pr_number": "1", "lines": 5, "time": _ns(same)}, {"pr_number": "2", "lines": 8, "time": _ns(same)}]


def test_github_prs_skips_other_branches_unmerged_and_out_of_window(github, make_harness, fast, now, mode,
                                                                   github_token):
    keep = github.add_pr(REPO, merged_at=now - timedelta(hours=3))
    github.add_pr(REPO, base="release-3.x", merged_at=now - timedelta(hours=2))
    github.add_pr(REPO, state="closed", updated_at=now - timedelta(hours=1))
    github.add_pr(REPO, state="open", updated_at=now - timedelta(hours=1))
    github.add_pr(REPO, merged_at=now - timedelta(days=3))
    # merged before the window but commented on inside it: updated_at is recent, merged_at is not
    github.add_pr(REPO, merged_at=now - timedelta(days=2), updated_at=now - timedelta(minutes=5))
    h = make_harness(PLUGIN, _args(github, fast, _token_for(mode, github_token)))
    r = h.request(body={"time_period": "day"})
    assert r.status == 200
    assert [p["number"] for p in r.json()["pull_requests"]] == [keep.number]
    assert h.query("SELECT pr_number FROM gh") == [{"pr_number": str(keep.number)}]
    if mode == "rest":
        assert github.count("detail") == 1


def test_github_prs_rest_stops_paging_once_updates_are_older_than_the_window(github, make_harness, fast, now):
    _merged(github, now, 20)
    for i in range(300):
        github.add_pr(REPO, merged_at=now - timedelta(days=3, minutes=i))
    h = make_harness(PLUGIN, _args(github, fast))
    r = h.request(body={"time_period": "day"})
    assert (r.status, r.json()["pr_count"]) == (200, 20)
    assert (github.count("list"), github.count("detail")) == (1, 20)


def test_github_prs_graphql_stops_paging_once_updates_are_older(github, make_harness, fast, now, github_token):
    _merged(github, now, 120)
    for i in range(300):
        github.add_pr(REPO, merged_at=now - timedelta(days=3, minutes=i))
    h = make_harness(PLUGIN, _args(github, fast, github_token))
    r = h.request(body={"time_period": "day"})
    assert (r.status, r.json()["pr_count"], github.count("graphql")) == (200, 120, 2)


def test_github_prs_rest_repeat_run_makes_no_detail_calls_and_no_rows(github, make_harness, fast, now):
    _merged(github, now, 130)
    h = make_harness(PLUGIN, _args(github, fast))
    assert h.request().json()["new_count"] == 130
    github.reset_counts()
    r = h.request()
    body = r.json()
    assert (r.status, body["pr_count"], body["new_count"], body["api_calls"]) == (200, 130, 0, 2)
    assert dict(github.counts) == {"list": 2}
    assert r.writes == []
    assert h.query("SELECT count(*) AS n FROM gh") == [{"n": 130}]
    assert sum(p["lines"] for p in body["pull_requests"]) == h.query("SELECT sum(lines) AS s FROM gh")[0]["s"]


def test_github_prs_rest_new_merge_between_runs_costs_one_detail(github, make_harness, fast, now):
    _merged(github, now, 10, start_minutes=30)
    h = make_harness(PLUGIN, _args(github, fast))
    h.request()
    github.add_pr(REPO, merged_at=now - timedelta(minutes=1))
    github.reset_counts()
    body = h.request().json()
    assert (body["pr_count"], body["new_count"], github.count("detail")) == (11, 1, 1)
    assert h.query("SELECT count(*) AS n FROM gh") == [{"n": 11}]


def test_github_prs_graphql_repeat_run_writes_nothing(github, make_harness, fast, now, github_token):
    _merged(github, now, 150)
    h = make_harness(PLUGIN, _args(github, fast, github_token))
    h.request()
    github.reset_counts()
    r = h.request()
    assert (r.status, r.json()["new_count"], r.writes, github.count()) == (200, 0, [], 2)
    assert h.query("SELECT count(*) AS n FROM gh") == [{"n": 150}]


def test_github_prs_scheduled_uses_a_week_and_logs_a_summary(github, make_harness, fast, now, github_token):
    github.add_pr(REPO, merged_at=now - timedelta(days=3))
    github.add_pr(REPO, merged_at=now - timedelta(days=9))
    h = make_harness(PLUGIN, _args(github, fast, github_token))
    r = h.scheduled(now)
    assert r.ok, r.error
    assert len(r.writes) == 2  # the PR and its one file
    summary = [text for level, text in r.logs if level == "INFO" and "merged PRs" in text]
    assert len(summary) == 1 and "1 merged PRs, 1 new rows, 1 file rows, 1 GitHub requests (graphql)" in summary[0]
    assert h.request().json()["pr_count"] == 0  # a request's default window is one day


def test_github_prs_since_overrides_time_period(github, make_harness, fast, now):
    github.add_pr(REPO, merged_at=now - timedelta(days=2))
    h = make_harness(PLUGIN, _args(github, fast))
    since = (now - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = h.request(body={"since": since, "time_period": "day"}).json()
    assert (body["pr_count"], body["since"], body["time_period"]) == (1, since, None)


@pytest.mark.parametrize("period, count", [("36h", 2), ("2d", 2), ("week", 3), ("1h", 0)])
def test_github_prs_time_period_forms(github, make_harness, fast, now, period, count):
    for hours in (20, 30, 100):
        github.add_pr(REPO, merged_at=now - timedelta(hours=hours))
    h = make_harness(PLUGIN, _args(github, fast))
    assert h.request(body={"time_period": period}).json()["pr_count"] == count


def test_github_prs_graphql_url_for_enterprise_server(github, make_harness, fast, now, github_token):
    github.add_pr(REPO, merged_at=now - timedelta(hours=1))
    args = _args(github, fast, github_token)
    args["github_api_url"] = github.url + "/api/v3"
    h = make_harness(PLUGIN, args)
    assert h.request().json()["pr_count"] == 1
    assert [r.path for r in github.requests] == ["/api/graphql"]


def test_github_prs_environment_settings_apply_below_trigger_arguments(github, make_harness, fast, now,
                                                                       monkeypatch):
    github.add_pr("other/repo", merged_at=now - timedelta(hours=1))
    monkeypatch.setenv("GITHUB_API_URL", github.url)
    monkeypatch.setenv("GITHUB_REPO", REPO)
    h = make_harness(PLUGIN, {**fast, "repo": "other/repo"})
    body = h.request().json()
    assert (body["repository"], body["pr_count"]) == ("other/repo", 1)


# ------------------------------------------------------------------ faults

_FAULTS = {
    "http_503": {"status": 503},
    "http_502": {"status": 502},
    "rate_429_retry_after": {"status": 429, "headers": {"retry-after": "0"}},
    "rate_403_remaining_0": {"status": 403, "headers": {"x-ratelimit-remaining": "0",
                                                          "x-ratelimit-reset": "0"}},
    "read_timeout": {"delay": 0.6},
    "malformed_json": {"malformed": True},
    "truncated_body": {"truncated": True},  # requests raises ChunkedEncodingError: neither timeout nor connect
    # JSON nested deeper than the decoder's recursion limit: RecursionError, not ValueError
    "deeply_nested_json": {"status": 200, "body": b"[" * 100_000 + b"]" * 100_000},
}


@pytest.mark.parametrize("fault", sorted(_FAULTS))
def test_github_prs_fault_is_retried_then_succeeds(github, make_harness, fast, now, mode, github_token, fault):
    _merged(github, now, 3)
    github.fail_next(**_FAULTS[fault])
    h = make_harness(PLUGIN, _args(github, fast, _token_for(mode, github_token)))
    r = h.request()
    assert r.status == 200, r.body
    assert r.json()["new_count"] == 3
    assert r.json()["api_calls"] == (2 if mode == "graphql" else 8)  # REST: list, 3 details, 3 file pages
    warnings = [text for level, text in r.logs if level == "WARN"]
    assert len(warnings) == 1 and "retry 1/3" in warnings[0]


def test_github_prs_graphql_errors_are_retried_then_succeed(github, make_harness, fast, now, github_token):
    _merged(github, now, 3)
    github.fail_next(graphql_errors=[{"type": "INTERNAL", "message": "Something went wrong"}], kind="graphql")
    h = make_harness(PLUGIN, _args(github, fast, github_token))
    r = h.request()
    assert (r.status, r.json()["new_count"], github.count("graphql")) == (200, 3, 2)


@pytest.mark.parametrize("fault", sorted(_FAULTS))
def test_github_prs_fault_exhaustion_is_a_clear_502_without_rows(github, make_harness, fast, now, mode,
                                                                  github_token, fault):
    _merged(github, now, 3)
    github.fail_next(10, **_FAULTS[fault])
    h = make_harness(PLUGIN, _args(github, fast, _token_for(mode, github_token)))
    r = h.request()
    assert r.status == 502
    body = r.json()
    assert body["status"] == "error"
    assert body["message"].startswith("GitHub collection failed: ")
    assert "gave up after 4 attempts" in body["message"] or "time budget" in body["message"]
    assert r.writes == []


def test_github_prs_graphql_errors_exhausted(github, make_harness, fast, now, github_token):
    _merged(github, now, 3)
    github.fail_next(10, graphql_errors=[{"message": "Something went wrong"}])
    h = make_harness(PLUGIN, _args(github, fast, github_token))
    r = h.request()
    assert r.status == 502
    assert r.json()["message"] == ("GitHub collection failed: GraphQL pullRequests: GraphQL errors: Something went "
                                   "wrong; gave up after 4 attempts; 0 complete rows kept")
    assert github.count("graphql") == 4


def test_github_prs_failure_mid_collection_keeps_the_complete_rows(github, make_harness, fast, now, github_token):
    _merged(github, now, 150)

    h = make_harness(PLUGIN, _args(github, fast, github_token, max_retries="1"))
    github.fail_next(10, status=500, kind="graphql", after=1)  # page 1 answers, every later request fails
    r = h.request()
    assert r.status == 502
    assert "HTTP 500; gave up after 2 attempts; 100 complete rows kept" in r.json()["message"]
    assert len(r.writes) == 200 and sum(line.startswith("gh,") for line in r.writes) == 100
    assert h.query("SELECT count(*) AS n FROM gh") == [{"n": 100}]
    assert h.query("SELECT count(*) AS n FROM gh_file") == [{"n": 100}]
    github.clear_faults()
    assert h.request().json()["new_count"] == 50  # the next run completes the set


def test_github_prs_connect_timeout_is_retried_then_a_clear_error(make_harness, fast):
    with blackhole() as url:
        h = make_harness(PLUGIN, {"repo": REPO, "github_api_url": url, **fast, "timeout_seconds": "0.2",
                                  "max_retries": "2"})
        r = h.request()
    assert r.status == 502
    assert r.json()["message"] == ("GitHub collection failed: REST list pulls: timed out after 0.2s (ConnectTimeout);"
                                   " gave up after 3 attempts; 0 complete rows kept")


def test_github_prs_retry_after_beyond_the_budget_fails_fast(github, make_harness, fast, now):
    _merged(github, now, 1)
    github.fail_next(status=429, headers={"retry-after": "120"})
    h = make_harness(PLUGIN, _args(github, fast))
    r = h.request()
    assert r.status == 502
    assert r.json()["message"] == ("GitHub collection failed: REST list pulls: rate limited (HTTP 429); a retry in "
                                   "120s would exceed the time budget of 8s; 0 complete rows kept")
    assert github.count() == 1


def test_github_prs_bad_token_is_not_retried(github, make_harness, fast, now):
    _merged(github, now, 1)
    h = make_harness(PLUGIN, _args(github, fast, "ghp_wrong"))
    r = h.request()
    assert r.status == 502
    assert r.json()["message"] == ("GitHub collection failed: GraphQL pullRequests: GitHub rejected the token "
                                   "(HTTP 401: Bad credentials); 0 complete rows kept")
    assert github.count() == 1


def test_github_prs_unknown_repository_is_a_502(github, make_harness, fast, github_token):
    github.add_repo(REPO)
    h = make_harness(PLUGIN, {**_args(github, fast, github_token), "repo": "nobody/nothing"})
    r = h.request()
    assert r.status == 502
    assert r.json()["message"] == ("GitHub collection failed: GitHub GraphQL error: Could not resolve to a "
                                   "Repository with the name 'nobody/nothing'.; 0 complete rows kept")


# ------------------------------------------------------------------ bad input and settings


@pytest.mark.parametrize("body, message", [
    (b"{not json", "request body is not valid JSON: Expecting property name enclosed in double quotes at line 1 "
                   "column 2"),
    (b"[1, 2]", "request body must be a JSON object"),
    ({"repo": 5}, "field 'repo' must be a string, got int"),
    ({"time_period": ["day"]}, "field 'time_period' must be a string, got list"),
    ({"time_period": "month"}, "invalid time_period 'month': use day, week, <N>h or <N>d (at most 366 days)"),
    ({"time_period": "0d"}, "invalid time_period '0d': use day, week, <N>h or <N>d (at most 366 days)"),
    ({"time_period": "400d"}, "invalid time_period '400d': use day, week, <N>h or <N>d (at most 366 days)"),
    ({"since": "yesterday"}, "invalid since 'yesterday': use ISO 8601, e.g. 2025-03-01T00:00:00Z"),
    ({"since": "2999-01-01T00:00:00Z"}, "invalid since '2999-01-01T00:00:00Z': it is in the future"),
    ({"repo": "no-slash"}, "invalid repo 'no-slash': use owner/name"),
    ({"base": "two words"}, "invalid base 'two words': a git branch name of at most 255 characters"),
    ({"base": "a..b"}, "invalid base 'a..b': a git branch name of at most 255 characters"),
    (b"[" * 100_000 + b"]" * 100_000, "request body is not valid JSON: nested too deeply"),
])
def test_github_prs_bad_request_body_is_400(github, make_harness, fast, body, message):
    h = make_harness(PLUGIN, _args(github, fast))
    r = h.request(body=body)
    assert (r.status, r.json()) == (400, {"status": "error", "message": message})
    assert github.count() == 0 and r.writes == []


def test_github_prs_bad_trigger_arguments_are_400(github, make_harness, fast):
    h = make_harness(PLUGIN, _args(github, fast, max_retries="many"))
    r = h.request()
    assert (r.status, r.json()["message"]) == (400, "max_retries must be a number, got 'many'")
    h2 = make_harness(PLUGIN, {"github_api_url": "ftp://example"})
    assert h2.request().json()["message"] == "invalid github_api_url 'ftp://example': must start with http:// or https://"


def test_github_prs_missing_token_file_is_400(github, make_harness, fast, tmp_path):
    h = make_harness(PLUGIN, _args(github, fast, github_token_file=str(tmp_path / "absent")))
    r = h.request()
    assert r.status == 400
    assert r.json()["message"] == f"github_token_file: cannot read {tmp_path / 'absent'} (No such file or directory)"


def test_github_prs_empty_token_file_means_no_token(github, make_harness, fast, now, tmp_path):
    # `make secrets` and Compose mount empty placeholders: an empty file is "no token", so REST is used.
    token_file = tmp_path / "github_token"
    token_file.write_text("\n")
    _merged(github, now, 2)
    h = make_harness(PLUGIN, _args(github, fast, github_token_file=str(token_file)))
    r = h.request()
    assert r.status == 200 and r.json()["pr_count"] == 2
    assert github.count("graphql") == 0 and github.count("list") == 1


@pytest.mark.parametrize("key", ["github_token", "token", "access_token"])
def test_github_prs_token_in_query_string_is_refused(github, make_harness, fast, github_token, exposed, key):
    h = make_harness(PLUGIN, _args(github, fast))
    r = h.request(query={key: github_token, "repo": REPO})
    assert r.status == 400
    message = r.json()["message"]
    assert message.startswith(f"do not send a token in the query string ({key})")
    assert '"github_token"' in message and "github_token_file" in message and "GITHUB_TOKEN_FILE" in message
    assert github.count() == 0
    assert github_token not in exposed(r, h)


def test_github_prs_query_string_settings_are_accepted(github, make_harness, fast, now):
    github.add_pr(REPO, base="main", merged_at=now - timedelta(hours=30))
    h = make_harness(PLUGIN, {"github_api_url": github.url, **fast})
    body = h.request(query={"repo": REPO, "base": "main", "time_period": "2d"}).json()
    assert (body["pr_count"], body["base"]) == (1, "main")


# ------------------------------------------------------------------ secrets


def test_github_prs_token_from_file_beats_environment_token(github, make_harness, fast, now, tmp_path,
                                                           github_token, monkeypatch):
    github.add_pr(REPO, merged_at=now - timedelta(hours=1))
    token_file = tmp_path / "github_token"
    token_file.write_text(github_token + "\n")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_from_environment")
    h = make_harness(PLUGIN, _args(github, fast, github_token_file=str(token_file)))
    assert h.request().json()["mode"] == "graphql"
    assert github.auth_headers() == [f"Bearer {github_token}"]


def test_github_prs_env_token_file_is_used(github, make_harness, fast, now, tmp_path, github_token, monkeypatch):
    github.add_pr(REPO, merged_at=now - timedelta(hours=1))
    token_file = tmp_path / "tok"
    token_file.write_text(github_token)
    monkeypatch.setenv("GITHUB_TOKEN_FILE", str(token_file))
    h = make_harness(PLUGIN, _args(github, fast))
    assert h.request().json()["pr_count"] == 1
    assert github.auth_headers() == [f"Bearer {github_token}"]


@pytest.mark.parametrize("where", ["body", "argument"])
def test_github_prs_token_never_appears_in_logs_responses_or_rows(github, make_harness, fast, now, github_token,
                                                                  exposed, where):
    _merged(github, now, 2)
    args = _args(github, fast, github_token if where == "argument" else None)
    h = make_harness(PLUGIN, args)
    body = {"github_token": github_token} if where == "body" else {}
    github.fail_next(status=503, body={"message": f"echoing {github_token}"})
    ok = h.request(body=body)
    assert ok.status == 200
    github.fail_next(10, status=500, body={"message": f"server says {github_token}"})
    failed = h.request(body={**body, "time_period": "2d"})
    assert failed.status == 502
    github.clear_faults()
    bad = h.request(body={**body, "time_period": f"x{github_token}"})
    assert bad.status == 400
    for result in (ok, failed, bad):
        assert github_token not in exposed(result, h)
    assert "***" in bad.json()["message"]
    assert all(github_token not in json.dumps(row) for row in h.query("SELECT * FROM gh"))


def test_github_prs_scheduled_bad_configuration_logs_and_returns(make_harness):
    h = make_harness(PLUGIN, {"time_period": "fortnight"})
    r = h.scheduled(datetime.now(UTC))
    assert r.ok and r.writes == []
    errors = [text for level, text in r.logs if level == "ERROR"]
    assert len(errors) == 1
    assert errors[0].endswith("bad configuration: invalid time_period 'fortnight': use day, week, <N>h or <N>d "
                              "(at most 366 days)")
    assert errors[0].startswith("[") and errors[0][9] == "]"  # task id prefix


def test_github_prs_unresolvable_host_is_a_fast_502_naming_the_host(make_harness, fast):
    """Offline (or a mistyped host) the name does not resolve: no retries, one 502 that names the host."""
    args = {"repo": REPO, "github_api_url": "http://github.invalid:8443", **fast, "max_retries": "4",
            "backoff_seconds": "1"}
    h = make_harness(PLUGIN, args)
    started = time.monotonic()
    r = h.request()
    assert time.monotonic() - started < 5
    assert r.status == 502
    message = r.json()["message"]
    assert "cannot reach github.invalid:8443 (name not resolved)" in message, message
    assert not any("retry" in text for _level, text in h.logs), h.logs


def test_github_prs_refused_connection_is_retried_and_names_the_host(make_harness, fast):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    h = make_harness(PLUGIN, {"repo": REPO, "github_api_url": f"http://127.0.0.1:{port}", **fast})
    r = h.request()
    assert r.status == 502
    assert f"connection to 127.0.0.1:{port} failed; gave up after" in r.json()["message"], r.json()
