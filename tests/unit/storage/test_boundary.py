"""The storage boundary: outside ``storage/`` nothing imports sqlite3,
aiosqlite or a private part of storage (a ``_module`` or a ``_name``).
Callers use :class:`Database`, :class:`SyncDatabase` and the repositories.

Checked over the whole runtime tree by parsing every module's imports.
``PENDING`` lists files still being moved behind the boundary; the test also
fails when one of them no longer breaks the rule, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
# Repository folders that ship (pyproject.toml package-dir); storage/ is the allowed side.
RUNTIME = ("callproof", "ari_app", "agi_scripts", "dialplan", "sandbox")
DRIVERS = frozenset({"sqlite3", "aiosqlite"})
STORAGE = ("callproof.storage", "storage")

# file -> what it still imports; remove an entry when the file is fixed.
PENDING: dict[str, set[str]] = {
}


def _storage_private(module: str, names: list[str]) -> list[str]:
    """The private storage parts named by ``from module import names`` / ``import module``."""
    for prefix in STORAGE:
        if module == prefix or module.startswith(prefix + "."):
            rest = module[len(prefix):].lstrip(".")
            if any(part.startswith("_") for part in rest.split(".") if part):
                return [module]
            return [f"{module}.{n}" for n in names if n.startswith("_")]
    return []


def offences(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in DRIVERS:
                    found.add(alias.name.split(".")[0])
                found.update(_storage_private(alias.name, []))
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolve against the file's package
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, module] if module else base)
            if module.split(".")[0] in DRIVERS:
                found.add(module.split(".")[0])
            found.update(_storage_private(module, [a.name for a in node.names]))
    return found


def runtime_files() -> list[Path]:
    files: list[Path] = []
    for folder in RUNTIME:
        files.extend(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)
    return sorted(files)


def test_the_checker_sees_what_it_must():
    sample = ROOT / "storage" / "sync.py"
    assert "sqlite3" in offences(sample)          # storage itself may, and is seen doing it
    assert _storage_private("callproof.storage._sqlutil", ["fetch_all"]) == ["callproof.storage._sqlutil"]
    assert _storage_private("callproof.storage.protocols", ["_SQL_SMS", "format_protocol"]) == [
        "callproof.storage.protocols._SQL_SMS"]
    assert _storage_private("callproof.storage", ["SyncDatabase"]) == []


@pytest.mark.parametrize("path", runtime_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_outside_storage_reaches_the_driver_or_storage_internals(path: Path):
    name = str(path.relative_to(ROOT))
    found = offences(path)
    if name in PENDING:
        assert found, f"{name} keeps to the boundary now: remove it from PENDING"
        assert found <= PENDING[name], f"{name} imports more than PENDING allows: {sorted(found - PENDING[name])}"
        return
    assert not found, f"{name} imports {sorted(found)}: go through callproof.storage (Database / SyncDatabase)"
