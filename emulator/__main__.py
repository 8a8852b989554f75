"""``python -m emulator serve …``: the embedded InfluxDB 3 Core stand-in (reference §13 flags and env vars)."""

from __future__ import annotations

import sys

from emulator.config import ConfigError, parse_serve_args


def main(argv: list[str] | None = None) -> int:
    """Parse flags (one-line error, exit 2, on bad ones) and run the server until SIGTERM/SIGINT."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["-h"], ["--help"]) or args[:2] in (["serve", "-h"], ["serve", "--help"]):
        from emulator.config import build_parser

        parser = build_parser()
        if args[:1] == ["serve"]:
            parser.parse_args(["serve", "--help"])  # prints the serve help and exits 0
        parser.print_help()
        return 0
    try:
        cfg = parse_serve_args(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from emulator.http.server import run

    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
