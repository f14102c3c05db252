"""The installed distribution is one namespace, ``callproof``, mapped from the repository's
mandated folders; every Python package folder is listed in pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def _package_folders() -> dict[str, Path]:
    """Every package the wheel must hold, by its installed name, from the folder mapping."""
    found: dict[str, Path] = {}
    for name, folder in SETUPTOOLS["package-dir"].items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            rel = init.parent.relative_to(root)
            found[".".join([name, *rel.parts])] = init.parent
    return found


def test_every_package_folder_is_listed_once() -> None:
    listed = SETUPTOOLS["packages"]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted(_package_folders())


def test_one_top_level_name() -> None:
    assert {name.split(".")[0] for name in SETUPTOOLS["packages"]} == {"callproof"}


def test_the_mandated_folders_are_mapped_into_the_namespace() -> None:
    mapping = SETUPTOOLS["package-dir"]
    for folder in ("storage", "ari_app", "agi_scripts", "dialplan"):
        assert mapping[f"callproof.{folder}"] == folder


def test_runtime_code_never_imports_the_sandbox() -> None:
    """The chroot sandbox is a tool of the demo, tests and benchmarks, not of a running PBX."""
    runtime = [p for folder in ("callproof", "storage", "ari_app", "agi_scripts")
               for p in (REPO / folder).rglob("*.py") if p.name != "demo.py"]  # the demo is the sandbox's user
    offenders = [str(p.relative_to(REPO)) for p in runtime
                 if "callproof.sandbox" in p.read_text() or "from .sandbox" in p.read_text()]
    assert offenders == []


def test_shipped_dialplan_is_package_data() -> None:
    from callproof import dialplan

    names = [p.name for p in dialplan.files()]
    assert names == ["callproof-agi.conf", "callproof-fastagi.conf", "callproof.conf"]
    assert "callproof.dialplan" in SETUPTOOLS["package-data"]


def test_dialplan_install_keeps_an_admins_file(tmp_path: Path) -> None:
    from callproof.cli import main

    dest = tmp_path / "asterisk" / "callproof"
    assert main(["dialplan", "install", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["callproof-agi.conf", "callproof-fastagi.conf",
                                                      "callproof.conf"]
    (dest / "callproof.conf").write_text("; edited by the admin\n")
    (dest / "callproof-agi.conf").unlink()
    assert main(["dialplan", "install", str(dest)]) == 1
    assert (dest / "callproof.conf").read_text() == "; edited by the admin\n"
    assert not (dest / "callproof-agi.conf").exists()  # nothing copied when one file is refused
    assert main(["dialplan", "install", str(dest), "--overwrite"]) == 0
    assert "callproof-entry" in (dest / "callproof.conf").read_text()
