"""The import rule of docs/architecture.md, checked over the source with ``ast``.

Each package and each layer of ``bench/`` may import only the layers below it. A module's imports are read
from its syntax tree (function-level imports included, relative imports resolved), so a violation fails here
whatever the import's position. The same checker runs on a small tree with a deliberate violation, so a rule
that silently stopped matching would fail too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.support import ROOT

PACKAGES = ("server", "clients", "bench", "notebooks", "peers")
"""The project's own top-level packages; imports of anything else (stdlib, third party) are not restricted."""

ALLOWED: dict[str, tuple[str, ...]] = {
    # layer: the project modules it may import (itself included). Longest matching layer name wins.
    "server": ("server",),
    "clients": ("clients",),
    "bench.contract": ("bench.contract", "server.config"),
    "bench.process": ("bench.process",),
    "bench.agents": ("bench.agents", "bench.contract", "bench.process", "clients"),
    "bench.link": ("bench.link", "bench.contract", "bench.process"),
    "bench.run": (
        "bench.run",
        "bench.agents",
        "bench.link",
        "bench.contract",
        "bench.process",
        "bench.report",
        "clients",
    ),
    "bench.report": ("bench.report", "bench.contract"),
    "bench": ("bench.contract", "bench.run", "bench.report"),
    "notebooks": ("notebooks", "bench.report"),
    # A peer is another implementation measured beside the lab: it shares nothing with it (the bench starts
    # it by its command line only), and peers share nothing with each other.
    "peers": ("peers",),
    "peers.flask_socketio": ("peers.flask_socketio",),
    "peers.nchan": ("peers.nchan",),
    "peers.websockets": ("peers.websockets",),
}
"""docs/architecture.md's table. ``bench`` itself is its ``__init__`` and ``__main__`` (the command line)."""


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(module: str, root: Path) -> bool:
    path = root.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imports(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """``(line, absolute module)`` of every import in ``path``, relative ones resolved.

    ``from package import name`` yields ``package``, and ``package.name`` too when that is a module or a
    private name (which another package must not take either).
    """
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private or _is_module(f"{target}.{alias.name}", root):
                    yield node.lineno, f"{target}.{alias.name}"


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str, rules: Mapping[str, tuple[str, ...]]) -> str | None:
    matches = [layer for layer in rules if _within(module, layer)]
    return max(matches, key=len) if matches else None


def violations(root: Path, rules: Mapping[str, tuple[str, ...]] = ALLOWED) -> list[str]:
    """Every import in the project's packages under ``root`` that its layer's rule does not allow."""
    found = []
    for top in PACKAGES:
        for path in sorted((root / top).rglob("*.py")):
            importer = module_name(path, root)
            layer = layer_of(importer, rules)
            if layer is None:
                continue
            for line, target in imports(path, root):
                if target.split(".")[0] not in PACKAGES:
                    continue
                where = f"{path.relative_to(root)}:{line}: {importer} imports {target}"
                private = any(p.startswith("_") and not p.startswith("__") for p in target.split(".")[1:])
                if private and target.split(".")[0] != importer.split(".")[0]:
                    found.append(f"{where} (a private module of another package)")
                elif not any(_within(target, allowed) for allowed in rules[layer]):
                    found.append(f"{where} (layer {layer} may import only {', '.join(rules[layer])})")
    return found


def test_the_project_keeps_its_import_rule() -> None:
    assert violations(ROOT) == []


def _tree(tmp_path: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"bench/report/x.py": "from bench.run import runner\n"}, "bench.report.x imports bench.run"),
        ({"bench/report/x.py": "def f():\n    import bench.agents.fleet\n"}, "imports bench.agents.fleet"),
        ({"bench/report/x.py": "from ..run import runner\n"}, "imports bench.run"),
        ({"server/x.py": "import clients\n"}, "server.x imports clients"),
        ({"clients/x.py": "from server.bus import core\n"}, "clients.x imports server.bus"),
        ({"bench/contract/x.py": "from server.app import create_app\n"}, "imports server.app"),
        ({"bench/agents/x.py": "from clients._subscriber import Subscriber\n"}, "a private module of another package"),
        ({"bench/agents/x.py": "from clients import _subscriber\n"}, "a private module of another package"),
        ({"notebooks/x.py": "from bench.contract import schema\n"}, "notebooks.x imports bench.contract"),
        ({"peers/nchan/x.py": "from server.bus import core\n"}, "peers.nchan.x imports server.bus"),
        ({"peers/nchan/x.py": "from peers.websockets import server\n"}, "peers.nchan.x imports peers.websockets"),
        ({"bench/run/x.py": "import peers.nchan\n"}, "bench.run.x imports peers.nchan"),
    ],
)
def test_a_deliberate_violation_is_caught(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    found = violations(_tree(tmp_path, files))
    assert any(expected in v for v in found), found


def test_allowed_imports_pass_in_a_small_tree(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "bench/report/x.py": "from bench.contract.schema import Run\nfrom . import y\n",
            "bench/report/y.py": "import json\n",
            "bench/run/x.py": "from bench.report import write_report\nfrom clients import Subscriber\n",
            "notebooks/x.py": "from bench.report import load_run\n",
        },
    )
    assert violations(root) == []
