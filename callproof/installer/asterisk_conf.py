"""callproof's side of Asterisk's configuration, as includes the admin's files keep.

The admin's ``http.conf``, ``ari.conf``, ``manager.conf`` and ``extensions.conf`` get one
``#tryinclude`` line each, appended once under a comment; nothing else in them changes.
What the lines include lives in ``/etc/asterisk/callproof/`` (0750 root:asterisk, files
0640 since two of them hold passwords) and is rewritten by every install run from
``secrets.env``, except ``extensions.conf`` there, which is the admin's to edit.  The
snippets add to the admin's ``[general]`` with Asterisk's ``[general](+)`` instead of
replacing it; where the admin already enabled the HTTP server or the manager, their
settings stay and callproof's configuration points at them instead.

:func:`plan` computes every file's new content without writing anything, so the unit
tests can read what an install would do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .layout import Layout

MARKER = "; callproof: added by `callproof install` (`apt purge callproof` removes it)"

#: included file -> the CLI command that makes Asterisk read it again
RELOADS = {
    "http.conf": "module reload http",
    "ari.conf": "module reload res_ari.so",
    "manager.conf": "module reload manager",
    "extensions.conf": "dialplan reload",
}

#: The AMI account's classes: read ``agent`` for the queue events (time to agent), write
#: ``reporting`` for ShowDialPlan (callproof doctor's dialplan check), never ``command``.
AMI_READ = "call,system,user,dtmf,agent"
AMI_WRITE = "call,system,originate,reporting"


@dataclass
class AsteriskPlan:
    files: dict[Path, str] = field(default_factory=dict)       # path -> full new text
    admin_files: set[Path] = field(default_factory=set)        # the admin's files (mode kept)
    reload_for: dict[Path, str] = field(default_factory=dict)  # path -> RELOADS command
    ari_url: str = "http://127.0.0.1:8088/"
    ami_port: int = 5038
    notes: list[str] = field(default_factory=list)


def general_settings(text: str) -> dict[str, str]:
    """The uncommented ``key = value`` lines of the first ``[general]`` section."""
    settings: dict[str, str] = {}
    section = None
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        header = re.match(r"^\[([^\]]+)\]", line)
        if header:
            if section == "general":
                break
            section = header.group(1).strip().lower()
            continue
        if section == "general" and "=" in line:
            key, value = line.split("=", 1)
            settings[key.strip().lower()] = value.strip().lstrip(">").strip()
    return settings


def _is_yes(value: str | None) -> bool:
    return (value or "").lower() in ("yes", "true", "y", "t", "1", "on")


def _has_general(text: str) -> bool:
    return re.search(r"^\s*\[general\]", text, re.MULTILINE) is not None


def _general_header(admin_text: str) -> str:
    # (+) adds to the admin's [general]; without one, (+) would be an error
    return "[general](+)" if _has_general(admin_text) else "[general]"


def _loopback(address: str) -> str:
    return "127.0.0.1" if address in ("", "0.0.0.0", "::", "[::]") else address


def plan(layout: Layout, *, ari_password: str, ami_password: str, ari_user: str = "callproof",
         ami_user: str = "callproof") -> AsteriskPlan:
    result = AsteriskPlan()
    etc, ours = layout.asterisk_etc, layout.asterisk_snippets
    admin = {name: _read(etc / name) for name in RELOADS}
    head = "; managed by `callproof install`: rewritten by every install and upgrade (edits are lost)\n"

    http = general_settings(admin["http.conf"])
    if _is_yes(http.get("enabled")):
        port = http.get("bindport", "8088")
        result.ari_url = f"http://{_loopback(http.get('bindaddr', '127.0.0.1'))}:{port}/"
        result.notes.append(f"Asterisk's HTTP server is already enabled in http.conf; ARI is used at "
                            f"{result.ari_url}")
        http_text = head + "; your http.conf already enables the HTTP server: nothing to add\n"
    else:
        http_text = (head + _general_header(admin["http.conf"])
                     + "\nenabled = yes\nbindaddr = 127.0.0.1\nbindport = 8088\n")
    ari_text = (head + _general_header(admin["ari.conf"]) + "\nenabled = yes\n\n"
                f"[{ari_user}]\ntype = user\nread_only = no\npassword = {ari_password}\n"
                "password_format = plain\n")
    manager = general_settings(admin["manager.conf"])
    if _is_yes(manager.get("enabled")):
        result.ami_port = int(manager.get("port", "5038"))
        general = ""
    else:
        general = _general_header(admin["manager.conf"]) + "\nenabled = yes\nport = 5038\nbindaddr = 127.0.0.1\n\n"
    manager_text = (head + general + f"[{ami_user}]\nsecret = {ami_password}\n"
                    "deny = 0.0.0.0/0.0.0.0\npermit = 127.0.0.1/255.255.255.255\n"
                    f"read = {AMI_READ}\nwrite = {AMI_WRITE}\n")
    for name, text in (("http.conf", http_text), ("ari.conf", ari_text), ("manager.conf", manager_text)):
        result.files[ours / name] = text
        result.reload_for[ours / name] = RELOADS[name]

    site = ours / "extensions.conf"
    if not site.exists():
        result.files[site] = SITE_DIALPLAN
        result.reload_for[site] = RELOADS["extensions.conf"]
    result.admin_files.add(site)

    includes = {
        "http.conf": ['#tryinclude "callproof/http.conf"'],
        "ari.conf": ['#tryinclude "callproof/ari.conf"'],
        "manager.conf": ['#tryinclude "callproof/manager.conf"'],
        "extensions.conf": [f'#tryinclude "{layout.inside(layout.shipped_dialplan)}/callproof.conf"',
                            '#tryinclude "callproof/extensions.conf"'],
    }
    for name, lines in includes.items():
        text = admin[name]
        missing = [line for line in lines if line not in text.splitlines()]
        if missing:
            sep = "" if not text or text.endswith("\n") else "\n"
            # no blank line: `apt purge` deletes the marker and include lines, and the file is
            # as it was (with a final newline if it had none)
            result.files[etc / name] = text + sep + MARKER + "\n" + "\n".join(missing) + "\n"
            result.admin_files.add(etc / name)
            result.reload_for[etc / name] = RELOADS[name]
    return result


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


#: /etc/asterisk/callproof/extensions.conf, written once: where calls go after callproof,
#: and a way to place a first call without a phone (docs/install.md, "First call").
SITE_DIALPLAN = """\
; callproof: your side of the dialplan. Written once by `callproof install`; yours to edit
; (an upgrade never changes it). After editing: asterisk -rx 'dialplan reload'
;
; Send customer-service calls to callproof from your inbound context (e.g. your trunk's):
;     exten => _X.,1,Goto(callproof-entry,${EXTEN},1)

[callproof-agents]
; Every call comes here after the announcement, the protocol number and the start of the
; recording. Replace the Echo() with your agents, e.g.
;     exten => s,1,Queue(support)        (a queue defined in queues.conf)
;     exten => s,1,Dial(PJSIP/agent1,30)
; Echo() repeats what the caller says until they hang up: enough for a first test call.
exten => s,1,Answer()
 same => n,Echo()
 same => n,Hangup()

[callproof-first-call]
; A test call without a phone: the dialled digits become the caller ID, e.g.
;     asterisk -rx 'channel originate Local/11987654321@callproof-first-call application Wait 40'
exten => _X.,1,Set(CALLERID(num)=${EXTEN})
 same => n,Goto(callproof-entry,s,1)
"""
