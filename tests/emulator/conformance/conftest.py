"""Prints the conformance summary (cases ported, passing, expected to differ) at the end of the session."""

from __future__ import annotations

import pytest

from tests.emulator.conformance.runner import TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line a reader can quote: how much of the server's own test suite the stand-in meets."""
    if not TALLY.tests:
        return
    terminalreporter.write_sep("-", "conformance with the server's own tests")
    terminalreporter.write_line(TALLY.summary())
