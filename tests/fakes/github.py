"""FakeGitHub: the slice of the GitHub REST and GraphQL APIs that plugins/github_prs.py uses.

REST (also under an `/api/v3` prefix, as GitHub Enterprise Server):
  GET /repos/{owner}/{repo}/pulls          state, base, sort, direction, per_page (<=100, default 30), page;
                                           Link header (first/prev/next/last) when there is more than one page
  GET /repos/{owner}/{repo}/pulls/{number} the full pull-request object (additions, deletions, merged, ...)
GraphQL: POST /graphql (and /api/graphql) answering `rateLimit` and
  `repository(owner,name){pullRequests(first,after,states,baseRefName,orderBy){pageInfo nodes}}`.

Request kinds counted: "list", "detail", "graphql", "other".
Auth: a request carrying `Authorization` must carry `Bearer <token>` or `token <token>` for the configured
token (401 "Bad credentials" otherwise); REST without Authorization is allowed (a public repo); GraphQL
without a valid token is 401. `accept_any_token=True` (demo mode) accepts any non-empty token.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from tests.fakes.base import FakeServer, Request, Response

_LIST_RE = re.compile(r"^(?:/api/v3)?/repos/([^/]+)/([^/]+)/pulls/?$")
_DETAIL_RE = re.compile(r"^(?:/api/v3)?/repos/([^/]+)/([^/]+)/pulls/(\d+)/?$")
_DOCS = "https://docs.github.com/rest"


def iso(moment: datetime | None) -> str | None:
    """GitHub's timestamp format (UTC, whole seconds, Z)."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PullRequest:
    """One PR of a fake repository."""

    number: int
    title: str
    author: str | None  # None: a deleted user (GitHub's "ghost")
    base: str
    created_at: datetime
    updated_at: datetime
    merged_at: datetime | None = None
    closed_at: datetime | None = None
    state: str = "closed"  # open | closed
    additions: int = 0
    deletions: int = 0
    head: str = "feature"

    @property
    def merged(self) -> bool:
        return self.merged_at is not None


@dataclass
class _Repo:
    owner: str
    name: str
    prs: dict[int, PullRequest] = field(default_factory=dict)


