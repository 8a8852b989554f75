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
from collections.abc import Callable
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


def activate_venv(venv_dir: Path) -> Callable[[], None]:
    """Activate ``venv_dir`` in this process as the server does at startup; returns a function that undoes it.

    The server sources ``<venv>/bin/activate`` in bash and copies the resulting environment into its own
    process, then sets ``sys.prefix`` and ``sys.exec_prefix`` to the venv and unsets ``PYTHONHOME``
    (influxdb3_processing_engine ``virtualenv.rs`` ``initialize_venv`` / ``init_pyo3``). What that changes,
    done here directly: ``VIRTUAL_ENV`` = the venv's absolute path, ``<venv>/bin`` first on ``PATH``,
    ``VIRTUAL_ENV_PROMPT`` = the venv directory's name (CPython 3.13's activate script, the server's Python),
    ``PYTHONHOME`` removed; ``sys.prefix``/``sys.exec_prefix`` = the venv. Plugins see it in ``os.environ``
    and in subprocesses they start. The undo (called when the processing engine stops) restores the previous
    values where they are still the ones set here, so tests that start many engines in one process stay clean.
    """
    path = os.path.abspath(venv_dir)
    bin_dir = os.path.join(path, "Scripts" if os.name == "nt" else "bin")
    before_env = {k: os.environ.get(k) for k in ("VIRTUAL_ENV", "PATH", "VIRTUAL_ENV_PROMPT", "PYTHONHOME")}
    before_sys = (sys.prefix, sys.exec_prefix)
    old_path = os.environ.get("PATH", "")
    new_env = {
        "VIRTUAL_ENV": path,
        "PATH": bin_dir + (os.pathsep + old_path if old_path else ""),
        "VIRTUAL_ENV_PROMPT": os.path.basename(path),
    }
    os.environ.update(new_env)
    os.environ.pop("PYTHONHOME", None)
    sys.prefix = sys.exec_prefix = path
    log.info("processing engine: activated plugin venv %s", path)

    def undo() -> None:
        for key, value in before_env.items():
            if key in new_env and os.environ.get(key) != new_env[key]:
                continue  # changed since by someone else: leave it
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if (sys.prefix, sys.exec_prefix) == (path, path):
            sys.prefix, sys.exec_prefix = before_sys

    return undo
