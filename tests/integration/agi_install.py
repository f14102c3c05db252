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

from pathlib import Path
from typing import Any

from callproof.agi_scripts.install import bundle, compile_bundle, install

CHROOT_PYTHON = "/usr/bin/python3"


def install_classic_agi(sandbox: Any, config_path: Path) -> Path:
    lib = sandbox.run_dir / "agi-lib"
    compiled = sandbox.run_dir / "agi-lib.compiled"
    if not compiled.exists():
        bundle(lib)
        compile_bundle(lib, CHROOT_PYTHON, chroot=sandbox.rootfs)
        compiled.touch()
    return install(sandbox.run_dir / "agi-bin", config_path, python=CHROOT_PYTHON, pythonpath=lib)
