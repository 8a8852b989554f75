"""FakeGitHub: the slice of the GitHub REST and GraphQL APIs that plugins/github_prs.py uses.

REST (also under an `/api/v3` prefix, as GitHub Enterprise Server):
  GET /repos/{owner}/{repo}/pulls          state, base, sort, direction, per_page (<=100, default 30), page;
                                           Link header (first/prev/next/last) when there is more than one page
  GET /repos/{owner}/{repo}/pulls/{number} the full pull-request object (additions, deletions, changed_files,
                                           merged, ...)
  GET /repos/{owner}/{repo}/pulls/{number}/files
                                           per_page (<=100, default 30), page; Link pagination; at most 3,000
                                           files are listed (GitHub's documented cap); items carry filename,
                                           status, additions, deletions, changes and, for renames and copies,
                                           previous_filename
GraphQL: POST /graphql (and /api/graphql) answering `rateLimit`,
  `repository(owner,name){pullRequests(first,after,states,baseRefName,orderBy){pageInfo nodes}}` where the
  nodes may ask `files(first[, after]){totalCount pageInfo nodes{path additions deletions changeType}}`, and
  `repository(owner,name){pullRequest(number){files(first, after){...}}}` for a PR's further file pages.
  PullRequestChangedFile has no previous path in GitHub's schema, so neither has the fake's.

Files of a PR: `add_pr(..., files=[...])` (ChangedFile, a dict of its fields, or a bare path) or
`set_files(repo, number, files)`. A PR added without files has one: `content/pr-<number>.md`, modified, with
the PR's additions and deletions. With files and no explicit additions/deletions, the PR's counts are the
sums over its files.

Rate limit: `rate_limit` requests per window (`rate_window` seconds, default 3600) counted from the first
request; `x-ratelimit-*` headers on every answer. Once exhausted, REST answers 403 "API rate limit exceeded
..." and GraphQL answers HTTP 200 with an error of type RATE_LIMITED, both with `x-ratelimit-remaining: 0` and
`x-ratelimit-reset` (epoch seconds), as GitHub does; the window restarts at the reset time.
`exhaust_rate_limit(reset_in)` spends the rest of the window now.

Request kinds counted: "list", "detail", "files", "graphql", "other".
Auth: a request carrying `Authorization` must carry `Bearer <token>` or `token <token>` for the configured
token (401 "Bad credentials" otherwise); REST without Authorization is allowed (a public repo); GraphQL
without a valid token is 401. `accept_any_token=True` (demo mode) accepts any non-empty token.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from tests.fakes.base import FakeServer, Request, Response

_LIST_RE = re.compile(r"^(?:/api/v3)?/repos/([^/]+)/([^/]+)/pulls/?$")
_DETAIL_RE = re.compile(r"^(?:/api/v3)?/repos/([^/]+)/([^/]+)/pulls/(\d+)/?$")
_FILES_RE = re.compile(r"^(?:/api/v3)?/repos/([^/]+)/([^/]+)/pulls/(\d+)/files/?$")
_DOCS = "https://docs.github.com/rest"
#: GitHub lists at most this many files of one pull request (REST "List pull requests files").
MAX_LISTED_FILES = 3000
#: REST `status` of a changed file -> GraphQL `PatchStatus` (REST's rare "unchanged" has no GraphQL twin).
PATCH_STATUS = {"added": "ADDED", "removed": "DELETED", "modified": "MODIFIED", "renamed": "RENAMED",
                "copied": "COPIED", "changed": "CHANGED", "unchanged": "CHANGED"}


def iso(moment: datetime | None) -> str | None:
    """GitHub's timestamp format (UTC, whole seconds, Z)."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _not_found(headers: dict[str, str]) -> Response:
    """GitHub's 404 body."""
    return Response.json({"message": "Not Found", "documentation_url": _DOCS, "status": "404"}, 404, headers)


@dataclass
class ChangedFile:
    """One file a PR changed. status is GitHub's REST word: added, removed, modified, renamed, copied, changed
    or unchanged; previous_path is set for renamed (and copied) files."""

    path: str
    additions: int = 0
    deletions: int = 0
    status: str = "modified"
    previous_path: str | None = None

    def __post_init__(self) -> None:
        if self.status not in PATCH_STATUS:
            raise ValueError(f"unknown file status {self.status!r}: use one of {sorted(PATCH_STATUS)}")


