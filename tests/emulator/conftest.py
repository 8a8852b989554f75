"""Fixtures for the HTTP conformance tests: one server per test module, unique databases per test.

With ``INFLUXDB3_URL`` (+ ``INFLUXDB3_AUTH_TOKEN``) set, ``server`` and ``auth_server`` point at that real server
(STYLE.md "one test, two targets"); tests that need to start or kill processes use ``start_server`` directly.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from tests.support import RemoteServer, ServerProcess, remote_server, start_server

_counter = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess | RemoteServer]:
    """A server without auth (or the real one of INFLUXDB3_URL, with its token)."""
    remote = remote_server()
    if remote is not None:
        yield remote
        remote.stop()
        return
    with start_server(tmp_path_factory.mktemp("server")) as srv:
        yield srv


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess | RemoteServer]:
    """A server with auth on and an admin token from ``--admin-token-file`` (``.token``)."""
    remote = remote_server()
    if remote is not None:
        if not remote.token:
            pytest.skip("INFLUXDB3_AUTH_TOKEN is not set for the remote server")
        yield remote
        remote.stop()
        return
    with start_server(tmp_path_factory.mktemp("auth_server"), auth=True) as srv:
        yield srv


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{os.getpid()}x{next(_counter)}"


@pytest.fixture
def db(server: ServerProcess | RemoteServer) -> Iterator[str]:
    """A fresh database name; deleted after the test so the 5-database limit is never reached."""
    name = unique_name("db")
    yield name
    server.session.delete(f"{server.url}/api/v3/configure/database", params={"db": name}, timeout=30)
