"""The modules held to full typing (the first mypy override in pyproject.toml) stay clean:
no ruff finding and no mypy error in any of them. Adding a module to that list puts it under
this test; scripts/lint checks the whole tree."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _typed_files() -> list[str]:
    """Repository paths (relative) of the modules in the fully-typed override."""
    strict = next(o for o in PYPROJECT["tool"]["mypy"]["overrides"] if o.get("disallow_untyped_defs"))
    mapping = PYPROJECT["tool"]["setuptools"]["package-dir"]
    paths: list[str] = []
    for module in strict["module"]:
        name = module.removesuffix(".*")
        # the longest mapped package the module lives in: callproof.storage.x -> storage/x
        package = max((p for p in mapping if name == p or name.startswith(p + ".")), key=len)
        rel = Path(mapping[package], *name[len(package):].strip(".").split(".") if name != package else ())
        path = rel if (REPO / rel).is_dir() else rel.with_suffix(".py")
        assert (REPO / path).exists(), f"{module} in the mypy override names no module"
        paths.append(str(path))
    return paths


def test_typed_modules_pass_ruff() -> None:
    files = _typed_files()
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-fix", "--no-cache", *files],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_typed_modules_pass_mypy(tmp_path: Path) -> None:
    files = _typed_files()
    env = {**os.environ, "PYTHON": sys.executable, "LINT_TREE": str(tmp_path / "tree")}
    proc = subprocess.run(["scripts/lint", "mypy"], cwd=REPO, env=env, capture_output=True, text=True,
                          check=False, timeout=300)
    assert "error:" in proc.stdout or proc.returncode == 0, proc.stdout + proc.stderr  # mypy ran
    assert str(tmp_path) not in proc.stdout  # every path is the repository's again
    ours = [line for line in proc.stdout.splitlines()
            if any(line.startswith(f if f.endswith(".py") else f + "/") for f in files)]
    assert ours == []
