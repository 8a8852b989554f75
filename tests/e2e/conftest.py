"""e2e setup: testcontainers without Ryuk, and a closing line naming the server image that was used.

Ryuk (testcontainers' reaper container, ``testcontainers/ryuk``) is disabled: the project's machines reach no
registry to pull it, and every container here is started in a ``with`` block that stops and removes it.
This must be set before testcontainers reads its configuration (at import).
"""

from __future__ import annotations

import os

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

#: filled by the fixtures: which server image the e2e tests ran against, and why
USED_IMAGES: list[str] = []


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001 - pytest hook signature
    for line in USED_IMAGES:
        terminalreporter.write_line(f"e2e: {line}")
