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
