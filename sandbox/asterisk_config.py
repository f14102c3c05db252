"""The configuration files of one sandbox Asterisk run, written into its ``etc/``.

Behaviour verified against Asterisk 22.10.1 (Debian sid)
-------------------------------------------------------
* Start-up with ``autoload=yes`` takes about half a second.  ``NOLOAD_PATTERNS``
  skips what is not needed, mostly modules that refuse to load without their
  own config (PJSIP, IAX2, CDR/CEL backends, realtime drivers, voicemail,
  queues, calendar, XMPP, ...).  Not skippable: ``res_ari`` needs
  ``res_websocket_client``, ``res_rtp_asterisk`` (ARI external media) needs
  ``res_pjproject``, ``func_aes`` needs ``res_crypto``.
* With ``-f`` and without ``-c`` the console log channel goes to stdout, i.e.
  ``run_dir/asterisk.console.log``; ``core stop now`` or SIGTERM end Asterisk in
  under a second.
* ``sounds/es`` exists only with ``asterisk-core-sounds-es`` (which sets the
  alternative); ``-es-gsm`` alone installs the files without the link.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import SandboxError

if TYPE_CHECKING:
    from .instance import Sandbox

NOLOAD_PATTERNS = (
    # other channel technologies and their stacks
    "chan_pjsip.so", "res_pjsip*.so", "func_pjsip_*.so",
    "chan_iax2.so", "chan_dahdi.so", "chan_mobile.so", "chan_unistim.so",
    "chan_motif.so", "chan_console.so", "chan_alsa.so", "chan_oss.so",
    "chan_websocket.so", "chan_audiosocket.so", "app_audiosocket.so", "res_audiosocket.so",
    "res_xmpp.so", "res_hep*.so", "res_stir_shaken.so", "res_geolocation.so",
    "res_stun_monitor.so", "res_resolver_unbound.so", "res_srtp.so",
    # CDR / CEL backends and realtime / database drivers
    "cdr_*.so", "cel_*.so", "res_cdrel_custom.so", "res_config_*.so",
    "res_odbc*.so", "func_odbc.so", "res_realtime.so", "pbx_realtime.so",
    "res_pgsql.so", "res_curl.so", "func_curl.so", "res_config_curl.so",
    # features the sandbox does not use
    "app_voicemail*.so", "app_minivm.so", "app_festival.so",
    "app_alarmreceiver.so", "app_followme.so", "app_amd.so",
    "app_confbridge.so", "app_page.so", "app_agent_pool.so", "res_parking.so",
    "app_adsiprog.so", "app_getcpeid.so", "res_adsi.so", "app_jack.so",
    "res_calendar*.so", "res_phoneprov.so", "res_snmp.so", "res_statsd.so",
    "res_prometheus.so", "res_aeap.so", "res_speech_aeap.so",
    "res_http_media_cache.so", "res_fax*.so",
    "res_smdi.so", "res_corosync.so", "res_clialiases.so",
    "pbx_dundi.so", "pbx_lua.so", "pbx_ael.so", "res_ael_share.so",
)

#: Stock config files copied from the rootfs's /etc/asterisk (tone zones are
#: needed for Ringing/Busy/Congestion and Playtones).
STOCK_CONFIGS = ("indications.conf",)

#: Config files that only need to exist, to keep the console log readable.
QUIET_CONFIGS = {
    "cdr.conf": "[general]\nenable = no\n",
    "cel.conf": "[general]\nenable = no\n",
    "features.conf": "",
    "acl.conf": "",
    "udptl.conf": "",
    "ccss.conf": "",
    "musiconhold.conf": "",
    "stasis.conf": "",
    "pjproject.conf": "",  # res_rtp_asterisk (ARI external media) needs res_pjproject
    "websocket_client.conf": "",  # res_ari needs res_websocket_client
    # two queues for the time-to-agent tests (callproof-sandbox-queue in the dialplan)
    "queues.conf": (
        "[general]\npersistentmembers = no\n\n"
        "[sandbox-answer]\nstrategy = ringall\ntimeout = 30\nretry = 1\n"
        "member => Local/agent@callproof-sandbox-queue-members/n\n\n"
        "[sandbox-noanswer]\nstrategy = ringall\ntimeout = 300\nretry = 1\n"
        "member => Local/ring@callproof-sandbox-queue-members/n\n"
    ),
}

SANDBOX_DIALPLAN = """\
[callproof-sandbox-caller]
; the "customer" half of a Local channel: records what the caller hears until hang-up
exten => s,1,Answer()
 same => n,Set(SANDBOX_MAX_SECONDS=${IF($[${LEN(${SANDBOX_MAX_SECONDS})} = 0]?60:${SANDBOX_MAX_SECONDS})})
 same => n,GotoIf($[${LEN(${SANDBOX_RECORD})} = 0]?listen)
 ; k: keep the file on hang-up, q: no beep, x: DTMF does not end the recording
 same => n,Record(${SANDBOX_RECORD},0,${SANDBOX_MAX_SECONDS},kqx)
 same => n,Hangup()
 same => n(listen),Wait(${SANDBOX_MAX_SECONDS})
 same => n,Hangup()