def _changed_file(item: ChangedFile | dict[str, Any] | str) -> ChangedFile:
    if isinstance(item, ChangedFile):
        return item
    if isinstance(item, str):
        return ChangedFile(item)
    return ChangedFile(**item)


@dataclass
class PullRequest:
    """One PR of a fake repository. `files` None = one default file (see the module docstring)."""

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
    files: list[ChangedFile] | None = None

    @property
    def merged(self) -> bool:
        return self.merged_at is not None

    def changed_files(self) -> list[ChangedFile]:
        """The PR's files, in GitHub's order (the order they were given)."""
        if self.files is None:
            return [ChangedFile(f"content/pr-{self.number}.md", self.additions, self.deletions)]
        return list(self.files)


@dataclass
class _Repo:
    owner: str
    name: str
    prs: dict[int, PullRequest] = field(default_factory=dict)


class FakeGitHub(FakeServer):
    """Loopback GitHub with Link-paginated REST, single-PR detail and a GraphQL pullRequests endpoint."""

    name = "fake-github"

    def __init__(self, token: str | None = None, *, accept_any_token: bool = False, rate_limit: int = 5000,
                 rate_window: float = 3600.0, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.token = token
        self.accept_any_token = accept_any_token
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self._repos: dict[str, _Repo] = {}
        self._used = 0
        self._reset_at: float | None = None
        self._next_number = 1

    def exhaust_rate_limit(self, reset_in: float) -> int:
        """Spend the rest of the rate limit now; it resets `reset_in` seconds from now. Returns the reset time
        (epoch seconds, as `x-ratelimit-reset` carries it: whole seconds, rounded up)."""
        with self._lock:
            self._reset_at = float(int(time.time() + reset_in + 0.999))
            self._used = self.rate_limit
            return int(self._reset_at)

    # ------------------------------------------------------------ data
    def add_repo(self, full_name: str) -> None:
        owner, name = full_name.split("/")
        with self._lock:
            self._repos.setdefault(full_name.lower(), _Repo(owner, name))

    def add_pr(self, repo: str, *, base: str = "master", merged_at: datetime | None = None,
               updated_at: datetime | None = None, created_at: datetime | None = None, state: str | None = None,
               additions: int | None = None, deletions: int | None = None, title: str | None = None,
               author: str | None = "octocat", number: int | None = None,
               files: list[ChangedFile | dict[str, Any] | str] | None = None) -> PullRequest:
        """Add a PR. merged_at set = merged (closed); state="closed" without merged_at = closed unmerged.
        additions/deletions default to the sums over `files`, or 10 and 2 without files."""
        self.add_repo(repo)
        changed = None if files is None else [_changed_file(f) for f in files]
        if additions is None:
            additions = 10 if changed is None else sum(f.additions for f in changed)
        if deletions is None:
            deletions = 2 if changed is None else sum(f.deletions for f in changed)
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
                files=changed,
            )
            self._repos[repo.lower()].prs[number] = pr
            return pr

    def set_files(self, repo: str, number: int, files: list[ChangedFile | dict[str, Any] | str], *,
                  recount: bool = True) -> PullRequest:
        """Replace the files of PR `number`; with recount, its additions/deletions become the files' sums."""
        changed = [_changed_file(f) for f in files]
        with self._lock:
            pr = self._repos[repo.lower()].prs[number]
            pr.files = changed
            if recount:
                pr.additions = sum(f.additions for f in changed)
                pr.deletions = sum(f.deletions for f in changed)
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
        if request.method == "GET" and _FILES_RE.match(request.path):
            return "files"
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
        if request.kind == "graphql" and not authed:
            return Response.json({"message": "This endpoint requires you to be authenticated.",
                                  "documentation_url": _DOCS}, 401)
        with self._lock:
            clock = time.time()
            if self._reset_at is None or clock >= self._reset_at:
                self._reset_at = float(int(clock + self.rate_window + 0.999))
                self._used = 0
            limited = self._used >= self.rate_limit
            if not limited:
                self._used += 1
            used = self._used
            reset_at = int(self._reset_at)
        headers = {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(max(0, self.rate_limit - used)),
            "x-ratelimit-used": str(used),
            "x-ratelimit-reset": str(reset_at),
            "x-ratelimit-resource": "graphql" if request.kind == "graphql" else "core",
        }
        if limited:
            if request.kind == "graphql":
                return Response.json({"errors": [{"type": "RATE_LIMITED", "code": "graphql_rate_limit",
                                                  "message": "API rate limit exceeded for user ID 1."}]},
                                     200, headers)
            return Response.json({"message": "API rate limit exceeded for 127.0.0.1. (But here's the good news: "
                                             "Authenticated requests get a higher rate limit.)",
                                  "documentation_url": _DOCS}, 403, headers)
        if request.kind == "graphql":
            return self._graphql(request, headers, used)
        if request.kind == "list":
            return self._list(request, headers)
        if request.kind == "detail":
            return self._detail(request, headers)
        if request.kind == "files":
            return self._files(request, headers)
        return _not_found(headers)

    # ------------------------------------------------------------ REST
    def _repo(self, owner: str, name: str) -> _Repo | None:
        with self._lock:
            return self._repos.get(f"{owner}/{name}".lower())

    def _pull(self, pattern: re.Pattern[str], request: Request) -> tuple[_Repo, PullRequest] | None:
        """The repository and pull request a /repos/{owner}/{name}/pulls/{n}... path names, or None."""
        match = pattern.match(request.path)
        assert match is not None
        repo = self._repo(match.group(1), match.group(2))
        pr = repo.prs.get(int(match.group(3))) if repo else None
        return None if repo is None or pr is None else (repo, pr)

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
            return _not_found(headers)
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
        out = dict(headers)
        links = self._links(request, page, last)
        if links:
            out["Link"] = links
        return Response.json([self._simple(repo, pr) for pr in chunk], 200, out)

    def _detail(self, request: Request, headers: dict[str, str]) -> Response:
        found = self._pull(_DETAIL_RE, request)
        if found is None:
            return _not_found(headers)
        repo, pr = found
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
            "changed_files": len(pr.changed_files()),
        })
        return Response.json(full, 200, headers)

    def _files(self, request: Request, headers: dict[str, str]) -> Response:
        found = self._pull(_FILES_RE, request)
        if found is None:
            return _not_found(headers)
        repo, pr = found
        q = request.query
        try:
            per_page = min(100, max(1, int(q.get("per_page", "30"))))
            page = max(1, int(q.get("page", "1")))
        except ValueError:
            return Response.json({"message": "Validation Failed", "status": "422"}, 422, headers)
        with self._lock:
            files = pr.changed_files()[:MAX_LISTED_FILES]
        last = max(1, -(-len(files) // per_page))
        chunk = files[(page - 1) * per_page: page * per_page]
        items = []
        for f in chunk:
            item: dict[str, Any] = {
                "sha": hashlib.sha1(f"{pr.number}:{f.path}".encode()).hexdigest(),
                "filename": f.path,
                "status": f.status,
                "additions": f.additions,
                "deletions": f.deletions,
                "changes": f.additions + f.deletions,
                "blob_url": f"https://github.com/{repo.owner}/{repo.name}/blob/head/{f.path}",
            }
            if f.previous_path is not None:
                item["previous_filename"] = f.previous_path
            items.append(item)
        out = dict(headers)
        links = self._links(request, page, last)
        if links:
            out["Link"] = links
        return Response.json(items, 200, out)

    def _links(self, request: Request, page: int, last: int) -> str:
        """GitHub's Link header for `page` of `last` (prev/first before next/last), "" for a single page.

        Absolute URLs on the host the client asked (its Host header), as GitHub links to its own public name:
        a client in a container reaches the fake by another name than 127.0.0.1."""
        host = request.headers.get("host", "").strip()
        base = f"http://{host}" if host and not any(c in host for c in "/?#@ ") else self.url

        def link(target: int, rel: str) -> str:
            params = {k: v for k, v in request.query.items() if k != "page"}
            params["page"] = str(target)
            return f'<{base}{request.path}?{urlencode(params)}>; rel="{rel}"'

        links = []
        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        return ", ".join(links)

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
        pr_call = re.search(r"pullRequest\s*\(([^)]*)\)", query)
        files_call = re.search(r"files\s*\(([^)]*)\)", query)
        call_args = " ".join(m.group(1) for m in (repo_call, prs_call, pr_call) if m)

        def arg(name: str, within: str | None = None) -> Any:
            found = re.search(rf"(?<![\w$]){name}\s*:\s*(\$\w+|\"[^\"]*\"|\[[^\]]*\]|\{{[^}}]*\}}|[\w-]+)",
                              call_args if within is None else within)
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
                                 "resetAt": iso(datetime.fromtimestamp(self._reset_at or time.time(), UTC))}
        if ("pullRequests" not in query and pr_call is None) or "repository" not in query:
            return Response.json({"data": data}, 200, headers)
        owner, name = arg("owner"), arg("name")
        repo = self._repo(str(owner), str(name))
        if repo is None:
            data["repository"] = None
            return Response.json({"data": data, "errors": [{
                "type": "NOT_FOUND", "path": ["repository"], "locations": [{"line": 1, "column": 1}],
                "message": f"Could not resolve to a Repository with the name '{owner}/{name}'."}]}, 200, headers)
        files_args = files_call.group(1) if files_call else None
        files_first = 0
        if files_args is not None:
            try:
                files_first = int(arg("first", files_args))
            except (TypeError, ValueError):
                files_first = 0
            if not 1 <= files_first <= 100:
                return Response.json({"data": None, "errors": [{
                    "message": "Requesting 0 records on the `files` connection is not supported: "
                               "`first` must be between 1 and 100."}]}, 200, headers)
        if pr_call is not None and prs_call is None:
            number = arg("number", pr_call.group(1))
            try:
                pr = repo.prs.get(int(number))
            except (TypeError, ValueError):
                pr = None
            if pr is None:
                data["repository"] = {"pullRequest": None}
                return Response.json({"data": data, "errors": [{
                    "type": "NOT_FOUND", "path": ["repository", "pullRequest"],
                    "message": f"Could not resolve to a PullRequest with the number of {number}."}]}, 200, headers)
            node: dict[str, Any] = {"number": pr.number}
            if files_args is not None:
                files = self._files_connection(pr, files_first, arg("after", files_args))
                if files is None:
                    return Response.json({"data": None, "errors": [{
                        "message": f"`{arg('after', files_args)}` does not appear to be a valid cursor."}]},
                        200, headers)
                node["files"] = files
            data["repository"] = {"pullRequest": node}
            return Response.json({"data": data}, 200, headers)
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
            "changedFiles": len(p.changed_files()),
            "baseRefName": p.base,
            "author": None if p.author is None else {"login": p.author},
        } for p in chunk]
        if files_args is not None:
            for node, p in zip(nodes, chunk, strict=True):
                node["files"] = self._files_connection(p, files_first, None)
        cursor = base64.b64encode(f"cursor:{end}".encode()).decode() if chunk else None
        data["repository"] = {"pullRequests": {
            "pageInfo": {"hasNextPage": end < len(items), "endCursor": cursor},
            "nodes": nodes,
        }}
        return Response.json({"data": data}, 200, headers)

    def _files_connection(self, pr: PullRequest, first: int, after: Any) -> dict[str, Any] | None:
        """A PullRequestChangedFileConnection page, or None for a cursor the fake did not issue."""
        start = 0
        if after:
            try:
                kind, offset = base64.b64decode(str(after)).decode().split(":")
                start = int(offset)
                if kind != "files":
                    return None
            except (ValueError, IndexError):
                return None
        with self._lock:
            files = pr.changed_files()
        listed = files[:MAX_LISTED_FILES]
        chunk = listed[start: start + first]
        end = start + len(chunk)
        return {
            "totalCount": len(files),
            "pageInfo": {"hasNextPage": end < len(listed),
                         "endCursor": base64.b64encode(f"files:{end}".encode()).decode() if chunk else None},
            "nodes": [{"path": f.path, "additions": f.additions, "deletions": f.deletions,
                       "changeType": PATCH_STATUS[f.status]} for f in chunk],
        }
