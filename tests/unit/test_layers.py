"""Imports flow one way: storage below the transparency log, below receipts, below the
write core, below the API and its transports; ``projections`` (the read side) never
imports the write core or anything above it; the write core's parts never import the
``Ledger`` façade that composes them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ABOVE_CORE = ("ledger.api", "ledger.client", "ledger.server", "ledger.cli")
FORBIDDEN = {
    "projections": ("ledger.core", *ABOVE_CORE),
    "ledger.storage": ("ledger.tlog", "ledger.receipts", "ledger.core", *ABOVE_CORE),
    "ledger.tlog": ("ledger.receipts", "ledger.core", *ABOVE_CORE),
    "ledger.receipts": ("ledger.core", *ABOVE_CORE),
    "ledger.core": ABOVE_CORE,
    "ledger.integrations": ("ledger.storage", "ledger.tlog", "ledger.receipts", "ledger.core",
                            *ABOVE_CORE),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def _modules(package: str) -> list[tuple[str, Path]]:
    folder = ROOT.joinpath(*package.split("."))
    return [(f"{package}.{p.stem}", p) for p in sorted(folder.glob("*.py"))]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_above_it(package: str) -> None:
    wrong = {f"{module} imports {name}"
             for module, path in _modules(package)
             for name in _imports(path)
             for banned in FORBIDDEN[package] if _under(name, banned)}
    assert not wrong, sorted(wrong)


def test_the_parts_of_the_write_core_do_not_import_the_facade() -> None:
    wrong = [module for module, path in _modules("ledger.core")
             if module != "ledger.core.facade"
             and any(_under(name, "ledger.core.facade") for name in _imports(path))]
    assert not wrong
