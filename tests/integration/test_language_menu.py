"""Spain's languages on a real Asterisk 22: a call to a Catalan DID hears the announcement
in Catalan first, then the language menu (each option in its own language); the Basque key
gives the protocol read in Basque and its SMS in Basque, received by the SMPP peer.  The
same through FastAGI (its key read after the menu), and a hang-up during the menu leaves a
truthful row.

One application of this module's own (its ARI name, database, SMPP backend) serves the ARI
calls and sends every SMS; the FastAGI server shares its database.  The customer presses
keys with AMI ``PlayDTMF`` on its own half of the Local channel, as a phone would.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from callproof.agi_scripts.fastagi import FastAgiServer
from callproof.config import Config
from callproof.demo import load_sandbox_config, write_config
from callproof.prompts import generate_prompts
from callproof.sandbox import ari_request, originate_call
from callproof.storage._sqlutil import fetch_one

from .agi_install import install_classic_agi
from .conftest import ENGINES
from .harness import ObservedApplication, running
from .sms_peers import PASSWORD, SYSTEM_ID, SmppPeer, decode_text, require_smpp_peer
from .test_call_state import SHORT, short_prompts

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
APP = "callprooflangs"  # letters only: the entry dialplan's FILTER drops other characters
APP_PG = "callprooflangspg"
CATALAN_DID = "34930000000"
LANGUAGES = '''
[languages]
by_did = { "+34930000000" = "ca" }
menu = ["es", "ca", "eu"]
menu_timeout_seconds = 4
menu_repeats = 1
'''


@pytest.fixture(scope="module")
def peer(tmp_path_factory):
    require_smpp_peer()
    running = SmppPeer(tmp_path_factory.mktemp("smpp") / "peer.jsonl", 0, "--dlr").start()
    yield running
    running.stop()


def language_config(sandbox, app_config, peer, folder: str, app_name: str, **sections) -> Config:
    prompts = app_config.prompts.directory
    generate_prompts(prompts, ["es", "ca", "eu"])  # es is there already; ca and eu: espeak-ng
    run_dir = sandbox.run_dir / folder
    run_dir.mkdir(exist_ok=True)
    path = write_config(
        sandbox, run_dir, prompts, ari={"app": app_name},
        general={"languages": ["es", "ca", "eu"], "default_language": "es", "timezone": "Europe/Madrid",
                 "phone_region": "ES"},
        protocol_reading={"repeat": 0, "replay_window_ms": 0},
        sms={"backend": "smpp", "poll_interval_seconds": 0.2},
        **{"sms.smpp": {"port": peer.port, "system_id": SYSTEM_ID, "password": PASSWORD,
                        "source_addr": "ACME", "submit_timeout_seconds": 5.0}}, **sections)
    path.write_text(path.read_text() + LANGUAGES)
    return load_sandbox_config(path)


@pytest.fixture(scope="module")
def lang_config(sandbox, app_config, peer):
    return language_config(sandbox, app_config, peer, "languages", APP)


@pytest.fixture(scope="module")
async def app(lang_config):
    async with running(ObservedApplication(lang_config)) as application:
        yield application


@pytest.fixture(scope="module")
async def pg_app(sandbox, app_config, pg_cluster, tmp_path_factory):
    """The module's application on PostgreSQL, with an SMPP peer of its own (both databases
    number their protocols from 1: one peer would hold two SMS with the same protocol), and
    40 ms prompts in the three languages for what only takes time (the menu's options keep
    their names, which is what the caller's log shows)."""
    require_smpp_peer()
    own_peer = SmppPeer(tmp_path_factory.mktemp("smpp-pg") / "peer.jsonl", 0, "--dlr").start()
    short = sandbox.run_dir / "languages-pg-short"
    for language in ("es", "ca", "eu"):
        short_prompts(short, [*SHORT, "language-option"], language)
    config = language_config(sandbox, app_config, own_peer, "languages-pg", APP_PG,
                             storage={"url": pg_cluster.new_database("languages")},
                             prompts={"custom_directory": str(short)})
    try:
        async with running(ObservedApplication(config)) as application:
            yield application, own_peer
    finally:
        own_peer.stop()


async def place(sandbox, caller: str, *, entry: str = "callproof-entry", variables=None, app: str = APP) -> dict:
    return await asyncio.to_thread(originate_call, sandbox, caller, entry_context=entry, extension=CATALAN_DID,
                                   variables={"CALLPROOF_APP": app, **(variables or {})}, max_seconds=150)


async def press(app, customer: dict, key: str) -> None:
    reply = await app.ami.action({"Action": "PlayDTMF", "Channel": customer["name"], "Digit": key,
                                  "Duration": "120", "Async": "false"})
    response = reply[0] if isinstance(reply, list) else reply
    assert response.get("Response") == "Success", dict(response)


async def row_of(app, customer: dict) -> dict | None:
    """The call's row, by its linkedid (the customer channel's uniqueid)."""
    return await app.db.run_in_connection(
        lambda c: fetch_one(c.execute("SELECT * FROM calls WHERE linkedid = ?", (customer["id"],))))


async def wait_row(app, customer: dict, done, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    row = None
    while time.monotonic() < deadline:
        row = await row_of(app, customer)
        if row is not None and done(row):
            return dict(row)
        await asyncio.sleep(0.1)
    raise TimeoutError(f"call {customer['id']}: {row and dict(row)}")


def heard(sandbox, customer: dict) -> list[str]:
    """What Asterisk played to the call's ;2 side, from its verbose log, as language/prompt
    (``ca/consent``, ``eu/digits/3``; Asterisk's own Spanish digits as ``es/digits/N``)."""
    callee = customer["name"].rsplit(";", 1)[0] + ";2"
    out = []
    for line in sandbox.console_log.read_text(errors="replace").splitlines():
        m = re.search(r"<(?P<chan>[^>]+)> Playing '(?P<file>[^']+)'", line)
        if m and m["chan"] == callee:
            parts = Path(m["file"].rsplit(".", 1)[0]).parts
            if parts[-2] == "digits":
                lang = "es" if parts[-3].startswith("es_") else parts[-3]
                out.append(f"{lang}/digits/{parts[-1]}")
            else:
                out.append(f"{parts[-2]}/{parts[-1]}")
    return out


async def sms_to_peer(app, peer, protocol: str) -> tuple[dict, str]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = await app.db.outbox.get_for_protocol(protocol)
        if rows and rows[0]["state"] == "sent":
            break
        await asyncio.sleep(0.2)
    sent = [r for r in peer.wait_for(1) if r["event"] == "submit_sm" and protocol in decode_text(r)]
    assert sent, f"the SMPP peer never received the SMS of {protocol}"
    return dict(rows[0]), decode_text(sent[0])


async def choose(app, customer: dict, key: str) -> None:
    """Once the announcement is over (the row says so), the customer presses ``key`` every
    second until the row has the menu's outcome: a key pressed while the menu plays counts
    on ARI; on AGI only one pressed after it does (a key during the announcement never
    counts, on either)."""
    await wait_row(app, customer, lambda r: r["consent_outcome"] == "finished", timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (await row_of(app, customer))["language_menu"]:
        await press(app, customer, key)
        await asyncio.sleep(1.0)


MENU = ["es/language-option", "es/digits/1", "ca/language-option", "ca/digits/2", "eu/language-option",
        "eu/digits/3"]


@pytest.fixture(params=ENGINES)
def app_on(request: pytest.FixtureRequest):
    """(application, its SMPP peer): ``app`` and ``peer``, then ``pg_app``."""
    if request.param == "sqlite":
        return request.getfixturevalue("app"), request.getfixturevalue("peer")
    return request.getfixturevalue("pg_app")


async def test_catalan_did_announcement_first_then_menu_then_basque(sandbox, app_on):
    """The language chosen is stored, read and sent in; on SQLite and on PostgreSQL."""
    app, peer = app_on
    customer = await place(sandbox, "612345601", app=app.config.ari.app)
    await choose(app, customer, "3")
    row = await wait_row(app, customer, lambda r: r["status"] in ("handed_off", "completed"))
    assert (row["language"], row["language_source"], row["language_menu"]) == ("eu", "menu", "chosen")
    assert row["consent_language"] == "ca" and row["dialled_number"] == CATALAN_DID
    played = heard(sandbox, customer)
    assert played[0] == "ca/consent", played  # the announcement first, in the DID's language
    assert played[1:7] == MENU, played
    reading = played[played.index("eu/protocol-is"):]
    assert "".join(p.rsplit("/", 1)[1] for p in reading if "/digits/" in p) == row["protocol"]
    assert all(p.startswith("eu/") for p in reading if "/digits/" in p)
    sms, body = await sms_to_peer(app, peer, row["protocol"])
    assert sms["language"] == "eu" and body == sms["body"]
    assert body.startswith("Atendimento: arreta-protokoloa " + row["protocol"]), body


async def test_fastagi_the_same_menu_reads_its_key_after_the_menu(sandbox, app, lang_config, peer):
    server = await FastAgiServer(lang_config).start(port=0)
    try:
        customer = await place(sandbox, "612345602", entry="callproof-fastagi-entry",
                               variables={"CALLPROOF_FASTAGI": f"agi://127.0.0.1:{server.port}/callproof"})
        # AGI Playback does not hear keys: there the key counts once the menu has been played
        await choose(app, customer, "3")
        row = await wait_row(app, customer, lambda r: r["status"] in ("handed_off", "completed"))
        assert (row["language"], row["language_source"], row["language_menu"]) == ("eu", "menu", "chosen")
        assert row["served_by"] == "fastagi"
        played = heard(sandbox, customer)
        assert played[0] == "ca/consent" and played[1:7] == MENU, played
        assert "eu/protocol-is" in played
        _sms, body = await sms_to_peer(app, peer, row["protocol"])
        assert "arreta-protokoloa" in body
    finally:
        await server.stop()


async def test_classic_agi_the_same_menu(sandbox, app, lang_config, peer):
    wrapper = install_classic_agi(sandbox, Path(lang_config.storage.database).parent / "callproof.toml")
    try:
        customer = await place(sandbox, "612345604", entry="callproof-agi-entry")
        await choose(app, customer, "1")
        row = await wait_row(app, customer, lambda r: r["status"] in ("handed_off", "completed"))
    finally:
        wrapper.unlink(missing_ok=True)  # a later module's fallback call must not reach this database
    assert (row["language"], row["language_source"], row["language_menu"]) == ("es", "menu", "chosen")
    assert row["served_by"] == "agi"
    played = heard(sandbox, customer)
    assert played[0] == "ca/consent" and played[1:7] == MENU, played
    assert "es/protocol-is" in played and "eu/protocol-is" not in played
    _sms, body = await sms_to_peer(app, peer, row["protocol"])
    assert body.startswith("Atendimento: protocolo de atencion " + row["protocol"]), body


async def test_hang_up_during_the_menu_leaves_a_truthful_row(sandbox, app):
    customer = await place(sandbox, "612345603")
    await wait_row(app, customer, lambda r: r["consent_outcome"] == "finished", timeout=60)
    await asyncio.to_thread(ari_request, sandbox, "DELETE", f"channels/{customer['id']}")
    row = await wait_row(app, customer, lambda r: r["ended_at"] is not None, timeout=30)
    assert row["status"] == "abandoned_in_consent" and row["protocol"] is None
    assert (row["language"], row["language_source"], row["language_menu"]) == ("ca", "did", "caller_left")
