"""The classic AGI script installed into a sandbox's agi-bin, the way an admin does it
(``python -m callproof.agi_scripts.install --bundle ... --chroot ...``).

Asterisk runs it inside the chroot with the rootfs's python3, so callproof and its
pure-Python dependencies are bundled under the sandbox's run dir (visible inside at the
same path) and byte-compiled there once per sandbox; each test module then writes the
wrapper naming its own configuration (modules of one worker run one after another) and
removes it when done: a call whose ``Stasis()`` fails in a later module (the shipped
``callproof-entry`` falls back to this script) must not be served into another module's
database; without the script it is handed off with ``app_unavailable``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from callproof.agi_scripts.install import WRAPPER_NAME, bundle, compile_bundle, install

CHROOT_PYTHON = "/usr/bin/python3"


def install_classic_agi(sandbox: Any, config_path: Path) -> Path:
    lib = sandbox.run_dir / "agi-lib"
    compiled = sandbox.run_dir / "agi-lib.compiled"
    if not compiled.exists():
        bundle(lib)
        compile_bundle(lib, CHROOT_PYTHON, chroot=sandbox.rootfs)
        compiled.touch()
    return install(sandbox.run_dir / "agi-bin", config_path, python=CHROOT_PYTHON, pythonpath=lib)


@contextlib.contextmanager
def classic_agi_for(sandbox: Any, config_path: Path) -> Iterator[Path]:
    """The classic script on ``config_path`` for the block; after it, the wrapper another
    fixture of the module had installed is put back (or none is left)."""
    target = sandbox.run_dir / "agi-bin" / WRAPPER_NAME
    before = target.read_text() if target.exists() else None
    wrapper = install_classic_agi(sandbox, config_path)
    try:
        yield wrapper
    finally:
        if before is None:
            wrapper.unlink(missing_ok=True)
        else:
            wrapper.write_text(before)
