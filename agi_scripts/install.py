"""Install the classic AGI script into Asterisk's agi-bin.

    python -m callproof.agi_scripts.install --agi-bin /usr/share/asterisk/agi-bin \\
        --config /etc/callproof/callproof.toml

writes ``<agi-bin>/callproof-agi`` (mode 0750), a two-line wrapper that runs
``callproof.agi_scripts.callproof_agi`` with this Python (your callproof virtualenv) and the
configuration file.  For an Asterisk that runs chrooted (or on a Python without
callproof installed) ``--bundle DIR`` also copies callproof's packages and its
pure-Python dependencies into DIR and points the wrapper's PYTHONPATH at it;
``--python`` names the interpreter as seen by Asterisk, and ``--chroot ROOT`` the chroot in
which it is found (the bundle is byte-compiled with it once, at install time).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

WRAPPER_NAME = "callproof-agi"
# Our package (its sub-packages mapped from their own folders in a source checkout are
# copied into it) and the pure-Python modules the AGI path imports. The sandbox is not needed.
OUR_PACKAGE = "callproof"
OUR_SUBPACKAGES = ("storage", "ari_app", "agi_scripts", "dialplan")
LEFT_OUT = ("sandbox",)
# stdnum: CPF validation when the dialplan sets CALLPROOF_CPF (callproof/call_identity.py).
# bech32: the age recipients recordings are encrypted to (callproof/encryption/keys.py).
DEPENDENCIES = (
    "asterisk", "six", "aiosqlite", "typing_extensions", "phonenumbers", "panoramisk", "stdnum", "bech32",
)


def _module_path(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise SystemExit(f"install: module {name!r} not found in this Python ({sys.executable})")
    origin = Path(spec.origin)
    return origin.parent if origin.name == "__init__.py" else origin


def _copy(src: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
    if src.is_dir():
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "tests")
        try:  # hard links are instant when DIR is on the same file system
            shutil.copytree(src, dest, ignore=ignore, copy_function=os.link)
        except OSError:
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(src, dest, ignore=ignore)
    else:
        shutil.copy2(src, dest)


def bundle(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True, mode=0o750)
    ours = _module_path(OUR_PACKAGE)
    _copy(ours, dest / OUR_PACKAGE)
    for name in LEFT_OUT:
        _remove(dest / OUR_PACKAGE / name)
    for name in OUR_SUBPACKAGES:  # from an editable install these live outside callproof/
        src = _module_path(f"{OUR_PACKAGE}.{name}")
        if src.parent != ours:
            _copy(src, dest / OUR_PACKAGE / name)
    for name in DEPENDENCIES:
        src = _module_path(name)
        _copy(src, dest / src.name)
    return dest


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)


def compile_bundle(dest: Path, python: str, chroot: Path | None = None) -> None:
    """Byte-compile the bundle with the Python that will run it, once: otherwise every AGI
    process compiles what it imports (phonenumbers is large) and the first calls are slow.
    With ``chroot``, that Python is the chroot's: DEST is bind-mounted at the same path."""
    command = [python, "-m", "compileall", "-q", "-j", "0", str(dest)]
    if chroot is None:
        subprocess.run(command, check=True)
        return
    script = ('set -e; root=$1; dir=$2; shift 2; mkdir -p "$root$dir"; '
              'mount --bind "$dir" "$root$dir"; chroot "$root" "$@"')
    subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
                    str(chroot), str(dest), *command], check=True)


def install(agi_bin: Path, config: Path, python: str = sys.executable, pythonpath: Path | None = None) -> Path:
    agi_bin.mkdir(parents=True, exist_ok=True)
    env = f"PYTHONPATH={shlex.quote(str(pythonpath))} " if pythonpath else ""
    text = ("#!/bin/sh\n# callproof classic AGI; written by python -m callproof.agi_scripts.install\n"
            f"{env}exec {shlex.quote(python)} -m callproof.agi_scripts.callproof_agi"
            f" --config {shlex.quote(str(config))} \"$@\"\n")
    target = agi_bin / WRAPPER_NAME
    tmp = target.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o750)
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agi-bin", type=Path, required=True, help="Asterisk's astagidir")
    p.add_argument("--config", type=Path, required=True, help="callproof.toml as seen by Asterisk")
    p.add_argument("--python", default=sys.executable, help="interpreter as seen by Asterisk")
    p.add_argument("--bundle", type=Path, help="copy callproof and its dependencies here (chrooted Asterisk)")
    p.add_argument("--chroot", type=Path, help="Asterisk's chroot: compile the bundle with its --python")
    args = p.parse_args(argv)
    pythonpath = bundle(args.bundle) if args.bundle else None
    if pythonpath is not None:
        compile_bundle(pythonpath, args.python, args.chroot)
    print(install(args.agi_bin, args.config, args.python, pythonpath))
    describe(args.config)
    return 0


def describe(config_path: Path) -> None:
    """What the script will use, to compare with `callproof check-config` for `callproof run`:
    the dialplan's fallback (dialplan/callproof.conf) must reach the same database. A file
    that does not load here (e.g. a path seen only inside Asterisk's chroot) is a warning."""
    from callproof.config import ConfigError, load_config

    try:
        config = load_config(config_path, require_asterisk_apis=False)
    except (ConfigError, OSError) as exc:
        print(f"install: warning: {config_path} does not load here ({exc}); every AGI call would fail with "
              "CALLPROOF_REASON=config_error", file=sys.stderr)
        return
    print(f"database {config.storage.database}\nrecordings {config.recording.root}\n"
          f"prompts {config.prompts.directory}\n(the same as callproof run's, and writable by the Asterisk user)")


if __name__ == "__main__":
    sys.exit(main())
