"""The real server's own HTTP tests, ported as data (``cases/*.toml``), run against the embedded engine.

One pytest test per original test function, on a fresh in-memory engine. A step that answers differently
fails the test unless ``expected_differ.toml`` lists it with the reason; a listed step that now conforms
fails too, so the list stays true.
"""

from __future__ import annotations

import os

import pytest

from tests.emulator.conformance.runner import (
    TALLY,
    ConformanceTest,
    load_differ,
    load_tests,
    run_test,
)

#: these cases come from the real server's own tests, and each needs a fresh server (fixed names such as
#: database `foo`, the 5-database limit): they run on fresh embedded engines, never against INFLUXDB3_URL
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("INFLUXDB3_URL")),
    reason="ported server tests need a fresh server per test; with INFLUXDB3_URL the real server is the target "
           "of the other emulator tests, and these cases are that server's own",
)

TESTS = load_tests()
DIFFER = {(e.source, e.test): e for e in load_differ()}
TALLY.not_ported_tests = sum(1 for e in DIFFER.values() if not e.ported)


@pytest.mark.parametrize("test", TESTS, ids=[f"{t.source.rsplit('/', 1)[-1]}::{t.name}" for t in TESTS])
def test_conformance_case(test: ConformanceTest) -> None:
    differ = DIFFER.get((test.source, test.name))
    results = run_test(test, differ)
    failures = []
    for r in results:
        if r.expected_to_differ:
            if r.problems:
                TALLY.differ += 1
            elif differ is not None and differ.steps is not None:
                TALLY.failed += 1
                failures.append(f"step {r.step.id}: listed in expected_differ.toml but now conforms")
            else:
                TALLY.passed += 1
        elif r.problems:
            TALLY.failed += 1
            failures.append(f"step {r.step.id} {r.step.spec.get('method', 'GET')} {r.step.spec['path']}: "
                            + "; ".join(r.problems))
        else:
            TALLY.passed += 1
    TALLY.ported += len(results)
    TALLY.tests += 1
    TALLY.originals.add((test.source, test.name.split("[", 1)[0]))
    if differ is not None and differ.steps is None and not any(r.problems for r in results):
        failures.append("listed in expected_differ.toml as a whole, but every step conforms")
    if failures:
        pytest.fail(f"{test.key}:\n" + "\n".join(failures), pytrace=False)


def test_conformance_differ_list_names_real_tests() -> None:
    """Every entry of the expected-to-differ list names a ported test (or says it is not ported), once."""
    ported = {(t.source, t.name): t for t in TESTS}
    seen = set()
    for e in load_differ():
        key = (e.source, e.test)
        assert key not in seen, f"listed twice: {key}"
        seen.add(key)
        assert e.reason.strip(), f"no reason for {key}"
        if e.ported:
            assert key in ported, f"expected_differ.toml names {key}, which is not in cases/"
            if e.steps is not None:
                ids = {s.id for s in ported[key].steps}
                assert set(e.steps) <= ids, f"{key}: unknown steps {set(e.steps) - ids}"
        else:
            assert key not in ported, f"{key} is ported but listed as not ported"
