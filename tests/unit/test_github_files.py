"""plugins/github_prs.py: gh_file rows (files per PR), request counts, GraphQL rate limits, several repositories.

Request counts (issue 11): with a token ceil(PRs/100) plus one per further 100 files of a PR with more than 100,
first and repeat alike; without a token list pages plus, per PR not yet recorded, 1 detail and ceil(files/100)
file pages, and only the list pages on a repeat.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta

import pytest

PLUGIN = "github_prs.py"
REPO = "influxdata/docs-v2"
OTHER = "influxdata/telegraf"


def _args(github, fast, token=None, **extra):
    """Plugin arguments; a read timeout of 5 s (not FAST's 0.3 s): these tests count requests exactly, and a
    retry after a timeout on a loaded machine would add one. No test here relies on a timeout."""
    args = {"repo": REPO, "github_api_url": github.url, **fast, "timeout_seconds": "5", **extra}
    if token:
        args["github_token"] = token
    return args


def _files(count, prefix="content/page"):
    return [{"path": f"{prefix}-{i}.md", "additions": i % 7, "deletions": i % 3} for i in range(count)]


@pytest.fixture(params=["rest", "graphql"])
def mode(request):
    return request.param


def _token(mode, github_token):
    return github_token if mode == "graphql" else None


def _expected_calls(mode, file_counts, *, repeat=False):
    """The issue's formula for PRs with these file counts, all inside one list/GraphQL page size of 100."""
    pages = math.ceil(len(file_counts) / 100)
    if mode == "graphql":
        return pages + sum(max(0, math.ceil(n / 100) - 1) for n in file_counts)
    if repeat:
        return pages
    return pages + len(file_counts) + sum(math.ceil(n / 100) for n in file_counts)


def test_github_files_pr_with_250_files_first_and_repeat(github, make_harness, fast, now, mode, github_token):
    github.add_pr(REPO, number=7, merged_at=now - timedelta(hours=1), files=_files(250))
    github.add_pr(REPO, number=8, merged_at=now - timedelta(hours=2), files=_files(3, "data/x"))
    h = make_harness(PLUGIN, _args(github, fast, _token(mode, github_token)))
    first = h.request().json()
    assert first["api_calls"] == github.count() == _expected_calls(mode, [250, 3])
    assert (first["new_count"], first["file_count"]) == (2, 253)
    if mode == "graphql":
        assert dict(github.counts) == {"graphql": 3}  # 1 page of PRs + 2 follow-ups for files 101-250 of #7
    else:
        assert dict(github.counts) == {"list": 1, "detail": 2, "files": 4}
    rows = h.query("SELECT pr_number, count(*) AS n, sum(additions) AS a, sum(deletions) AS d FROM gh_file "
                   "GROUP BY pr_number ORDER BY pr_number")
    assert rows == [{"pr_number": "7", "n": 250, "a": sum(i % 7 for i in range(250)), "d": sum(i % 3 for i in range(250))},
                    {"pr_number": "8", "n": 3, "a": 3, "d": 3}]
    assert h.query("SELECT count(DISTINCT path) AS n FROM gh_file WHERE pr_number = '7'") == [{"n": 250}]
    github.reset_counts()
    repeat = h.request().json()
    assert repeat["api_calls"] == github.count() == _expected_calls(mode, [250, 3], repeat=True)
    assert (repeat["new_count"], repeat["file_count"], repeat["pr_count"]) == (0, 0, 2)
    assert [p["files"] for p in repeat["pull_requests"]] == [250, 3]
    assert h.query("SELECT count(*) AS n FROM gh_file") == [{"n": 253}]  # nothing duplicated


def test_github_files_request_counts_follow_the_formula(github, make_harness, fast, now, mode, github_token):
    counts = [1] * 145 + [0, 100, 101, 250, 320]
    for i, n in enumerate(counts):
        github.add_pr(REPO, merged_at=now - timedelta(minutes=5 + i), files=_files(n, f"c/{i}"))
    h = make_harness(PLUGIN, _args(github, fast, _token(mode, github_token)))
    first = h.request().json()
    pages = 2  # 150 PRs, 100 per page
    if mode == "graphql":
        expected = pages + (0 + 0 + 1 + 2 + 3)
    else:
        expected = pages + 150 + (145 + 0 + 1 + 2 + 3 + 4)
    assert first["api_calls"] == github.count() == expected == _expected_calls(mode, counts)
    assert first["file_count"] == sum(counts)
    github.reset_counts()
    repeat = h.request().json()
    assert repeat["api_calls"] == github.count() == (expected if mode == "graphql" else pages)
    assert h.query("SELECT count(*) AS n FROM gh_file") == [{"n": sum(counts)}]


def test_github_files_change_types_and_renames(github, make_harness, fast, now, mode, github_token):
    github.add_pr(REPO, number=3, merged_at=now - timedelta(hours=1), files=[
        {"path": "a.md", "additions": 5, "status": "added"},
        {"path": "b.md", "deletions": 4, "status": "removed"},
        {"path": "c.md", "additions": 1, "deletions": 1, "status": "modified"},
        {"path": "docs/new.md", "additions": 2, "status": "renamed", "previous_path": "docs/old.md"},
        {"path": "d.md", "status": "copied", "previous_path": "a.md"},
        {"path": "run.sh", "status": "changed"},
    ])
    h = make_harness(PLUGIN, _args(github, fast, _token(mode, github_token)))
    assert h.request().status == 200
    columns = ("path", "change_type", "previous_path", "additions", "deletions")
    rows = [{c: row.get(c) for c in columns} for row in h.query("SELECT * FROM gh_file ORDER BY path")]
    renamed_from = "docs/old.md" if mode == "rest" else None  # GraphQL has no previous path
    assert rows == [
        {"path": "a.md", "change_type": "added", "previous_path": None, "additions": 5, "deletions": 0},
        {"path": "b.md", "change_type": "removed", "previous_path": None, "additions": 0, "deletions": 4},
        {"path": "c.md", "change_type": "modified", "previous_path": None, "additions": 1, "deletions": 1},
        {"path": "d.md", "change_type": "copied", "previous_path": None, "additions": 0, "deletions": 0},
        {"path": "docs/new.md", "change_type": "renamed", "previous_path": renamed_from, "additions": 2,
         "deletions": 0},
        {"path": "run.sh", "change_type": "changed", "previous_path": None, "additions": 0, "deletions": 0},
    ]


def test_github_files_3000_file_cap_is_logged(github, make_harness, fast, now, mode, github_token):
    github.add_pr(REPO, number=9, merged_at=now - timedelta(hours=1), files=[f"f/{i}" for i in range(3010)])
    h = make_harness(PLUGIN, _args(github, fast, _token(mode, github_token), budget_seconds="30"))
    r = h.request()
    assert r.status == 200, r.body
    assert r.json()["file_count"] == 3000
    warnings = [text for level, text in r.logs if level == "WARN"]
    assert len(warnings) == 1 and "PR #9 changed 3010 files; GitHub lists only 3000 (at most 3,000)" in warnings[0]
    assert github.count() == (30 if mode == "graphql" else 32)  # 1 + 29 follow-ups; list + detail + 30 pages
    github.set_files(REPO, 9, [f"g/{i}" for i in range(3000)])  # exactly 3,000: all listed, nothing to say
    h2 = make_harness(PLUGIN, _args(github, fast, _token(mode, github_token), budget_seconds="30"))
    r = h2.request()
    assert r.json()["file_count"] == 3000 and not [t for lv, t in r.logs if lv == "WARN"]


def test_github_files_rest_fetches_files_of_prs_recorded_before_gh_file_existed(github, make_harness, fast, now):
    merged = now - timedelta(hours=1)
    github.add_pr(REPO, number=5, merged_at=merged, files=_files(2))
    github.add_pr(REPO, number=6, merged_at=merged, files=[])  # no files, no lines: nothing to fetch again
    h = make_harness(PLUGIN, _args(github, fast))
    ns = int(merged.timestamp()) * 10**9
    h.write_lp("\n".join(
        f'gh,repo={REPO},ref=master,pr_number={n} activity_type="pr_merge",lines={lines}i,additions={lines}i,'
        f'deletions=0i,author="a",title="t",url="u" {ns}' for n, lines in ((5, 4), (6, 0))))
    body = h.request().json()
    assert (body["new_count"], body["file_count"]) == (0, 2)
    assert dict(github.counts) == {"list": 1, "detail": 1, "files": 1}
    github.reset_counts()
    assert h.request().json()["api_calls"] == 1
    assert h.query("SELECT count(*) AS n FROM gh") == [{"n": 2}]


def test_github_files_follow_up_failure_writes_only_complete_prs(github, make_harness, fast, now, github_token):
    github.add_pr(REPO, number=1, merged_at=now - timedelta(hours=1), files=_files(250))
    github.add_pr(REPO, number=2, merged_at=now - timedelta(hours=2), files=_files(2))
    h = make_harness(PLUGIN, _args(github, fast, github_token, max_retries="0"))
    github.fail_next(5, status=500, kind="graphql", after=1)  # the PR page answers, its follow-ups fail
    r = h.request()
    assert r.status == 502 and "GraphQL files of #1: HTTP 500" in r.json()["message"]
    assert h.query("SELECT pr_number FROM gh") == [{"pr_number": "2"}]
    assert h.query("SELECT count(*) AS n FROM gh_file") == [{"n": 2}]
    github.clear_faults()
    assert h.request().json()["file_count"] == 250  # the next run completes #1
    assert h.query("SELECT count(*) AS n FROM gh_file") == [{"n": 252}]


def test_github_files_unstorable_paths_are_skipped_and_reported(github, make_harness, fast, now, mode,
                                                                 github_token):
    github.add_pr(REPO, number=4, merged_at=now - timedelta(hours=1),
                  files=["ok.md", "line\nbreak.md", "trailing\\", "tab\there.md"])
    h = make_harness(PLUGIN, _args(github, fast, _token(mode, github_token)))
    r = h.request()
    body = r.json()
    assert (r.status, body["new_count"], body["file_count"]) == (200, 1, 1)
    assert [(s["table"], s["path"]) for s in body["skipped"]] == [
        ("gh_file", "line\nbreak.md"), ("gh_file", "trailing\\"), ("gh_file", "tab\there.md")]
    assert h.query("SELECT path FROM gh_file") == [{"path": "ok.md"}]
    assert not [text for level, text in h.logs if level == "ERROR"]


# ------------------------------------------------------------------ rate limits


def test_github_files_graphql_rate_limited_waits_for_the_reset_inside_the_budget(github, make_harness, fast, now,
                                                                                  github_token):
    github.add_pr(REPO, merged_at=now - timedelta(hours=1))
    github.exhaust_rate_limit(reset_in=1)
    h = make_harness(PLUGIN, _args(github, fast, github_token))
    started = time.monotonic()
    r = h.request()
    assert r.status == 200, r.body
    assert r.json()["new_count"] == 1 and github.count("graphql") == 2
    assert 0.5 <= time.monotonic() - started < 8  # waited for the reset (about 1-2 s), within the budget
    warnings = [text for level, text in r.logs if level == "WARN"]
    assert len(warnings) == 1 and "GraphQL rate limit exhausted (RATE_LIMITED); retry 1/3 in" in warnings[0]


def test_github_files_rate_limit_beyond_the_budget_fails_at_once(github, make_harness, fast, now, mode,
                                                                 github_token):
    github.add_pr(REPO, merged_at=now - timedelta(hours=1))
    reset = github.exhaust_rate_limit(reset_in=3600)
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(reset))
    h = make_harness(PLUGIN, _args(github, fast, _token(mode, github_token)))
    started = time.monotonic()
    r = h.request()
    assert time.monotonic() - started < 6 and github.count() == 1  # no wait for the reset, no retry
    assert r.status == 502
    what = ("GraphQL pullRequests: GraphQL rate limit exhausted (RATE_LIMITED)" if mode == "graphql"
            else "REST list pulls: rate limited (HTTP 403)")
    message = r.json()["message"]
    assert message.startswith(f"GitHub collection failed: {what}; GitHub's rate limit resets at {when} (in ")
    assert message.endswith(f"s), after this run's time budget of 8s: collect again after {when}; "
                            "0 complete rows kept")


