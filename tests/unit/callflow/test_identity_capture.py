"""CPF / customer code captured from the dialplan at call start (callproof/call_identity.py):
only keyed hashes reach the call row, an invalid CPF is a warning naming the problem,
and nothing is read without [rights] identity_key.  Both flows (ARI and AGI)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from callproof.ari_app.call_events import CallInbox
from callproof.ari_app.flow import CallFlow, Services
from callproof.call_identity import CallIdentity, capture_wanted, hash_call_identity
from callproof.rights.identity import identity_hash
from callproof.storage import Database, NewCall
from callproof.storage.calls import set_identity_hashes_sync
from callproof.storage.errors import NotFoundError
from tests.fakes import FakeAsterisk, FakePrompts, FakeRecorder, ScriptedAri, start_event
from tests.fakes.flow_config import flow_config
from tests.unit.agi_scripts.test_flow import run as run_agi
from tests.unit.ari_app.test_flow import NOW

KEY = "unit-test-identity-key-5f1c9a7e3b2d4c6e8a0b"
CPF = "529.982.247-25"        # valid check digits
CPF_DIGITS = "52998224725"
BAD_CPF = "529.982.247-26"     # check digit wrong


def make_config(tmp_path, key: str = KEY):
    return flow_config(tmp_path, f'[rights]\nidentity_key = "{key}"\n' if key else "")


@pytest.fixture
def config(tmp_path):
    return make_config(tmp_path)


# --------------------------------------------------------------------------
# hashing and validation
# --------------------------------------------------------------------------

def test_valid_values_become_keyed_hashes(config):
    got = hash_call_identity(config, cpf=CPF, customer_code=" ACME-42 ", channel="c1")
    assert got.cpf_hash == identity_hash(KEY, "cpf", CPF_DIGITS)
    assert got.customer_code_hash == identity_hash(KEY, "customer_code", "ACME-42")
    assert bool(got) and CPF_DIGITS not in repr(got)


def test_an_invalid_cpf_is_a_warning_naming_the_problem_not_the_value(config, caplog):
    caplog.set_level(logging.WARNING, logger="callproof.identity")
    got = hash_call_identity(config, cpf=BAD_CPF, customer_code=None, channel="c1")
    assert got == CallIdentity()
    [record] = caplog.records
    fields = record.fields
    assert record.getMessage() == "call.identity_invalid" and fields["variable"] == "CALLPROOF_CPF"
    assert "check digits" in fields["problem"]
    text = repr(record.__dict__)
    assert "52998224726" not in text and "982.247" not in text and "247-26" not in text


@pytest.mark.parametrize("value,problem", [("1234", "11 digits"), ("111.111.111-11", "all digits equal"),
                                           ("529.982.247-2x", "only digits")])
def test_each_cpf_problem_is_named(config, caplog, value, problem):
    caplog.set_level(logging.WARNING, logger="callproof.identity")
    assert hash_call_identity(config, cpf=value, customer_code=None, channel="c1").cpf_hash is None
    assert problem in caplog.records[0].fields["problem"]


def test_empty_values_are_not_captured(config, caplog):
    assert hash_call_identity(config, cpf="", customer_code="   ", channel="c1") == CallIdentity()
    assert hash_call_identity(config, cpf=None, customer_code=None, channel="c1") == CallIdentity()
    assert not caplog.records


def test_without_a_key_nothing_is_captured(tmp_path):
    config = make_config(tmp_path, key="")
    assert not capture_wanted(config)
    assert hash_call_identity(config, cpf=CPF, customer_code="X", channel="c1") == CallIdentity()


def test_storage_accepts_only_hashes(tmp_path):
    from callproof.storage.db import connect_sync

    conn = connect_sync(tmp_path / "s.db")
    from callproof.storage.calls import create_sync
    call_id = create_sync(conn, NewCall(channel_id="c1", uniqueid="c1", linkedid="c1", caller_number_raw="",
                                        caller_number=None, caller_name="", dialled_number="", language="pt_BR",
                                        started_at=NOW), NOW)
    for bad in (CPF_DIGITS, CPF, "A" * 64, "a" * 63):
        with pytest.raises(ValueError):
            set_identity_hashes_sync(conn, call_id, cpf_hash=bad, updated_at=NOW)
    good = identity_hash(KEY, "cpf", CPF)
    set_identity_hashes_sync(conn, call_id, cpf_hash=good, updated_at=NOW)
    set_identity_hashes_sync(conn, call_id, customer_code_hash="b" * 64, updated_at=NOW)  # cpf left as is
    assert conn.execute("SELECT cpf_hash, customer_code_hash FROM calls").fetchone() == (good, "b" * 64)
    with pytest.raises(NotFoundError):
        set_identity_hashes_sync(conn, call_id + 1, cpf_hash=good, updated_at=NOW)
    conn.close()


# --------------------------------------------------------------------------
# the ARI flow
# --------------------------------------------------------------------------

async def run_ari_call(config, db, variables, channel_id):
    ev = start_event(channel_id=channel_id)
    inbox = CallInbox(channel_id)
    ari = ScriptedAri(inbox, variables=variables)
    services = Services(config=config, db=db, ari=ari, recorder=FakeRecorder(), prompts=FakePrompts(),
                        wake_sms=lambda: None, clock=lambda: NOW)
    flow = CallFlow(services, inbox, ev)
    await asyncio.wait_for(flow.run(), 5)
    return flow, ari, await db.calls.get(flow.call_id)


def db_text(path) -> bytes:
    """Every byte of the database and its WAL (what a dump or a stolen disk would show)."""
    out = b""
    for suffix in ("", "-wal"):
        try:
            with open(f"{path}{suffix}", "rb") as fh:
                out += fh.read()
        except FileNotFoundError:
            pass
    return out


async def test_ari_flow_stores_the_cpf_hash_and_never_the_cpf(config, db):
    flow, _ari, row = await run_ari_call(config, db, {"CALLPROOF_CPF": CPF, "CALLPROOF_CUSTOMER_CODE": "ACME-42"},
                                        "1700000100.1")
    assert flow.outcome == "handed_off"
    assert row["cpf_hash"] == identity_hash(KEY, "cpf", CPF)
    assert row["customer_code_hash"] == identity_hash(KEY, "customer_code", "ACME-42")
    raw = db_text(config.storage.database)
    assert CPF_DIGITS.encode() not in raw and CPF.encode() not in raw and b"ACME-42" not in raw


async def test_ari_flow_goes_on_after_an_invalid_cpf(config, db, caplog):
    caplog.set_level(logging.WARNING, logger="callproof.identity")
    flow, _ari, row = await run_ari_call(config, db, {"CALLPROOF_CPF": BAD_CPF}, "1700000100.2")
    assert flow.outcome == "handed_off" and row["cpf_hash"] is None and row["customer_code_hash"] is None
    assert any(r.getMessage() == "call.identity_invalid" for r in caplog.records)


async def test_ari_flow_reads_nothing_without_a_key(tmp_path):
    config = make_config(tmp_path, key="")
    async with Database.open(config.storage.database) as db:
        flow, ari, row = await run_ari_call(config, db, {"CALLPROOF_CPF": CPF}, "1700000100.3")
    assert ari.asked == [] and row["cpf_hash"] is None and flow.outcome == "handed_off"


# --------------------------------------------------------------------------
# the AGI flow
# --------------------------------------------------------------------------

async def test_agi_flow_stores_the_cpf_hash_and_never_the_cpf(config, db):
    fake = FakeAsterisk(uniqueid="1700000200.1")
    fake.vars["CALLPROOF_CPF"] = CPF
    _flow, outcome, row = await run_agi(config, db, fake)
    assert outcome == "handed_off"
    assert row["cpf_hash"] == identity_hash(KEY, "cpf", CPF) and row["customer_code_hash"] is None
    assert CPF_DIGITS.encode() not in db_text(config.storage.database)


async def test_agi_flow_goes_on_after_an_invalid_cpf(config, db):
    fake = FakeAsterisk(uniqueid="1700000200.2")
    fake.vars["CALLPROOF_CPF"] = BAD_CPF
    _flow, outcome, row = await run_agi(config, db, fake)
    assert outcome == "handed_off" and row["cpf_hash"] is None


async def test_agi_flow_reads_nothing_without_a_key(tmp_path):
    config = make_config(tmp_path, key="")
    fake = FakeAsterisk(uniqueid="1700000200.3")
    fake.vars["CALLPROOF_CPF"] = CPF
    async with Database.open(config.storage.database) as db:
        _flow, _outcome, row = await run_agi(config, db, fake)
    assert not any("CALLPROOF_CPF" in c for c in fake.commands) and row["cpf_hash"] is None
