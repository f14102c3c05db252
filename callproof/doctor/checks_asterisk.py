"""Checks against the running Asterisk: the ARI and AMI logins with the configured
accounts, and the dialplan contexts callproof's calls go through."""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any
from urllib.parse import urljoin

import aiohttp

from callproof.ari_app.logins import refusal_hint
from callproof.config import Config
from callproof.dialplan import files as shipped_dialplans

from .report import Result, fail, ok

TIMEOUT_S = 10.0
_CONTEXT = re.compile(r"^\[([A-Za-z0-9_-]+)\]", re.MULTILINE)
_START_ASTERISK = "start Asterisk (systemctl start asterisk)"


async def check_ari(config: Config) -> list[Result]:
    """The ARI login; on a shared database, also the Asterisk's system name."""
    login, info = await _ari_info(config)
    if info is None or not config.storage.url:
        return [login]
    return [login, system_name_result(info)]


def system_name_result(info: Any) -> Result:
    """Several nodes on one database need channel ids unique across their Asterisks: each
    Asterisk's ``systemname`` (asterisk.conf), which prefixes its ids, set and not shared."""
    name = ((info.get("config") or {}).get("name") or "") if isinstance(info, dict) else ""
    if not name:
        return fail("asterisk-system-name", "this Asterisk has no systemname: its channel ids are unique on this"
                    " node only, and the database is shared ([storage] url)",
                    "set systemname = <this node's name> in asterisk.conf [options] on every node (each its own),"
                    " then restart Asterisk (docs/scale-out.md#node-names-and-channel-ids)")
    return ok("asterisk-system-name", f"systemname {name!r}: its channel ids start with it")


async def _ari_info(config: Config) -> tuple[Result, Any]:
    """``GET /ari/asterisk/info`` as the configured user: the result, and the answer when it came."""
    cfg = config.ari
    url = urljoin(cfg.url, "ari/asterisk/info")
    token = base64.b64encode(f"{cfg.username}:{cfg.password}".encode()).decode("ascii")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session, \
                session.get(url, headers={"Authorization": f"Basic {token}"}) as response:
            if response.status == 401:
                return fail("ari-login", f"HTTP 401 from {url}", refusal_hint("ARI", cfg.username)), None
            if response.status == 404:
                return fail("ari-login", f"HTTP 404 from {url}: Asterisk's HTTP server answers, ARI does not",
                            "set enabled = yes in ari.conf, load res_ari.so, then asterisk -rx 'module "
                            "reload res_ari.so'"), None
            if response.status != 200:
                return fail("ari-login", f"HTTP {response.status} from {url}", "see Asterisk's log"), None
            info: Any = await response.json(content_type=None)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return fail("ari-login", f"cannot reach ARI at {cfg.url} ({type(exc).__name__}: {exc})"[:300],
                    f"{_START_ASTERISK}; Asterisk's HTTP server must be on: http.conf [general] enabled = yes, "
                    "bindaddr/bindport as in [ari] url, then asterisk -rx 'module reload http'"), None
    version = (info.get("system") or {}).get("version", "?") if isinstance(info, dict) else "?"
    return ok("ari-login", f"logged in to ARI at {cfg.url} as {cfg.username!r} (Asterisk {version})"), info


