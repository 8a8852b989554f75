"""A small HTTP client for the InfluxDB 3 API calls provisioning makes (reference §3-§5, §7, §8, §11).

Every call has a timeout; unexpected statuses raise :class:`ApiError` (or :class:`AuthError`); nothing
returns ``(ok, dict)``. The token travels only in the ``Authorization`` header.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import requests

from provisioning.errors import ApiError, AuthError, ServerUnavailable

REQUEST_TIMEOUT = (5.0, 120.0)  # connect, read (package installs run pip on the server)
POLL_INTERVAL = 0.25


class InfluxClient:
    """Talks to one server. ``session`` may be injected for tests."""

    def __init__(self, base_url: str, token: str | None, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self._session = session or requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:  # never show the session headers
        return f"InfluxClient({self.base_url!r})"

    # -- plumbing -----------------------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        ok: Iterable[int] = (200, 201, 204),
        json_body: Any = None,
        params: dict[str, str] | None = None,
        timeout: tuple[float, float] = REQUEST_TIMEOUT,
    ) -> requests.Response:
        try:
            resp = self._session.request(
                method, self.base_url + path, json=json_body, params=params, timeout=timeout
            )
        except requests.RequestException as exc:
            raise ServerUnavailable(f"{method} {path}: cannot reach {self.base_url} ({type(exc).__name__})") from exc
        if resp.status_code in tuple(ok):
            return resp
        if resp.status_code == 401 or (resp.status_code == 400 and "Authorization header" in resp.text):
            raise AuthError(method, path, resp.status_code, resp.text)
        raise ApiError(method, path, resp.status_code, resp.text)

    # -- health -------------------------------------------------------------------------------------------
    def wait_healthy(
        self, deadline_seconds: float, *, clock: Callable[[], float] = time.monotonic, sleep=time.sleep
    ) -> None:
        """Poll ``GET /health`` until 200, for at most ``deadline_seconds``.

        Raises AuthError at once on 401 (waiting will not fix a wrong token), ServerUnavailable at the deadline.
        """
        end = clock() + deadline_seconds
        last = "no answer"
        while True:
            try:
                self._request("GET", "/health", ok=(200,), timeout=(2.0, 5.0))
                return
            except AuthError:
                raise
            except ServerUnavailable as exc:
                last = str(exc)
            except ApiError as exc:
                last = f"/health answered {exc.status}"
            if clock() >= end:
                raise ServerUnavailable(
                    f"{self.base_url} was not healthy within {deadline_seconds:g}s ({last}); "
                    "is the server running? (PROVISION_WAIT_SECONDS sets the wait)"
                )
            sleep(POLL_INTERVAL)

    # -- databases and tables (reference §4, §5) ----------------------------------------------------------
    def create_database(self, db: str) -> bool:
        """Create ``db``; False when it already exists (409)."""
        resp = self._request("POST", "/api/v3/configure/database", ok=(200, 201, 204, 409), json_body={"db": db})
        return resp.status_code != 409

    def list_databases(self) -> list[str]:
        resp = self._request("GET", "/api/v3/configure/database", params={"format": "json"})
        return [row["iox::database"] for row in resp.json()]

    def create_table(self, db: str, table: str, tags: list[str], fields: list[dict[str, str]]) -> bool:
        """Create a table with its schema; False when it already exists (409)."""
        body = {"db": db, "table": table, "tags": tags, "fields": fields}
        resp = self._request("POST", "/api/v3/configure/table", ok=(200, 201, 204, 409), json_body=body)
        return resp.status_code != 409

    # -- queries (reference §7) ---------------------------------------------------------------------------
    def query(self, db: str, sql: str) -> list[dict[str, Any]]:
        resp = self._request(
            "POST", "/api/v3/query_sql", ok=(200,), json_body={"db": db, "q": sql, "format": "json"}
        )
        return resp.json() if resp.content else []

    # -- plugin environment (reference §11) ---------------------------------------------------------------
    def install_packages(self, packages: list[str]) -> None:
        self._request(
            "POST", "/api/v3/configure/plugin_environment/install_packages", json_body={"packages": packages}
        )

    # -- triggers (reference §8) --------------------------------------------------------------------------
    def create_trigger(
        self,
        db: str,
        name: str,
        plugin_filename: str,
        specification: str,
        arguments: dict[str, str] | None,
        *,
        run_async: bool,
        error_behavior: str,
        disabled: bool,
    ) -> None:
        body = {
            "db": db,
            "plugin_filename": plugin_filename,
            "trigger_name": name,
            "trigger_specification": specification,
            "trigger_arguments": arguments or None,
            "trigger_settings": {"run_async": run_async, "error_behavior": error_behavior},
            "disabled": disabled,
        }
        self._request("POST", "/api/v3/configure/processing_engine_trigger", json_body=body)

    def disable_trigger(self, db: str, name: str) -> None:
        self._request(
            "POST",
            "/api/v3/configure/processing_engine_trigger/disable",
            params={"db": db, "trigger_name": name},
        )

    def delete_trigger(self, db: str, name: str, *, force: bool = True) -> None:
        params = {"db": db, "trigger_name": name}
        if force:
            params["force"] = "true"
        self._request("DELETE", "/api/v3/configure/processing_engine_trigger", params=params)
