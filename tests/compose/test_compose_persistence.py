"""Where the data lives under Compose: the named volume influxdb3-data. `restart` keeps it, `down` then `up`
keeps it, `down -v` removes it (README: "Where the data lives"). The tests run in file order on one project."""

from __future__ import annotations

import json

import pytest
import requests

from tests.compose.conftest import ComposeStack

pytestmark = pytest.mark.compose
DB = "keep"
LINE = "persist,probe=compose value=42i 1700000000000000000"


@pytest.fixture(scope="module")
def stack(compose_env, stack_factory) -> ComposeStack:
    stack = stack_factory({k: v for k, v in compose_env.items() if k != "GATEWAY"})
    stack.up()
    return stack


def headers(stack: ComposeStack) -> dict[str, str]:
    token = json.loads((stack.directory / "secrets" / "influxdb3_admin_token.json").read_text())["token"]
    return {"Authorization": f"Bearer {token}"}


def rows(stack: ComposeStack) -> requests.Response:
    return requests.post(f"{stack.url()}/api/v3/query_sql", headers=headers(stack), timeout=30,
                         json={"db": DB, "q": "SELECT probe, value FROM persist", "format": "json"})


def test_compose_restart_keeps_the_data(stack):
    w = requests.post(f"{stack.url()}/api/v3/write_lp", params={"db": DB}, headers=headers(stack), data=LINE,
                      timeout=30)
    assert w.status_code == 204, w.text
    stack.run("restart", "influxdb3")
    stack.up()  # returns once the healthcheck passes again
    r = rows(stack)
    assert r.status_code == 200 and r.json() == [{"probe": "compose", "value": 42}], r.text


def test_compose_down_then_up_keeps_the_data(stack):
    stack.down(volumes=False)
    assert stack.container_ids() == []
    stack.up()
    r = rows(stack)
    assert r.status_code == 200 and r.json() == [{"probe": "compose", "value": 42}], r.text


def test_compose_down_with_volumes_removes_the_data(stack):
    stack.down(volumes=True)
    stack.up()
    r = rows(stack)
    assert r.status_code == 404 and "not found" in r.text, r.text
