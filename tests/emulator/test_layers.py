"""The emulator's layers (docs/internals.md "Layers"): the core knows no transport and no test helper.

Every module under ``emulator/`` is read with :mod:`ast` (no import side effects) and each import it makes,
at module level or inside a function, is checked:

* core modules (everything not listed as edge or harness below) import neither a transport
  (``emulator.http``, ``emulator.flight``, ``emulator.__main__``, ``emulator.config``, ``emulator.auth``,
  ``emulator.serialize``), nor the harness, nor a transport library (aiohttp, grpc, pyarrow.flight);
* the harness imports core modules only (it builds on the core, like a transport does);
* no emulator module imports the harness (it is a helper for tests).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "emulator"

#: Modules that talk to the outside world: they call into the core, never the other way round.
EDGE = ("emulator.http", "emulator.flight", "emulator.__main__", "emulator.config", "emulator.auth",
        "emulator.serialize")
HARNESS = "emulator.harness"
#: Third-party packages that only a transport may use.
TRANSPORT_LIBS = ("aiohttp", "grpc", "pyarrow.flight", "adbc_driver_flightsql")


def _under(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """Every module name ``source`` imports, as ``(line, dotted name)``; ``from a import b`` gives ``a.b`` too.

    Relative imports are resolved against ``module``; imports under ``if TYPE_CHECKING:`` count as well.
    """
    found: list[tuple[int, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*")
    return found


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    """The layer rule broken by one module's imports, as readable lines (empty when it keeps the rules)."""
    bad: list[str] = []
    if _under(module, EDGE):
        forbidden: tuple[str, ...] = (HARNESS,)
        layer = "transport"
    elif module == HARNESS:
        forbidden = (*EDGE, *TRANSPORT_LIBS)
        layer = "harness"
    else:
        forbidden = (*EDGE, HARNESS, *TRANSPORT_LIBS)
        layer = "core"
    for line, name in imports_of(source, module, is_package):
        if _under(name, forbidden):
            bad.append(f"{module}:{line} ({layer}) imports {name}")
    return sorted(set(bad))


def test_every_emulator_module_keeps_the_layer_rules() -> None:
    paths = sorted(PACKAGE.rglob("*.py"))
    assert len(paths) > 15  # the walk found the package
    bad: list[str] = []
    for path in paths:
        bad.extend(violations(module_name(path), path.read_text(encoding="utf-8"), path.name == "__init__.py"))
    assert bad == [], "layer rule broken (docs/internals.md Layers):\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        # the two imports this rule was written to remove (issue 10 item 8)
        ("emulator.processing.engine", "def f():\n    from emulator.http.processing_routes import build_routes\n",
         ["emulator.processing.engine:2 (core) imports emulator.http.processing_routes",
          "emulator.processing.engine:2 (core) imports emulator.http.processing_routes.build_routes"]),
        ("emulator.http.processing_routes", "def f():\n    from emulator.harness import lp_to_table_batches\n",
         ["emulator.http.processing_routes:2 (transport) imports emulator.harness",
          "emulator.http.processing_routes:2 (transport) imports emulator.harness.lp_to_table_batches"]),
        ("emulator.processing.engine", "from ..http.base import Request\n",
         ["emulator.processing.engine:1 (core) imports emulator.http.base",
          "emulator.processing.engine:1 (core) imports emulator.http.base.Request"]),
        ("emulator.engine", "from emulator import http\n",
         ["emulator.engine:1 (core) imports emulator.http"]),
        ("emulator.query", "import pyarrow.flight as fl\n", ["emulator.query:1 (core) imports pyarrow.flight"]),
        ("emulator.harness", "from emulator.auth import TokenStore\n",
         ["emulator.harness:1 (harness) imports emulator.auth",
          "emulator.harness:1 (harness) imports emulator.auth.TokenStore"]),
        # allowed: the core among itself, transports into the core, the harness into the core
        ("emulator.processing.engine", "from emulator.api import Request\nimport pyarrow\n", []),
        ("emulator.http.server", "from emulator.engine import Engine\nimport aiohttp\n", []),
        ("emulator.harness", "from emulator.processing.runtime import call_plugin\n", []),
        ("emulator.engine", "from emulator.httpish import x\n", []),
    ],
)
def test_rule_checker_flags_what_it_should(module: str, source: str, expected: list[str]) -> None:
    assert violations(module, source) == expected