async def check_ami(config: Config) -> list[Result]:
    """The AMI login with the configured account, then (logged in) the dialplan contexts."""
    from callproof.ari_app.recorder import ReportingManager

    cfg = config.ami
    try:
        async with asyncio.timeout(TIMEOUT_S):
            _, writer = await asyncio.open_connection(cfg.host, cfg.port)
        writer.close()
    except (OSError, TimeoutError) as exc:
        return [fail("ami-login", f"cannot reach AMI at {cfg.host}:{cfg.port} ({type(exc).__name__}: {exc})"[:300],
                     f"{_START_ASTERISK}; manager.conf [general] enabled = yes, port = {cfg.port}, "
                     "then asterisk -rx 'manager reload'")]
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[tuple[bool, Any]] = loop.create_future()

    def on_answer(success: bool, answer: Any) -> None:
        if not answered.done():
            answered.set_result((success, answer))

    manager = ReportingManager(on_answer, host=cfg.host, port=cfg.port, username=cfg.username, secret=cfg.password,
                               events="off", ping_delay=3600, reconnect_timeout=1)
    manager.connect()
    try:
        try:
            async with asyncio.timeout(TIMEOUT_S):
                success, answer = await answered
        except TimeoutError:
            return [fail("ami-login", f"no answer to the AMI login at {cfg.host}:{cfg.port} within {TIMEOUT_S:.0f} s",
                         "is it Asterisk's manager port? see Asterisk's log")]
        if not success:
            message = answer.get("Message", "") if hasattr(answer, "get") else ""
            return [fail("ami-login", f"AMI at {cfg.host}:{cfg.port}: {message or 'login refused'}",
                         refusal_hint("AMI", cfg.username))]
        results = [ok("ami-login", f"logged in to AMI at {cfg.host}:{cfg.port} as {cfg.username!r}")]
        results.append(await check_dialplan(config, manager))
        return results
    finally:
        manager.stopped = True
        manager.close()


def shipped_contexts() -> dict[str, list[str]]:
    """The contexts of each shipped dialplan file (callproof.conf, callproof-agi.conf, ...)."""
    return {path.name: _CONTEXT.findall(path.read_text(encoding="utf-8")) for path in shipped_dialplans()}


class DialplanNotListable(Exception):
    """The AMI account may not run ShowDialPlan (its ``write`` classes lack ``reporting``)."""


async def loaded(manager: Any, context: str) -> bool:
    """Whether ``context`` is in the running dialplan, by AMI ``ShowDialPlan`` (write class
    ``reporting``: read-only queries), not the ``Command`` action, whose ``command`` class
    would let the account run any CLI command."""
    async with asyncio.timeout(TIMEOUT_S):
        answer = await manager.send_action({"Action": "ShowDialPlan", "Context": context})
    messages = answer if isinstance(answer, list) else [answer]
    for message in messages:
        if message.get("Response") == "Error" and "ermission denied" in str(message.get("Message", "")):
            raise DialplanNotListable(str(message.get("Message")))
    return any(m.get("Event") == "ListDialplan" and m.get("Context") == context for m in messages)


async def check_dialplan(config: Config, manager: Any) -> Result:
    """The hand-off context, and every context of at least one shipped dialplan file, are loaded."""
    files = shipped_contexts()
    wanted = sorted({config.handoff.context, *(c for names in files.values() for c in names)})
    try:
        present = {c for c in wanted if await loaded(manager, c)}
    except DialplanNotListable:
        return fail("dialplan", f"the AMI account {config.ami.username!r} may not list the dialplan (ShowDialPlan:"
                    " permission denied)", "add 'reporting' to its write = line in manager.conf, then"
                    " asterisk -rx 'manager reload'")
    complete = [name for name, names in files.items() if set(names) <= present]
    missing_handoff = config.handoff.context not in present
    if complete and not missing_handoff:
        return ok("dialplan", f"contexts of {', '.join(complete)} loaded, hand-off {config.handoff.context!r} too")
    if complete:
        return fail("dialplan", f"hand-off context {config.handoff.context!r} ([handoff] context) is not loaded",
                    "define it (it queues the call to your agents) and asterisk -rx 'dialplan reload'")
    best = max(files, key=lambda name: len(set(files[name]) & present))
    missing = [c for c in files[best] if c not in present]
    return fail("dialplan", f"not loaded: {', '.join(missing)} (of {best})",
                f"add '#include callproof/{best}' to extensions.conf (callproof dialplan install "
                "/etc/asterisk/callproof), then asterisk -rx 'dialplan reload'")
