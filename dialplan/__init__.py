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
    sources = files()
    if not overwrite:  # refuse before copying anything: never half an installation
        existing = [str(dest / source.name) for source in sources if (dest / source.name).exists()]
        if existing:
            raise FileExistsError(f"{', '.join(existing)} exist(s) (use --overwrite to replace)")
    dest.mkdir(parents=True, exist_ok=True, mode=0o755)
    written = []
    for source in sources:
        target = dest / source.name
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        tmp.chmod(0o644)
        tmp.replace(target)
        written.append(target)
    return written