[callproof-sandbox-entry]
; the "network" in front of the entry context: sets the caller ID verbatim
; (originate's callerId is parsed as "name" <number>), then enters it
exten => s,1,Set(CALLERID(num)=${SANDBOX_CALLER_NUM})
 same => n,Set(CALLERID(name)=${SANDBOX_CALLER_NAME})
 same => n,Goto(${SANDBOX_ENTRY_CONTEXT},${SANDBOX_ENTRY_EXTEN},1)

[callproof-sandbox-playback]
; a known audio source for self-tests and demos: plays ${SANDBOX_PLAYBACK} (default hello-world)
exten => s,1,Answer()
 same => n,Playback(${IF($[${LEN(${SANDBOX_PLAYBACK})} = 0]?hello-world:${SANDBOX_PLAYBACK})})
 same => n,Hangup()

[callproof-sandbox-agents]
; the agents' queue: the hand-off target; tells observers what arrived, then ends
; (with SANDBOX_QUEUE set: a real Queue() instead, see [callproof-sandbox-queue])
exten => s,1,GotoIf($[${LEN(${SANDBOX_QUEUE})} > 0]?callproof-sandbox-queue,s,1)
 same => n,Answer()
 same => n,UserEvent(CallproofHandoff,Protocol: ${CALLPROOF_PROTOCOL},Recording: ${CALLPROOF_RECORDING},Status: ${CALLPROOF_STATUS},Reason: ${CALLPROOF_REASON},Channel: ${CHANNEL},Uniqueid: ${UNIQUEID})
 ; the "agent" talks: a tone, so the call recording has real audio in it
 same => n,Playtones(440/300,0/200)
 same => n,Wait(${IF($[${LEN(${SANDBOX_AGENT_SECONDS})} = 0]?1:${SANDBOX_AGENT_SECONDS})})
 same => n,StopPlaytones()
 same => n,Hangup()
exten => _X.,1,Goto(s,1)
exten => i,1,Goto(s,1)

[callproof-sandbox-queue]
; a real app_queue Queue() (queues.conf): sandbox-answer has an agent who answers after a
; second of ringing, sandbox-noanswer one who never answers (the caller gives up)
exten => s,1,Queue(${SANDBOX_QUEUE},r)
 same => n,Hangup()

[callproof-sandbox-queue-members]
exten => agent,1,Ringing()
 same => n,Wait(1)
 same => n,Answer()
 same => n,Playtones(440/300,0/200)
 same => n,Wait(${IF($[${LEN(${SANDBOX_AGENT_SECONDS})} = 0]?2:${SANDBOX_AGENT_SECONDS})})
 same => n,Hangup()
exten => ring,1,Ringing()
 same => n,Wait(300)
 same => n,Hangup()
"""  # noqa: E501 (a dialplan line cannot be wrapped)



def _modules_dir(rootfs: Path) -> str:
    """The module directory inside the chroot (multiarch path, e.g. /usr/lib/x86_64-linux-gnu/...)."""
    candidates = sorted(rootfs.glob("usr/lib/*/asterisk/modules")) or sorted(
        rootfs.glob("usr/lib/asterisk/modules")
    )
    if not candidates:
        raise SandboxError(f"no Asterisk module directory in {rootfs}; re-run provision()")
    return "/" + str(candidates[0].relative_to(rootfs))


def _asterisk_conf(run_dir: Path, modules_dir: str, system_name: str = "") -> str:
    d = {
        "astcachedir": run_dir / "cache",
        "astetcdir": run_dir / "etc",
        "astmoddir": modules_dir,
        "astvarlibdir": run_dir / "lib",
        "astdbdir": run_dir / "lib",
        "astkeydir": run_dir / "lib",
        "astdatadir": "/usr/share/asterisk",  # core sounds, ARI docs, XML docs
        "astagidir": run_dir / "agi-bin",  # per run: tests install the classic AGI script here
        "astspooldir": run_dir / "spool",
        "astrundir": run_dir / "run",
        "astlogdir": run_dir / "log",
        "astsbindir": "/usr/sbin",
    }
    directories = "".join(f"{key} => {value}\n" for key, value in d.items())
    return (
        "[directories]\n" + directories + "\n[options]\n"
        "verbose = 3\n"
        "defaultlanguage = en\n"
        "documentation_language = en_US\n"
        "hideconnect = yes\n"
        # a node of several on one database: its channel ids become "<systemname>-<time>.<n>"
        + (f"systemname = {system_name}\n" if system_name else "")
    )


def _modules_conf(rootfs: Path, modules_dir: str) -> str:
    available = sorted(p.name for p in (rootfs / modules_dir.lstrip("/")).glob("*.so"))
    skipped = [m for m in available if any(fnmatch.fnmatch(m, p) for p in NOLOAD_PATTERNS)]
    return "[modules]\nautoload = yes\n" + "".join(f"noload => {m}\n" for m in skipped)


def _logger_conf() -> str:
    # With -f and without -c, the "console" channel goes to Asterisk's stdout,
    # i.e. run_dir/asterisk.console.log.
    return (
        "[general]\ndateformat = %F %T.%3q\n\n"
        "[logfiles]\nconsole => notice,warning,error,verbose,dtmf\n"
    )


def _http_conf(port: int) -> str:
    # sessionlimit: the default 100 counts every open ARI connection, WebSockets included;
    # a sandbox serves several callproof applications at once (the tests run a few side by
    # side, each with its own connection pool), which no real PBX does.
    return (
        "[general]\nenabled = yes\nbindaddr = 127.0.0.1\n"
        f"bindport = {port}\nenablestatic = no\nservername = callproof-sandbox\n"
        "sessionlimit = 1000\n"
    )


def _ari_conf(username: str, password: str) -> str:
    return (
        "[general]\nenabled = yes\npretty = no\n\n"
        f"[{username}]\ntype = user\nread_only = no\n"
        f"password = {password}\npassword_format = plain\n"
    )


_AMI_CLASSES = "system,call,log,verbose,command,agent,user,config,dtmf,reporting,cdr,dialplan,originate"


def _manager_conf(port: int, username: str, secret: str) -> str:
    return (
        "[general]\nenabled = yes\n"
        f"port = {port}\nbindaddr = 127.0.0.1\ndisplayconnects = no\n\n"
        f"[{username}]\nsecret = {secret}\n"
        "deny = 0.0.0.0/0.0.0.0\npermit = 127.0.0.1/255.255.255.255\n"
        f"read = {_AMI_CLASSES}\nwrite = {_AMI_CLASSES}\nwritetimeout = 5000\n"
    )


def _extensions_conf(included: Iterable[str], extra_dialplan: str) -> str:
    includes = "".join(f'#include "{name}"\n' for name in included)
    return (
        # no [globals] here: pbx_config reads only the first one, which may be the project's
        "[general]\nstatic = yes\nwriteprotect = yes\nclearglobalvars = no\n\n"
        + SANDBOX_DIALPLAN
        + "\n; the project's dialplan, included the way an admin would\n"
        + includes
        + "\n"
        + extra_dialplan
        + ("\n" if extra_dialplan and not extra_dialplan.endswith("\n") else "")
    )


def write_private(path: Path, text: str) -> None:
    """Write a config file readable by nobody but root and its group (it may hold secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o640)


def write_etc(sandbox: Sandbox) -> None:
    """Write every config file of ``sandbox``'s run into its ``etc_dir`` (ports already chosen)."""
    if sandbox.http_port is None or sandbox.ami_port is None:
        raise SandboxError("the sandbox's ports are chosen before its config is written")
    modules_dir = _modules_dir(sandbox.rootfs)
    included = copy_dialplan(sandbox.dialplan_dir, sandbox.etc_dir)
    files = {
        "asterisk.conf": _asterisk_conf(sandbox.run_dir, modules_dir, sandbox.system_name),
        "modules.conf": _modules_conf(sandbox.rootfs, modules_dir),
        "logger.conf": _logger_conf(),
        "http.conf": _http_conf(sandbox.http_port),
        "ari.conf": _ari_conf(sandbox.ari_username, sandbox.ari_password),
        "manager.conf": _manager_conf(sandbox.ami_port, sandbox.ami_username, sandbox.ami_password),
        "extensions.conf": _extensions_conf(included, sandbox.extra_dialplan),
        **QUIET_CONFIGS,
    }
    for name in STOCK_CONFIGS:
        stock = sandbox.rootfs / "etc" / "asterisk" / name
        if stock.is_file():
            files[name] = stock.read_text()
    for name, text in files.items():
        write_private(sandbox.etc_dir / name, text)


def copy_dialplan(dialplan_dir: Path | None, etc_dir: Path) -> list[str]:
    """Copy ``dialplan_dir/*.conf`` to ``etc/callproof/``; return the include paths.

    A subfolder, as the project's dialplan tells admins to do
    (``#include callproof/callproof.conf``), so no project file can
    overwrite a config file of the sandbox's own.
    """
    target = etc_dir / "callproof"
    shutil.rmtree(target, ignore_errors=True)
    if dialplan_dir is None or not dialplan_dir.is_dir():
        return []
    target.mkdir(mode=0o750)
    included = []
    for source in sorted(dialplan_dir.glob("*.conf")):
        write_private(target / source.name, source.read_text())
        included.append(f"callproof/{source.name}")
    return included
