"""The dialplan contexts an admin includes (``callproof.conf``, ``callproof-agi.conf``,
``callproof-fastagi.conf``), shipped as package data.

``callproof dialplan install DIR`` copies them where Asterisk reads them (usually
``/etc/asterisk/callproof``); :func:`directory` is where they are in this installation.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path


def directory() -> Path:
    """The folder holding the shipped ``*.conf`` files (a real folder: wheels install unzipped)."""
    return Path(str(resources.files(__name__)))


def files() -> list[Path]:
    return sorted(directory().glob("*.conf"))


def install(dest: Path, *, overwrite: bool = False) -> list[Path]:
    """Copy the shipped contexts into ``dest`` (created 0755 if missing); an existing file is
    kept unless ``overwrite`` (an admin's edits are never lost silently). Returns what was written."""
    dest.mkdir(parents=True, exist_ok=True, mode=0o755)
    written = []
    for source in files():
        target = dest / source.name
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target} exists (use --overwrite to replace it)")
        shutil.copyfile(source, target)
        target.chmod(0o644)
        written.append(target)
    return written
