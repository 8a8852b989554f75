"""``make secrets``: create the secret files offline, never overwriting one that exists.

- ``influxdb3_admin_token.json``: the server's offline admin-token form
  ``{"token": "apiv3_<86 url-safe base64 chars>", "name": "_admin"}`` (64 random bytes, no padding), mode 600;
- ``github_token``, ``kapa_token``, ``notify_url``: empty placeholders (mode 600) for you to fill in.

Nothing secret is printed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import sys
from pathlib import Path

ADMIN_TOKEN_FILE = "influxdb3_admin_token.json"
PLACEHOLDERS = ("github_token", "kapa_token", "notify_url")


def new_admin_token() -> str:
    """``apiv3_`` + url-safe base64 without padding of 64 random bytes (92 characters), as the server makes."""
    return "apiv3_" + base64.urlsafe_b64encode(secrets.token_bytes(64)).decode("ascii").rstrip("=")


def _create_exclusive(path: Path, content: str) -> bool:
    """Write ``content`` to a new file with mode 600; False (and no write) when the file exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(content)
    os.chmod(path, 0o600)  # in case the umask narrowed or widened it
    return True


def make_secrets(directory: Path) -> list[str]:
    """Create missing secret files in ``directory``; return one status line per file."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    admin = directory / ADMIN_TOKEN_FILE
    body = json.dumps({"token": new_admin_token(), "name": "_admin"}) + "\n"
    lines.append(f"{admin}: {'created' if _create_exclusive(admin, body) else 'exists, kept'}")
    for name in PLACEHOLDERS:
        path = directory / name
        lines.append(f"{path}: {'created (empty; fill it in)' if _create_exclusive(path, '') else 'exists, kept'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="secrets", help="target directory (default: secrets)")
    args = parser.parse_args(argv)
    for line in make_secrets(Path(args.dir)):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
