"""Property: random line-protocol-ish bodies never give a 5xx and never take the server down."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import RemoteServer, ServerProcess

Server = ServerProcess | RemoteServer

_ALPHABET = st.sampled_from(list("abcxyz019 ,=\"\\\n\t#.-+eEiutfTF_") + ["é", "\u00a0", "💡"])
_TOKEN = st.text(_ALPHABET, min_size=0, max_size=40)
_VALUE = st.one_of(
    st.integers(-(2**70), 2**70).map(lambda i: f"{i}i"),
    st.integers(0, 2**70).map(lambda i: f"{i}u"),
    st.floats(allow_nan=False).map(repr),
    st.sampled_from(["t", "T", "true", "FALSE", "f", '"s"', '"a\\"b"', "", "1e", "--1"]),
    _TOKEN,
)
_LINE = st.one_of(
    _TOKEN,
    st.builds(
        lambda m, tags, fields, ts: f"{m}{tags} {fields}{ts}",
        st.sampled_from(["m", "cpu", "m\\ x", "", "a,b"]),
        st.lists(st.tuples(_TOKEN, _TOKEN), max_size=3).map(lambda ts: "".join(f",{k}={v}" for k, v in ts)),
        st.lists(st.tuples(st.sampled_from(["f", "g", "h", "", "f\\ x"]), _VALUE), min_size=0, max_size=3).map(
            lambda fs: ",".join(f"{k}={v}" for k, v in fs)
        ),
        st.one_of(st.just(""), st.integers(-(2**64), 2**64).map(lambda t: f" {t}"), _TOKEN.map(lambda t: f" {t}")),
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_LINE, min_size=0, max_size=6), precision=st.sampled_from(["auto", "s", "ms", "ns"]))
def test_random_bodies_never_5xx(server: Server, lines: list[str], precision: str) -> None:
    body = "\n".join(lines).encode()
    r = server.session.post(f"{server.url}/api/v3/write_lp?db=lpprop&precision={precision}", data=body, timeout=30)
    assert r.status_code in (204, 400, 422), (r.status_code, r.text, body)
    if r.status_code != 204:
        assert r.content  # errors always carry a body
    assert server.session.get(f"{server.url}/health", timeout=30).status_code == 200
