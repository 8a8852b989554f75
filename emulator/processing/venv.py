"""The plugin virtual environment (reference: processing §7 ``venv``, http §11).

The server creates ``<plugin-dir>/.venv`` (or ``--virtual-env-location``) at startup with its bundled
Python and appends the venv's site-packages to ``sys.path``. Here the venv is made from the running
interpreter without pip (fast), and packages are installed with the running interpreter's pip using
``pip --python <venv python>`` (pip >= 22.3).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import venv
from pathlib import Path

log = logging.getLogger("emulator.processing")

#: pip may take a while for real packages; the HTTP request waits for it as the server's does.
PIP_TIMEOUT_S = 600


class PipError(Exception):
    """pip exited non-zero; ``str()`` is pip's own error output."""


def venv_python(venv_dir: Path) -> Path:
    if os.name == "nt":
        return venv_dir / "Scripts" / "python.exe"
    return venv_dir / "bin" / "python"


def ensure_venv(venv_dir: Path) -> None:
    """Create the venv (no pip inside) unless it already exists."""
    if (venv_dir / "pyvenv.cfg").is_file() and venv_python(venv_dir).exists():
        return
    venv.create(venv_dir, with_pip=False, symlinks=os.name != "nt", clear=False)
    log.info("processing engine: created plugin venv at %s", venv_dir)


def pip_install(venv_dir: Path, args: list[str]) -> str:
    """Run ``python -m pip --python <venv python> install <args>``; returns stdout, raises :class:`PipError`."""
    ensure_venv(venv_dir)
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python",
           str(venv_python(venv_dir)), "install", *args]
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_USER", "PYTHONHOME")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, env=env, check=False)
    if proc.returncode != 0:
        text = (proc.stderr or proc.stdout).strip()
        log.error("processing engine: pip install failed: %s", text)
        raise PipError(text)
    return proc.stdout