def test_github_files_graphql_secondary_rate_limit_follows_retry_after(github, make_harness, fast, now,
                                                                       github_token):
    github.add_pr(REPO, merged_at=now - timedelta(hours=1))
    secondary = [{"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
                             "again."}]
    github.fail_next(graphql_errors=secondary, headers={"retry-after": "0"}, kind="graphql")
    h = make_harness(PLUGIN, _args(github, fast, github_token))
    r = h.request()
    assert (r.status, github.count("graphql")) == (200, 2)
    assert [t for lv, t in r.logs if lv == "WARN"][0].endswith("GraphQL pullRequests: GraphQL secondary rate limit; "
                                                               "retry 1/3 in 0.01s")
    github.fail_next(graphql_errors=secondary, kind="graphql")  # no retry-after, no reset: at least a minute
    r = h.request()
    assert r.status == 502 and "GraphQL secondary rate limit; a retry in 60s would exceed the time budget of 8s" \
        in r.json()["message"]


# ------------------------------------------------------------------ several repositories


def test_github_files_repos_argument_collects_every_repository(github, make_harness, fast, now, github_token):
    github.add_pr(REPO, merged_at=now - timedelta(hours=1), files=_files(2))
    github.add_pr(OTHER, merged_at=now - timedelta(hours=2), base="main", files=_files(3))
    github.add_pr(OTHER, merged_at=now - timedelta(hours=2), base="master", files=_files(4))  # not configured
    args = _args(github, fast, github_token, repos=f"{REPO}@master  {OTHER}@main\n", repo="ignored/x")
    h = make_harness(PLUGIN, args)
    r = h.scheduled(now)
    assert r.ok, r.error
    summaries = [text for level, text in r.logs if level == "INFO" and "merged PRs" in text]
    assert len(summaries) == 2
    assert summaries[0].split("] ", 1)[1].startswith(f"{REPO}@master since ")
    assert summaries[1].split("] ", 1)[1].startswith(f"{OTHER}@main since ")
    assert h.query("SELECT repo, ref, count(*) AS n FROM gh_file GROUP BY repo, ref ORDER BY repo") == [
        {"repo": REPO, "ref": "master", "n": 2}, {"repo": OTHER, "ref": "main", "n": 3}]


