"""FakeWebhook: a Slack-compatible incoming webhook that records every POSTed JSON body.

Any POST answers 200 `ok` (as Slack does); the parsed bodies are in `posts`. Request kind counted: "post".
Inject failures with `fail_next(status=500)` or `fail_next(delay=...)` as on every fake.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.base import FakeServer, Request, Response


class FakeWebhook(FakeServer):
    """Loopback webhook receiver."""

    name = "fake-webhook"

    @property
    def posts(self) -> list[Any]:
        """JSON bodies of the POSTs answered 2xx or not, in arrival order (undecodable bodies as bytes)."""
        with self._lock:
            bodies = [r.body for r in self.requests if r.kind == "post"]
        out: list[Any] = []
        for body in bodies:
            try:
                out.append(json.loads(body.decode("utf-8")))
            except (UnicodeDecodeError, ValueError):
                out.append(body)
        return out

    def classify(self, request: Request) -> str:
        return "post" if request.method == "POST" else "other"

    def handle(self, request: Request) -> Response:
        if request.kind != "post":
            return Response(405, b"method not allowed", {"Content-Type": "text/plain"})
        return Response(200, b"ok", {"Content-Type": "text/plain"})
