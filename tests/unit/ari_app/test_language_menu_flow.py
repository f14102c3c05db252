"""The language menu inside the one compliance flow, over the scripted ARI and the scripted
AGI peer: the announcement first in the DID's language, then the menu; the key's language
on the row (and how it was chosen) before the protocol; the protocol read and its SMS in
that language; a resumed call never asked again; a hang-up in the menu written down."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from callproof.agi_scripts.flow import AgiFlow
from callproof.ari_app.call_events import CallInbox
from callproof.ari_app.flow import CallFlow, Services
from tests.fakes import FakeAri, FakeAsterisk, FakePrompts, FakeRecorder, start_event
from tests.fakes.flow_config import flow_config

NOW = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)
LANGS = ("es", "ca", "eu")


@pytest.fixture
def config(tmp_path):
    return flow_config(tmp_path, '''
[general]
languages = ["es", "ca", "eu"]
default_language = "es"
timezone = "Europe/Madrid"
phone_region = "ES"
[languages]
by_did = { "551130000000" = "ca" }
menu = ["es", "ca", "eu"]
menu_timeout_seconds = 2
''')


def ari_flow(config, db, **script):
    ev = start_event(number="+34612345678")
    inbox = CallInbox(ev["channel"]["id"])
    ari = FakeAri(inbox, **script)
    services = Services(config=config, db=db, ari=ari, recorder=FakeRecorder(), prompts=FakePrompts(languages=LANGS),
                        wake_sms=lambda: None, clock=lambda: NOW)
    return CallFlow(services, inbox, ev), ari


def heard(ari):
    return [(op[1], op[2][0]) for op in ari.ops if op[0] == "play"]


async def test_ari_announcement_in_the_did_language_then_the_menu_then_basque(config, db):
    flow, ari = ari_flow(config, db, dtmf_in={"language_menu": "3"})
    assert await asyncio.wait_for(flow.run(), 5) == "handed_off"
    assert heard(ari)[:3] == [("consent", "sound:/prompts/ca/consent"),
                              ("language_menu", "sound:/prompts/es/language-option"),
                              ("protocol", "sound:/prompts/eu/protocol-is")]
    row = await db.calls.get(flow.call_id)
    assert (row["language"], row["language_source"], row["language_menu"]) == ("eu", "menu", "chosen")
    assert row["consent_language"] == "ca" and row["language_chosen_at"] is not None
    sms = await db.outbox.get_for_protocol(row["protocol"])
    assert sms[0]["language"] == "eu" and "arreta-protokoloa" in sms[0]["body"]


async def test_ari_no_key_keeps_the_did_language_after_the_repeats(config, db):
    flow, ari = ari_flow(config, db)
    await asyncio.wait_for(flow.run(), 10)
    assert [w for w, _ in heard(ari)][:3] == ["consent", "language_menu", "language_menu"]
    row = await db.calls.get(flow.call_id)
    assert (row["language"], row["language_source"], row["language_menu"]) == ("ca", "did", "no_input")
    assert "protocol d'atencio" in (await db.outbox.get_for_protocol(row["protocol"]))[0]["body"]


async def test_ari_hang_up_during_the_menu_leaves_a_truthful_row(config, db):
    flow, _ari = ari_flow(config, db, hangup_in="language_menu")
    await asyncio.wait_for(flow.run(), 5)
    row = await db.calls.get_by_channel(flow.channel_id)
    assert row["status"] == "abandoned_in_consent" and row["consent_outcome"] == "finished"
    assert row["language_menu"] == "caller_left" and row["protocol"] is None
    assert (row["language"], row["language_source"]) == ("ca", "did")


async def test_ari_resumed_call_is_not_asked_again_and_keeps_the_choice(config, db):
    first, _ = ari_flow(config, db, dtmf_in={"language_menu": "1"})
    first.port.s.ari.unacknowledged_in = "protocol"  # the link breaks as the protocol is read
    assert await asyncio.wait_for(first.run(), 5) == "interrupted"
    row = await db.calls.get_by_channel(first.channel_id)
    assert (row["language"], row["language_menu"], row["status"]) == ("es", "chosen", "protocol_reading")

    second, ari2 = ari_flow(config, db)
    assert await asyncio.wait_for(second.run(), 5) == "handed_off"
    assert [w for w, _ in heard(ari2)] == ["protocol", "protocol"], "the menu was offered again"
    assert heard(ari2)[0] == ("protocol", "sound:/prompts/es/protocol-is")
    row = await db.calls.get_by_channel(first.channel_id)
    assert (row["language"], row["language_source"], row["status"]) == ("es", "menu", "handed_off")


async def run_agi(config, db, fake):
    flow = AgiFlow(config, db, FakePrompts(languages=LANGS), fake, clock=lambda: NOW)
    outcome = await asyncio.wait_for(flow.run(), 5)
    return outcome, await db.calls.get_by_channel(fake.env["agi_uniqueid"])


async def test_agi_the_same_menu_with_the_key_read_after_it(config, db):
    fake = FakeAsterisk(caller="+34612345678", keys=["2"])
    outcome, row = await run_agi(config, db, fake)
    assert outcome == "handed_off"
    assert fake.played[:3] == ["consent", "language_menu", "protocol"]
    assert any(c.startswith("WAIT FOR DIGIT 2000") for c in fake.commands)
    assert (row["language"], row["language_source"], row["language_menu"]) == ("ca", "menu", "chosen")


async def test_agi_wrong_key_then_basque(config, db):
    fake = FakeAsterisk(caller="+34612345678", keys=["8", "3"])
    _outcome, row = await run_agi(config, db, fake)
    assert fake.played[:4] == ["consent", "language_menu", "language_invalid", "language_menu"]
    assert 'EXEC Playback "/prompts/ca/language-invalid"' in fake.commands
    assert (row["language"], row["language_menu"]) == ("eu", "chosen")
    assert "arreta-protokoloa" in (await db.outbox.get_for_protocol(row["protocol"]))[0]["body"]


async def test_agi_split_steps_keep_the_choice_for_the_protocol_step(config, db):
    consent = FakeAsterisk(caller="+34612345678", keys=["3"], args=("consent", "551130000000", "1.0", ""))
    assert (await run_agi(config, db, consent))[0] == "ok"
    protocol = FakeAsterisk(caller="+34612345678", args=("protocol", "551130000000", "1.0", ""))
    _outcome, row = await run_agi(config, db, protocol)
    assert protocol.played == []  # the protocol step allocates; it asks nothing
    assert row["language"] == "eu" and row["protocol"] is not None


async def test_agi_hang_up_during_the_menu(config, db):
    fake = FakeAsterisk(caller="+34612345678", hangup_in="language_menu")
    _outcome, row = await run_agi(config, db, fake)
    assert row["language_menu"] == "caller_left" and row["protocol"] is None
    assert row["consent_outcome"] == "finished"
