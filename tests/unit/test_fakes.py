"""The loopback fakes themselves: pagination, auth, faults, the demo entry point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from tests.fakes.base import blackhole
from tests.fakes.github import FakeGitHub

ROOT = Path(__file__).resolve().parents[2]
REPO = "o/r"


@pytest.fixture
def populated(github, now):
    for i in range(7):
        github.add_pr(REPO, merged_at=now - timedelta(hours=i), number=i + 1)
    github.add_pr(REPO, base="dev", merged_at=now, number=8)
    github.add_pr(REPO, state="open", updated_at=now, number=9)
    return github


def test_fakes_github_list_paginates_with_link_headers(populated):
    url = f"{populated.url}/repos/{REPO}/pulls"
    params = {"state": "closed", "base": "master", "sort": "updated", "direction": "desc", "per_page": "3"}
    first = requests.get(url, params=params, timeout=5)
    assert [p["number"] for p in first.json()] == [1, 2, 3]
    assert set(first.links) == {"next", "last"}
    assert "page=3" in first.links["last"]["url"] and "per_page=3" in first.links["next"]["url"]
    numbers = [p["number"] for p in first.json()]
    nxt = first.links["next"]["url"]
    while nxt:
        page = requests.get(nxt, timeout=5)
        numbers += [p["number"] for p in page.json()]
        nxt = page.links.get("next", {}).get("url")
    assert numbers == [1, 2, 3, 4, 5, 6, 7]
    assert populated.count("list") == 3
    asc = requests.get(url, params={"state": "closed", "sort": "updated"}, timeout=5)
    assert [p["number"] for p in asc.json()] == [7, 6, 5, 4, 3, 2, 1, 8]  # direction defaults to asc
    assert "link" not in {k.lower() for k in asc.headers}
    assert [p["number"] for p in requests.get(url, timeout=5).json()] == [9]  # state defaults to open


def test_fakes_github_detail_and_not_found(populated):
    detail = requests.get(f"{populated.url}/repos/{REPO}/pulls/3", timeout=5).json()
    assert (detail["additions"], detail["deletions"], detail["merged"]) == (10, 2, True)
    missing = requests.get(f"{populated.url}/repos/{REPO}/pulls/99", timeout=5)
    assert (missing.status_code, missing.json()["message"]) == (404, "Not Found")
    assert populated.count("detail") == 2


def test_fakes_github_auth_and_graphql_cursors(populated, github_token):
    query = ("query($o: String!, $n: String!, $c: String) { rateLimit { remaining } repository(owner: $o, name: $n)"
             " { pullRequests(first: 4, after: $c, states: [MERGED], baseRefName: \"master\", orderBy: {field: "
             "UPDATED_AT, direction: DESC}) { pageInfo { hasNextPage endCursor } nodes { number } } } }")
    url = f"{populated.url}/graphql"
    assert requests.post(url, json={"query": query}, timeout=5).status_code == 401
    bad = requests.post(url, json={"query": query}, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert (bad.status_code, bad.json()["message"]) == (401, "Bad credentials")
    headers = {"Authorization": f"bearer {github_token}"}
    page1 = requests.post(url, json={"query": query, "variables": {"o": "o", "n": "r"}}, headers=headers,
                          timeout=5).json()["data"]
    conn = page1["repository"]["pullRequests"]
    assert [n["number"] for n in conn["nodes"]] == [1, 2, 3, 4] and conn["pageInfo"]["hasNextPage"] is True
    page2 = requests.post(url, json={"query": query, "variables": {"o": "o", "n": "r",
                                                                   "c": conn["pageInfo"]["endCursor"]}},
                          headers=headers, timeout=5).json()["data"]["repository"]["pullRequests"]
    assert [n["number"] for n in page2["nodes"]] == [5, 6, 7] and page2["pageInfo"]["hasNextPage"] is False
    assert isinstance(page1["rateLimit"]["remaining"], int)
    assert populated.auth_headers()[-1] == f"bearer {github_token}"


def test_fakes_github_files_rest_pages_renames_and_3000_cap(github):
    files = [{"path": f"content/p{i}.md", "additions": i, "deletions": 1} for i in range(249)]
    files.append({"path": "content/new.md", "additions": 0, "deletions": 0, "status": "renamed",
                  "previous_path": "content/old.md"})
    pr = github.add_pr(REPO, number=5, files=files)
    assert (pr.additions, pr.deletions) == (sum(range(249)), 249)
    url = f"{github.url}/repos/{REPO}/pulls/5/files"
    listed, nxt, pages = [], url + "?per_page=100", 0
    while nxt:
        page = requests.get(nxt, timeout=5)
        listed += page.json()
        pages += 1
        nxt = page.links.get("next", {}).get("url")
    assert (pages, len(listed), github.count("files")) == (3, 250, 3)
    # Link URLs name the host the client asked for (a container reaches the fake by another name)
    other = requests.get(url + "?per_page=100", headers={"Host": f"fakes.internal:{github.url.rsplit(':', 1)[1]}"},
                         timeout=5)
    assert other.links["next"]["url"].startswith(f"http://fakes.internal:{github.url.rsplit(':', 1)[1]}/repos/")
    assert listed[0]["filename"] == "content/p0.md" and "previous_filename" not in listed[0]
    assert {k: listed[-1][k] for k in ("filename", "status", "previous_filename", "changes")} == {
        "filename": "content/new.md", "status": "renamed", "previous_filename": "content/old.md", "changes": 0}
    assert requests.get(f"{github.url}/repos/{REPO}/pulls/5", timeout=5).json()["changed_files"] == 250
    default = github.add_pr(REPO, number=6, additions=3, deletions=4)
    assert requests.get(f"{github.url}/repos/{REPO}/pulls/6/files", timeout=5).json()[0] | {"sha": ""} == {
        "sha": "", "filename": "content/pr-6.md", "status": "modified", "additions": 3, "deletions": 4,
        "changes": 7, "blob_url": "https://github.com/o/r/blob/head/content/pr-6.md"}
    assert default.files is None
    github.set_files(REPO, 6, [f"f{i}" for i in range(3005)])
    last = requests.get(url.replace("/5/", "/6/") + "?per_page=100&page=30", timeout=5)
    assert len(last.json()) == 100 and "next" not in last.links  # GitHub lists at most 3,000 files


def test_fakes_github_graphql_files_nested_and_follow_up_pages(github, github_token, now):
    github.add_pr(REPO, number=1, merged_at=now, files=[f"a/{i}.md" for i in range(150)])
    github.add_pr(REPO, number=2, merged_at=now - timedelta(hours=1),
                  files=[{"path": "b.md", "status": "removed", "deletions": 9}])
    headers = {"Authorization": f"Bearer {github_token}"}
    url = f"{github.url}/graphql"
    listing = ("query($o: String!, $n: String!) { repository(owner: $o, name: $n) { pullRequests(first: 10, "
               "states: [MERGED], orderBy: {field: UPDATED_AT, direction: DESC}) { nodes { number files(first: 100)"
               " { totalCount pageInfo { hasNextPage endCursor } nodes { path additions deletions changeType } } } "
               "} } }")
    nodes = requests.post(url, json={"query": listing, "variables": {"o": "o", "n": "r"}}, headers=headers,
                          timeout=5).json()["data"]["repository"]["pullRequests"]["nodes"]
    first, second = nodes
    assert (len(first["files"]["nodes"]), first["files"]["totalCount"], first["files"]["pageInfo"]["hasNextPage"]) \
        == (100, 150, True)
    assert second["files"]["nodes"] == [{"path": "b.md", "additions": 0, "deletions": 9, "changeType": "DELETED"}]
    follow = ("query($o: String!, $n: String!, $num: Int!, $c: String) { repository(owner: $o, name: $n) { "
              "pullRequest(number: $num) { files(first: 100, after: $c) { pageInfo { hasNextPage endCursor } "
              "nodes { path } } } } }")
    rest = requests.post(url, json={"query": follow, "variables": {"o": "o", "n": "r", "num": 1, "c": first[
        "files"]["pageInfo"]["endCursor"]}}, headers=headers, timeout=5).json()["data"]["repository"]["pullRequest"]
    assert [n["path"] for n in rest["files"]["nodes"]] == [f"a/{i}.md" for i in range(100, 150)]
    assert rest["files"]["pageInfo"]["hasNextPage"] is False


def test_fakes_github_rate_limit_rest_403_and_graphql_rate_limited(github, github_token):
    github.add_pr(REPO, number=1)
    reset = github.exhaust_rate_limit(reset_in=30)
    rest = requests.get(f"{github.url}/repos/{REPO}/pulls", timeout=5)
    assert rest.status_code == 403 and "rate limit exceeded" in rest.json()["message"]
    assert (rest.headers["x-ratelimit-remaining"], rest.headers["x-ratelimit-reset"]) == ("0", str(reset))
    gql = requests.post(f"{github.url}/graphql", json={"query": "{ rateLimit { remaining } }"},
                        headers={"Authorization": f"Bearer {github_token}"}, timeout=5)
    assert gql.status_code == 200 and gql.json()["errors"][0]["type"] == "RATE_LIMITED"
    assert gql.headers["x-ratelimit-remaining"] == "0"
    github.exhaust_rate_limit(reset_in=-1)  # the reset time has passed: a fresh window
    assert requests.get(f"{github.url}/repos/{REPO}/pulls", timeout=5).status_code == 200


def test_fakes_faults_status_after_kind_and_delay(populated):
    url = f"{populated.url}/repos/{REPO}/pulls"
    populated.fail_next(2, status=429, headers={"retry-after": "7"}, kind="list", after=1)
    codes = [requests.get(url, timeout=5).status_code for _ in range(4)]
    assert codes == [200, 429, 429, 200]
    populated.fail_next(malformed=True)
    with pytest.raises(ValueError):
        requests.get(url, timeout=5).json()
    populated.fail_next(delay=1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(url, timeout=(1, 0.2))
    assert populated.count("list") == 6


def test_fakes_kapa_pages_and_key(kapa, kapa_key):
    for i in range(5):
        kapa.add_source("p", f"S{i}")
    url = f"{kapa.url}/ingestion/v1/projects/p/sources/"
    page = requests.get(url, params={"page": 2, "page_size": 2}, headers={"X-API-KEY": kapa_key}, timeout=5).json()
    assert (page["count"], [s["name"] for s in page["results"]]) == (5, ["S2", "S3"])
    past = requests.get(url, params={"page": 4, "page_size": 2}, headers={"X-API-KEY": kapa_key}, timeout=5)
    assert (past.status_code, past.json()) == (404, {"detail": "Invalid page."})
    assert requests.get(url, headers={"X-API-KEY": "wrong"}, timeout=5).status_code == 401
    assert kapa.auth_headers("x-api-key") == [kapa_key, kapa_key, "wrong"]


def test_fakes_webhook_records_posts(webhook):
    assert requests.post(webhook.url + "/hook", json={"text": "hi"}, timeout=5).text == "ok"
    assert webhook.posts == [{"text": "hi"}]


def test_fakes_blackhole_times_out_connects():
    with blackhole() as url:
        started = time.monotonic()
        with pytest.raises(requests.exceptions.ConnectTimeout):
            requests.get(url, timeout=(0.2, 0.2))
        assert time.monotonic() - started < 2


def test_fakes_bind_host_argument():
    with FakeGitHub(host="127.0.0.1", port=0) as fake:
        assert fake.url.startswith("http://127.0.0.1:")


def test_fakes_demo_entry_point_serves_sample_data_until_sigterm():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes", "--github-port", "0", "--kapa-port", "0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        urls = {}
        deadline = time.monotonic() + 20
        while len(urls) < 2 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            key, _, value = line.strip().partition("=")
            urls[key] = value
        assert set(urls) == {"GITHUB_API_URL", "KAPA_API_URL"}
        pulls = requests.get(f"{urls['GITHUB_API_URL']}/repos/influxdata/docs-v2/pulls",
                             params={"state": "closed", "base": "master", "per_page": 100},
                             headers={"Authorization": "Bearer anything"}, timeout=5).json()
        assert sum(1 for p in pulls if p["merged_at"]) == 30
        assert sum(1 for p in pulls if not p["merged_at"]) == 5
        sources = requests.get(f"{urls['KAPA_API_URL']}/ingestion/v1/projects/demo-project/sources/",
                               headers={"X-API-KEY": "any"}, timeout=5).json()["results"]
        by_name = {s["name"]: s for s in sources}
        assert by_name["Documentation"]["ingested_at"] is not None
        assert any(s["ingested_at"] is None for s in sources)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()
        proc.stderr.close()