class FakeGitHub(FakeServer):
    """Loopback GitHub with Link-paginated REST, single-PR detail and a GraphQL pullRequests endpoint."""

    name = "fake-github"

    def __init__(self, token: str | None = None, *, accept_any_token: bool = False, rate_limit: int = 5000,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.token = token
        self.accept_any_token = accept_any_token
        self.rate_limit = rate_limit
        self._repos: dict[str, _Repo] = {}
        self._used = 0
        self._next_number = 1

    # ------------------------------------------------------------ data
    def add_repo(self, full_name: str) -> None:
        owner, name = full_name.split("/")
        with self._lock:
            self._repos.setdefault(full_name.lower(), _Repo(owner, name))

    def add_pr(self, repo: str, *, base: str = "master", merged_at: datetime | None = None,
               updated_at: datetime | None = None, created_at: datetime | None = None, state: str | None = None,
               additions: int = 10, deletions: int = 2, title: str | None = None, author: str | None = "octocat",
               number: int | None = None) -> PullRequest:
        """Add a PR. merged_at set = merged (closed); state="closed" without merged_at = closed unmerged."""
        self.add_repo(repo)
        with self._lock:
            if number is None:
                number = self._next_number
            self._next_number = max(self._next_number, number + 1)
            reference = merged_at or updated_at or datetime.now(UTC)
            pr = PullRequest(
                number=number,
                title=title or f"Change number {number}",
                author=author,
                base=base,
                created_at=created_at or reference - timedelta(days=1),
                updated_at=updated_at or reference,
                merged_at=merged_at,
                closed_at=merged_at if merged_at else (reference if state == "closed" else None),
                state=state or ("closed" if merged_at else "open"),
                additions=additions,
                deletions=deletions,
            )
            self._repos[repo.lower()].prs[number] = pr
            return pr

    def prs(self, repo: str) -> list[PullRequest]:
        with self._lock:
            return list(self._repos[repo.lower()].prs.values())

    # ------------------------------------------------------------ routing
    def classify(self, request: Request) -> str:
        if request.method == "POST" and request.path in ("/graphql", "/api/graphql"):
            return "graphql"
        if request.method == "GET" and _DETAIL_RE.match(request.path):
            return "detail"
        if request.method == "GET" and _LIST_RE.match(request.path):
            return "list"
        return "other"

    def handle(self, request: Request) -> Response:
        auth = request.headers.get("authorization")
        authed = False
        if auth is not None:
            scheme, _, value = auth.partition(" ")
            valid = scheme.lower() in ("bearer", "token") and bool(value.strip()) and (
                self.accept_any_token or (self.token is not None and value.strip() == self.token))
            if not valid:
                return Response.json({"message": "Bad credentials", "documentation_url": _DOCS, "status": "401"},
                                     401)
            authed = True
        with self._lock:
            self._used += 1
            used = self._used
        headers = {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(max(0, self.rate_limit - used)),
            "x-ratelimit-used": str(used),
            "x-ratelimit-reset": str(int(datetime.now(UTC).timestamp()) + 3600),
            "x-ratelimit-resource": "graphql" if request.kind == "graphql" else "core",
        }
        if request.kind == "graphql":
            if not authed:
                return Response.json({"message": "This endpoint requires you to be authenticated.",
                                      "documentation_url": _DOCS}, 401)
            return self._graphql(request, headers, used)
        if request.kind == "list":
            return self._list(request, headers)
        if request.kind == "detail":
            return self._detail(request, headers)
        return Response.json({"message": "Not Found", "documentation_url": _DOCS, "status": "404"}, 404, headers)

    # ------------------------------------------------------------ REST
    def _repo(self, owner: str, name: str) -> _Repo | None:
        with self._lock:
            return self._repos.get(f"{owner}/{name}".lower())

    def _simple(self, repo: _Repo, pr: PullRequest) -> dict[str, Any]:
        api = f"{self.url}/repos/{repo.owner}/{repo.name}/pulls/{pr.number}"
        return {
            "url": api,
            "id": 1_000_000 + pr.number,
            "html_url": f"https://github.com/{repo.owner}/{repo.name}/pull/{pr.number}",
            "number": pr.number,
            "state": pr.state,
            "title": pr.title,
            "user": None if pr.author is None else {"login": pr.author, "type": "User"},
            "created_at": iso(pr.created_at),
            "updated_at": iso(pr.updated_at),
            "closed_at": iso(pr.closed_at),
            "merged_at": iso(pr.merged_at),
            "base": {"ref": pr.base, "label": f"{repo.owner}:{pr.base}"},
            "head": {"ref": pr.head, "label": f"{repo.owner}:{pr.head}"},
        }

    def _list(self, request: Request, headers: dict[str, str]) -> Response:
        match = _LIST_RE.match(request.path)
        assert match is not None
        repo = self._repo(match.group(1), match.group(2))
        if repo is None:
            return Response.json({"message": "Not Found", "documentation_url": _DOCS, "status": "404"}, 404, headers)
        q = request.query
        state = q.get("state", "open")
        sort = q.get("sort", "created")
        direction = q.get("direction", "desc" if sort == "created" else "asc")
        try:
            per_page = min(100, max(1, int(q.get("per_page", "30"))))
            page = max(1, int(q.get("page", "1")))
        except ValueError:
            return Response.json({"message": "Validation Failed", "status": "422"}, 422, headers)
        with self._lock:
            items = [pr for pr in repo.prs.values()
                     if (state == "all" or pr.state == state) and (not q.get("base") or pr.base == q["base"])]
        key = {"updated": lambda p: (p.updated_at, p.number), "created": lambda p: (p.created_at, p.number)}.get(
            sort, lambda p: (p.created_at, p.number))
        items.sort(key=key, reverse=(direction == "desc"))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        links = []

        def link(target: int, rel: str) -> str:
            params = {k: v for k, v in q.items() if k != "page"}
            params["page"] = str(target)
            return f'<{self.url}{request.path}?{urlencode(params)}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        out = dict(headers)
        if links:
            out["Link"] = ", ".join(links)
        return Response.json([self._simple(repo, pr) for pr in chunk], 200, out)

    def _detail(self, request: Request, headers: dict[str, str]) -> Response:
        match = _DETAIL_RE.match(request.path)
        assert match is not None
        repo = self._repo(match.group(1), match.group(2))
        pr = repo.prs.get(int(match.group(3))) if repo else None
        if repo is None or pr is None:
            return Response.json({"message": "Not Found", "documentation_url": _DOCS, "status": "404"}, 404, headers)
        full = self._simple(repo, pr)
        full.update({
            "merged": pr.merged,
            "mergeable": None,
            "merged_by": {"login": "merger"} if pr.merged else None,
            "comments": 0,
            "review_comments": 0,
            "commits": 1,
            "additions": pr.additions,
            "deletions": pr.deletions,
            "changed_files": 1,
        })
        return Response.json(full, 200, headers)

    # ------------------------------------------------------------ GraphQL
    def _graphql(self, request: Request, headers: dict[str, str], used: int) -> Response:
        try:
            payload = request.json()
            query = payload["query"]
            variables = payload.get("variables") or {}
        except (ValueError, KeyError, TypeError):
            return Response.json({"message": "Problems parsing JSON", "documentation_url": _DOCS}, 400, headers)

        repo_call = re.search(r"repository\s*\(([^)]*)\)", query)
        prs_call = re.search(r"pullRequests\s*\(([^)]*)\)", query)
        call_args = " ".join(m.group(1) for m in (repo_call, prs_call) if m)

        def arg(name: str) -> Any:
            found = re.search(rf"(?<![\w$]){name}\s*:\s*(\$\w+|\"[^\"]*\"|\[[^\]]*\]|\{{[^}}]*\}}|[\w-]+)",
                              call_args)
            if not found:
                return None
            text = found.group(1)
            if text.startswith("$"):
                return variables.get(text[1:])
            if text.startswith('"'):
                return text[1:-1]
            if text == "null":
                return None
            return text

        data: dict[str, Any] = {}
        if "rateLimit" in query:
            data["rateLimit"] = {"cost": 1, "remaining": max(0, self.rate_limit - used),
                                 "resetAt": iso(datetime.now(UTC) + timedelta(hours=1))}
        if "pullRequests" not in query or "repository" not in query:
            return Response.json({"data": data}, 200, headers)
        owner, name = arg("owner"), arg("name")
        repo = self._repo(str(owner), str(name))
        if repo is None:
            data["repository"] = None
            return Response.json({"data": data, "errors": [{
                "type": "NOT_FOUND", "path": ["repository"], "locations": [{"line": 1, "column": 1}],
                "message": f"Could not resolve to a Repository with the name '{owner}/{name}'."}]}, 200, headers)
        first_raw = arg("first")
        try:
            first = int(first_raw)
        except (TypeError, ValueError):
            first = 0
        if not 1 <= first <= 100:
            return Response.json({"data": None, "errors": [{
                "message": "Requesting 0 records on the `pullRequests` connection is not supported: "
                           "`first` must be between 1 and 100."}]}, 200, headers)
        states = str(arg("states") or "")
        base = arg("baseRefName")
        order = str(arg("orderBy") or "")
        with self._lock:
            items = list(repo.prs.values())
        if states:
            wanted = set(re.findall(r"OPEN|CLOSED|MERGED", states))
            items = [p for p in items
                     if ("MERGED" in wanted and p.merged) or ("OPEN" in wanted and p.state == "open")
                     or ("CLOSED" in wanted and p.state == "closed" and not p.merged)]
        if base:
            items = [p for p in items if p.base == base]
        field_name = "updated_at" if "UPDATED_AT" in order else "created_at"
        items.sort(key=lambda p: (getattr(p, field_name), p.number), reverse="DESC" in order)
        after = arg("after")
        start = 0
        if after:
            try:
                start = int(base64.b64decode(str(after)).decode().split(":")[1])
            except (ValueError, IndexError):
                return Response.json({"data": None, "errors": [{
                    "message": f"`{after}` does not appear to be a valid cursor."}]}, 200, headers)
        chunk = items[start: start + first]
        end = start + len(chunk)
        nodes = [{
            "number": p.number,
            "title": p.title,
            "url": f"https://github.com/{repo.owner}/{repo.name}/pull/{p.number}",
            "mergedAt": iso(p.merged_at),
            "updatedAt": iso(p.updated_at),
            "additions": p.additions,
            "deletions": p.deletions,
            "baseRefName": p.base,
            "author": None if p.author is None else {"login": p.author},
        } for p in chunk]
        cursor = base64.b64encode(f"cursor:{end}".encode()).decode() if chunk else None
        data["repository"] = {"pullRequests": {
            "pageInfo": {"hasNextPage": end < len(items), "endCursor": cursor},
            "nodes": nodes,
        }}
        return Response.json({"data": data}, 200, headers)
