"""The install, step by step: folders, secrets, configuration, signing key, Asterisk's
files, the AGI script, prompts, and a reload of exactly the Asterisk modules whose files
changed.  Each step is idempotent; :func:`install` returns what it did."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .asterisk_conf import RELOADS, plan
from .config_file import ensure_config
from .files import chown, make_dir, write_file
from .layout import Layout
from .secrets_file import ensure_secrets

#: runs one Asterisk CLI command; returns (exit code, output)
Rx = Callable[[str], tuple[int, str]]


class InstallError(Exception):
    """The install cannot go on; the message says what to do."""


@dataclass
class InstallReport:
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    ready: list[str] = field(default_factory=list)   # rewritten from the package on every run
    reloaded: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def asterisk_rx(command: str) -> tuple[int, str]:
    """``asterisk -rx COMMAND`` on this machine (exit 127 when Asterisk is not installed)."""
    try:
        done = subprocess.run(["asterisk", "-rx", command], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return 127, "asterisk: command not found"
    except subprocess.TimeoutExpired:
        return 124, f"asterisk -rx {command!r} timed out"
    return done.returncode, (done.stdout + done.stderr).strip()


def service_ids(user: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise InstallError(f"the user {user!r} does not exist: install Debian's asterisk package first "
                           "(apt install asterisk), it creates it") from None
    return entry.pw_uid, entry.pw_gid


def install(layout: Layout, *, rx: Rx | None = asterisk_rx, prompts: bool = True) -> InstallReport:
    report = InstallReport()
    uid, gid = service_ids(layout.user)
    root_uid = 0 if os.geteuid() == 0 else None  # an unprivileged (test) run owns what it makes

    make_dir(layout.etc, mode=0o750, user_id=root_uid, group_id=gid)
    make_dir(layout.evidence_dir, mode=0o750, user_id=root_uid, group_id=gid)
    make_dir(layout.asterisk_snippets, mode=0o750, user_id=root_uid, group_id=gid)
    for folder in (layout.var_lib, layout.var_lib / "exports", layout.var_lib / "history",
                   layout.recordings, layout.log_dir):
        make_dir(folder, mode=0o750, user_id=uid, group_id=gid)

    values, added = ensure_secrets(layout.secrets, group_id=gid)
    if added:
        report.written.append(f"{layout.secrets} (generated: {', '.join(added)})")
    else:
        report.kept.append(str(layout.secrets))

    asterisk = plan(layout, ari_password=values["CALLPROOF_ARI_PASSWORD"],
                    ami_password=values["CALLPROOF_AMI_PASSWORD"])
    report.notes.extend(asterisk.notes)
    wrote_config = ensure_config(layout.config, layout.config_template, signing_key=layout.inside(layout.signing_key),
                                 ari_url=asterisk.ari_url, ami_port=asterisk.ami_port, group_id=gid)
    (report.written if wrote_config else report.kept).append(str(layout.config))

    if not layout.signing_key.exists():
        from callproof.evidence.keys import generate_key_file
        fingerprint = generate_key_file(layout.signing_key)
        chown(layout.signing_key, uid, gid)
        report.written.append(f"{layout.signing_key} (evidence signing key, fingerprint {fingerprint})")

    reloads: set[str] = set()
    for path, text in asterisk.files.items():
        if path.exists() and path.read_text() == text:
            continue
        if path in asterisk.admin_files and path.exists():
            target = path.resolve()  # an admin's file may be a link (to a config repository, ...)
            st = target.stat()
            write_file(target, text, mode=st.st_mode & 0o7777, user_id=st.st_uid, group_id=st.st_gid)
        else:
            write_file(path, text, mode=0o640, user_id=root_uid, group_id=gid)
        report.written.append(str(path))
        reloads.add(asterisk.reload_for[path])
    if _shipped_dialplan_changed(layout):
        reloads.add(RELOADS["extensions.conf"])

    report.ready.append(_install_agi_script(layout, gid, root_uid))
    if prompts:
        report.ready.append(_generate_prompts(layout, uid, gid))
    _reload(rx, sorted(reloads), report)
    return report


def _shipped_dialplan_changed(layout: Layout) -> bool:
    """True when the package's dialplan differs from the one the last run saw (an upgrade)."""
    digest = hashlib.sha256()
    for conf in sorted(layout.shipped_dialplan.glob("*.conf")):
        digest.update(conf.name.encode() + b"\0" + conf.read_bytes())
    state_file = layout.var_lib / "install-state.json"
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        state = {}
    if state.get("dialplan_sha256") == digest.hexdigest():
        return False
    write_file(state_file, json.dumps({"dialplan_sha256": digest.hexdigest()}) + "\n", mode=0o640)
    return True


def _install_agi_script(layout: Layout, gid: int, root_uid: int | None) -> str:
    """The classic AGI wrapper the dialplan's fallback runs while `callproof run` is away."""
    from callproof.agi_scripts.install import install as install_agi

    script = install_agi(layout.agi_bin, config=Path(layout.inside(layout.config)),
                         python=layout.inside(layout.venv / "bin" / "python"))
    chown(script, root_uid, gid)  # Asterisk (the group) runs it
    return str(script)


def _generate_prompts(layout: Layout, uid: int, gid: int) -> str:
    from callproof.prompts import generate_prompts

    configured = _config_value(layout, "prompts", "directory") or "/var/lib/callproof/prompts"
    dest = layout.root / str(configured).lstrip("/")
    make_dir(dest, mode=0o750, user_id=uid, group_id=gid)
    generate_prompts(dest)
    for folder, dirs, files in os.walk(dest):
        for name in [*dirs, *files]:
            chown(Path(folder) / name, uid, gid)
    return f"{dest} (prompts)"


def _config_value(layout: Layout, section: str, key: str) -> object:
    try:
        return tomllib.loads(layout.config.read_text()).get(section, {}).get(key)
    except (OSError, tomllib.TOMLDecodeError):
        return None


def _reload(rx: Rx | None, commands: list[str], report: InstallReport) -> None:
    if not commands:
        report.notes.append("Asterisk's configuration is unchanged: nothing to reload")
        return
    code, _ = rx("core show version") if rx is not None else (127, "")
    if code != 0:
        report.notes.append("Asterisk is not running: start it (systemctl start asterisk); it reads the "
                            "new configuration when it starts")
        return
    for command in commands:
        code, output = rx(command)  # type: ignore[misc]
        if code != 0:
            report.notes.append(f"asterisk -rx {command!r} failed: {output}")
        else:
            report.reloaded.append(command)