def test_github_files_request_without_repo_answers_per_repository(github, make_harness, fast, now, github_token):
    github.add_pr(REPO, merged_at=now - timedelta(hours=1), files=_files(2))
    github.add_pr(OTHER, merged_at=now - timedelta(hours=2), base="main", files=_files(3))
    h = make_harness(PLUGIN, _args(github, fast, github_token, repos=f"{REPO}@master {OTHER}@main"))
    r = h.request()
    assert r.status == 200, r.body
    body = r.json()
    assert set(body) == {"status", "message", "mode", "time_period", "since", "pr_count", "new_count",
                         "file_count", "api_calls", "repositories"}
    assert (body["status"], body["pr_count"], body["new_count"], body["file_count"], body["api_calls"]) == (
        "success", 2, 2, 5, 2)
    assert body["message"] == ("Wrote 2 PR merge events to database (2 merged PRs in the window) from 2 "
                               "repositories")
    assert [(x["repository"], x["base"], x["status"], x["file_count"]) for x in body["repositories"]] == [
        (REPO, "master", "success", 2), (OTHER, "main", "success", 3)]
    assert set(body["repositories"][0]) == {"status", "repository", "base", "mode", "time_period", "since",
                                            "pr_count", "new_count", "file_count", "api_calls",
                                            "rate_limit_remaining", "skipped", "pull_requests"}


