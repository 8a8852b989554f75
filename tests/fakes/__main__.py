"""Serve the fake GitHub and Kapa APIs with sample data until SIGTERM/SIGINT (for `make demo`).

    python -m tests.fakes --github-port 8301 --kapa-port 8302 [--host 0.0.0.0]

Prints `GITHUB_API_URL=<url>` and `KAPA_API_URL=<url>` (one per line, flushed) once both listen. Demo mode
accepts any non-empty token or API key.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import UTC, datetime

from tests.fakes.github import FakeGitHub
from tests.fakes.kapa import FakeKapa
from tests.fakes.sample import populate_github, populate_kapa


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes", description=__doc__.splitlines()[0])
    parser.add_argument("--github-port", type=int, default=0, help="port of the fake GitHub (0 = any free port)")
    parser.add_argument("--kapa-port", type=int, default=0, help="port of the fake Kapa API (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 lets containers reach them)")
    options = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    now = datetime.now(UTC)
    github = FakeGitHub(accept_any_token=True, host=options.host, port=options.github_port)
    kapa = FakeKapa(accept_any_key=True, host=options.host, port=options.kapa_port)
    populate_github(github, now)
    populate_kapa(kapa, now)
    with github, kapa:
        print(f"GITHUB_API_URL={github.url}", flush=True)
        print(f"KAPA_API_URL={kapa.url}", flush=True)
        while not stop.wait(0.5):
            pass
    print("fakes stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
