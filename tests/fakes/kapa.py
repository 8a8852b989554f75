"""FakeKapa: `GET /ingestion/v1/projects/{project_id}/sources/` of the Kapa.ai API.

Page-number pagination as Django REST framework does it: `page` (default 1) and `page_size` (default 100,
max 1000); the answer is `{"count": N, "results": [...]}`; a page past the end is 404 `{"detail": "Invalid
page."}`. Auth: header `X-API-KEY` must equal the configured key (any non-empty key with
`accept_any_key=True`), else 401. Request kinds counted: "sources", "other".

Misbehaviour switches for the plugin's guards: `claimed_count` (answer a `count` larger than the data, with
empty pages past the end instead of 404) and `endless` (every page repeats page 1, forever).
"""

from __future__ import annotations

import re
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from tests.fakes.base import FakeServer, Request, Response

_SOURCES_RE = re.compile(r"^/ingestion/v1/projects/([^/]+)/sources/?$")


def kapa_time(moment: datetime | None) -> str | None:
    """Kapa's timestamp format (microseconds, Z)."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeKapa(FakeServer):
    """Loopback Kapa.ai sources API."""

    name = "fake-kapa"

    def __init__(self, api_key: str | None = None, *, accept_any_key: bool = False, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(host, port)
        self.api_key = api_key
        self.accept_any_key = accept_any_key
        self.claimed_count: int | None = None
        self.endless = False
        self._projects: dict[str, list[dict[str, Any]]] = {}
        self._data_lock = threading.Lock()

    def add_source(self, project_id: str, name: str, *, ingested_at: datetime | None = None,
                   next_run_at: datetime | None = None, source_type: str = "scrape",
                   source_id: str | None = None) -> dict[str, Any]:
        """Add a source; ingested_at None = never ingested (the API answers null)."""
        source = {
            "project": project_id,
            "id": source_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"kapa:{project_id}/{name}")),
            "name": name,
            "title_prefix": "",
            "description": f"{name} source",
            "type": source_type,
            "contains_internal_data": False,
            "ingest_without_review": True,
            "ingested_at": kapa_time(ingested_at),
            "created_at": kapa_time(ingested_at) or "2025-01-01T00:00:00.000000Z",
            "has_periodic_task": "true" if next_run_at else "false",
            "next_run_at": kapa_time(next_run_at),
            "last_task_status": "SUCCESS" if ingested_at else None,
            "deployed_markdown_items": 12,
        }
        with self._data_lock:
            self._projects.setdefault(project_id, []).append(source)
        return source

    def add_project(self, project_id: str) -> None:
        with self._data_lock:
            self._projects.setdefault(project_id, [])

    def classify(self, request: Request) -> str:
        return "sources" if request.method == "GET" and _SOURCES_RE.match(request.path) else "other"

    def handle(self, request: Request) -> Response:
        key = request.headers.get("x-api-key", "")
        if not key or not (self.accept_any_key or (self.api_key is not None and key == self.api_key)):
            return Response.json({"detail": "Invalid API key."}, 401)
        match = _SOURCES_RE.match(request.path)
        if request.kind != "sources" or match is None:
            return Response.json({"detail": "Not found."}, 404)
        with self._data_lock:
            sources = list(self._projects.get(match.group(1), [])) if match.group(1) in self._projects else None
        if sources is None:
            return Response.json({"detail": "Not found."}, 404)
        try:
            page = int(request.query.get("page", "1"))
            size = min(1000, max(1, int(request.query.get("page_size", "100"))))
        except ValueError:
            return Response.json({"detail": "Invalid page."}, 404)
        if page < 1:
            return Response.json({"detail": "Invalid page."}, 404)
        if self.endless:
            return Response.json({"count": len(sources) + 1, "results": sources[:size]})
        chunk = sources[(page - 1) * size: page * size]
        if self.claimed_count is not None:
            return Response.json({"count": self.claimed_count, "results": chunk})
        if not chunk and page > 1:
            return Response.json({"detail": "Invalid page."}, 404)
        return Response.json({"count": len(sources), "results": chunk})