def test_github_files_request_with_repo_collects_that_one_as_today(github, make_harness, fast, now, github_token):
    github.add_pr(OTHER, merged_at=now - timedelta(hours=2), base="main")
    github.add_pr(REPO, merged_at=now - timedelta(hours=2))
    h = make_harness(PLUGIN, _args(github, fast, github_token, repos=f"{REPO}@master {OTHER}@main"))
    body = h.request(body={"repo": OTHER}).json()
    assert (body["status"], body["repository"], body["base"], body["new_count"]) == ("success", OTHER, "main", 1)
    assert "repositories" not in body
    body = h.request(body={"repo": OTHER, "base": "master"}).json()
    assert (body["base"], body["pr_count"]) == ("master", 0)
    assert h.query("SELECT repo FROM gh") == [{"repo": OTHER}]


def test_github_files_one_failing_repository_fails_the_request_not_the_others(github, make_harness, fast, now,
                                                                                github_token):
    github.add_pr(REPO, merged_at=now - timedelta(hours=1))
    h = make_harness(PLUGIN, _args(github, fast, github_token, repos=f"missing/repo@main {REPO}@master"))
    r = h.request()
    assert r.status == 502
    body = r.json()
    assert body["message"].startswith("GitHub collection failed for missing/repo@main; Wrote 1 PR merge events")
    first, second = body["repositories"]
    assert (first["status"], second["status"], second["new_count"]) == ("error", "success", 1)
    assert "Could not resolve to a Repository" in first["message"]


def test_github_files_exhausted_rate_limit_skips_the_remaining_repositories(github, make_harness, fast, now,
                                                                             github_token):
    github.add_pr(REPO, merged_at=now - timedelta(hours=1))
    github.exhaust_rate_limit(reset_in=3600)
    h = make_harness(PLUGIN, _args(github, fast, github_token, repos=f"{REPO}@master {OTHER}@main"))
    body = h.request().json()
    assert github.count() == 1
    assert [x["status"] for x in body["repositories"]] == ["error", "error"]
    assert "not asked: GitHub's rate limit is exhausted until " in body["repositories"][1]["message"]


@pytest.mark.parametrize(("repos", "body", "message"), [
    ("influxdata/docs-v2", {}, "invalid repos entry 'influxdata/docs-v2': use owner/name@base"),
    ("a/b@main a/b@main", {}, "repos lists a/b@main twice"),
    ("a/b@main c/d@main", {"base": "main"}, "base without repo: several repositories are configured"),
    ("bad repo@main", {}, "invalid repos entry 'bad': use owner/name@base"),
])
def test_github_files_bad_repos_is_a_400(github, make_harness, fast, repos, body, message):
    h = make_harness(PLUGIN, _args(github, fast, repos=repos))
    r = h.request(body=body)
    assert r.status == 400 and r.json()["message"].startswith(message), r.body
    assert github.count() == 0
