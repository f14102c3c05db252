"""One scripted call through both transports gives the same evidence.

Each scenario runs once through the ARI application's flow (scripted ARI) and once
through the AGI flow (scripted AGI peer, then the hangup handler's ``finalise``
step with the channel's HANGUPCAUSE, as the shipped dialplan runs it), each with a
database of its own and the same clock.  The call rows, recording rows, call-back
rows and the CALLPROOF_* variables must be the same, but for what only names the
transport (the text of a hang-up description or of an error).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from callproof.agi_scripts.flow import AgiFlow
from callproof.ari_app.call_events import CallInbox
from callproof.ari_app.flow import CallFlow, Services
from callproof.storage import Database
from callproof.storage.callbacks import cause_of
from callproof.storage.journal import Journal, ReplayConnection
from tests.fakes import FakeAsterisk, FakePrompts, FakeRecorder, ScriptedAri, start_event
from tests.fakes.flow_config import flow_config

NOW = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)
DB_NOW = "2026-11-22T15:30:00.000000Z"
CALLBACKS = """
[callback]
enabled = true
endpoint_template = "PJSIP/{number}@trunk"
first_delay_seconds = 30
"""
# Text that names the transport; compared by what it means instead.
TEXT_COLUMNS = ("hangup_cause", "error", "served_by")  # served_by names the path: checked on its own
# ARI's playback ids (what a resume after an ARI drop follows); AGI plays synchronously and has none.
ARI_ONLY_COLUMNS = ("consent_playback_id", "protocol_playback_id")


@dataclass(frozen=True)
class Scenario:
    hangup_in: str | None = None         # 'consent' | 'protocol'
    cause: int = 16                      # Q.850 cause of that hang-up
    recording_fails: bool = False
    playback_fails: bool = False
    missing: frozenset[str] = frozenset()
    storage_fails_at: str | None = None  # a repository method that raises 'database is locked'
    locked_from: str | None = None       # 'arrival' | 'reading': another process takes the write lock there
    extra: dict = field(default_factory=dict)


SCENARIOS = {
    "normal": Scenario(),
    "hangup_in_consent": Scenario(hangup_in="consent"),
    "hangup_in_reading": Scenario(hangup_in="protocol"),
    "network_drop_in_reading": Scenario(hangup_in="protocol", cause=38),
    "network_drop_in_consent": Scenario(hangup_in="consent", cause=38),
    "recording_failure": Scenario(recording_fails=True),
    "playback_failure": Scenario(playback_fails=True),
    "prompt_missing": Scenario(missing=frozenset({"consent"})),
    "storage_error": Scenario(storage_fails_at="protocols.allocate_for_call_within"),
    "locked_at_arrival": Scenario(locked_from="arrival"),
    "locked_after_the_protocol": Scenario(locked_from="reading"),
}


class Locker:
    """Another process's write lock on the database, taken at arrival or when the reading starts."""

    def __init__(self, database, when: str | None):
        self.database, self.when, self.conn = database, when, None
        if when == "arrival":
            self.take()

    def take(self) -> None:
        if self.when is not None and self.conn is None:
            self.conn = sqlite3.connect(self.database, isolation_level=None)
            self.conn.execute("BEGIN EXCLUSIVE")
            self.conn.execute("UPDATE protocol_sequences SET last_value = last_value WHERE 0")

    def release_and_replay(self, journal: Journal) -> None:
        if self.conn is not None:
            self.conn.execute("ROLLBACK")
            self.conn.close()
            self.conn = None
        ReplayConnection(self.database, 1000, now=lambda: DB_NOW).replay(journal)


class LockingPrompts(FakePrompts):
    def __init__(self, locker: Locker, **kw):
        super().__init__(**kw)
        self.locker = locker

    def protocol_reading_media(self, language, protocol, groups):
        if self.locker.when == "reading":
            self.locker.take()
        return super().protocol_reading_media(language, protocol, groups)


@dataclass
class Evidence:
    call: dict
    recordings: list[dict]
    callbacks: list[dict]
    variables: dict[str, str]
    outcome: str


def path_config(tmp_path, path: str):
    (tmp_path / path).mkdir(exist_ok=True)
    config = flow_config(tmp_path / path, CALLBACKS)
    return dataclasses.replace(config, storage=dataclasses.replace(config.storage, call_wait_seconds=0.3))


def break_storage(db: Database, where: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if where is None:
        return
    repo, method = where.split(".")

    async def locked(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(getattr(db, repo), method, locked)


async def rows(db: Database, sql: str) -> list[dict]:
    def q(conn):
        cur = conn.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    return await db.run_in_connection(q)


async def evidence(db: Database, variables: dict[str, str], outcome: str) -> Evidence:
    [call] = await rows(db, "SELECT * FROM calls")
    recordings = await rows(db, "SELECT * FROM recordings ORDER BY id")
    callbacks = await rows(db, "SELECT * FROM callbacks ORDER BY id")
    return Evidence(call, recordings, callbacks, variables, outcome)


async def through_ari(tmp_path, sc: Scenario, monkeypatch) -> Evidence:
    config = path_config(tmp_path, "ari")
    async with Database.open(config.storage.database, now=lambda: DB_NOW) as db:
        ev = start_event()
        inbox = CallInbox(ev["channel"]["id"])
        ari = ScriptedAri(inbox, sc.hangup_in, hangup_cause=sc.cause,
                          playback_fails_in="consent" if sc.playback_fails else None)
        journal, locker = Journal(config.storage.journal_path), Locker(config.storage.database, sc.locked_from)
        services = Services(config=config, db=db, ari=ari, recorder=FakeRecorder(sc.recording_fails),
                            prompts=LockingPrompts(locker, missing=sc.missing), wake_sms=lambda: None,
                            clock=lambda: NOW, journal=journal)
        break_storage(db, sc.storage_fails_at, monkeypatch)
        flow = CallFlow(services, inbox, ev)
        await asyncio.wait_for(flow.run(), 5)
        monkeypatch.undo()
        locker.release_and_replay(journal)
        return await evidence(db, ari.variables(), flow.outcome)


async def through_agi(tmp_path, sc: Scenario, monkeypatch) -> Evidence:
    config = path_config(tmp_path, "agi")
    async with Database.open(config.storage.database, now=lambda: DB_NOW) as db:
        fake = FakeAsterisk(hangup_in=sc.hangup_in, mixmonitor_fails=sc.recording_fails,
                            playback_status="FAILED" if sc.playback_fails else "SUCCESS")
        journal, locker = Journal(config.storage.journal_path), Locker(config.storage.database, sc.locked_from)
        prompts = LockingPrompts(locker, missing=sc.missing)
        break_storage(db, sc.storage_fails_at, monkeypatch)
        flow = AgiFlow(config, db, prompts, fake, clock=lambda: NOW, journal=journal)
        outcome = await asyncio.wait_for(flow.run(), 5)
        monkeypatch.undo()
        locker.release_and_replay(journal)
        if sc.hangup_in:  # the hangup handler: AGI(callproof-agi,finalise,${HANGUPCAUSE})
            handler = FakeAsterisk(args=("finalise", str(sc.cause)))
            await asyncio.wait_for(AgiFlow(config, db, prompts, handler, clock=lambda: NOW).run(), 5)
        return await evidence(db, fake.callproof_vars(), outcome)


def comparable(row: dict, tmp: str) -> dict:
    """The row without the text that names the transport; each path has its own directory.
    What that text means stays: the Q.850 cause, the kind of error (the call row's
    'recording: ...' / '<reason>: ...') or that there was one (a recording's)."""
    out = {k: v.replace(f"{tmp}/ari", "<tmp>").replace(f"{tmp}/agi", "<tmp>") if isinstance(v, str) else v
           for k, v in row.items() if k not in TEXT_COLUMNS + ARI_ONLY_COLUMNS}
    out["q850"] = cause_of(row.get("hangup_cause"))
    error = row.get("error") or ""
    out["error_kind"] = error.split(":")[0] if "protocol" in row and "call_id" not in row else bool(error)
    return out


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_both_transports_leave_the_same_evidence(tmp_path, monkeypatch, name):
    sc = SCENARIOS[name]
    ari = await through_ari(tmp_path, sc, monkeypatch)
    agi = await through_agi(tmp_path, sc, monkeypatch)
    tmp = str(tmp_path)
    assert comparable(ari.call, tmp) == comparable(agi.call, tmp)
    assert agi.call["consent_playback_id"] is None and agi.call["protocol_playback_id"] is None
    if ari.call["consent_started_at"]:  # the play request was accepted: its id is kept
        assert ari.call["consent_playback_id"].startswith("cp-consent-")
    if ari.call:
        assert (ari.call["served_by"], agi.call["served_by"]) == ("ari", "agi")
    assert [comparable(r, tmp) for r in ari.recordings] == [comparable(r, tmp) for r in agi.recordings]
    assert ari.callbacks == agi.callbacks
    assert comparable(ari.variables, tmp) == comparable(agi.variables, tmp)
    assert ari.outcome == agi.outcome


EXPECTED = {  # status, CALLPROOF_STATUS, CALLPROOF_REASON, call-backs
    "normal": ("handed_off", "ok", None, 0),
    "hangup_in_consent": ("abandoned_in_consent", None, None, 0),
    "hangup_in_reading": ("abandoned_in_protocol", None, None, 0),
    "network_drop_in_reading": ("abandoned_in_protocol", None, None, 1),
    "network_drop_in_consent": ("abandoned_in_consent", None, None, 0),  # no protocol yet
    "recording_failure": ("handed_off", "recording_failed", "recording_not_started", 0),
    "playback_failure": ("failed", "failed", "playback_failed", 0),
    "prompt_missing": ("failed", "failed", "prompt_missing", 0),
    "storage_error": ("failed", "failed", "storage_unavailable", 0),
    "locked_at_arrival": ("failed", "failed", "storage_unavailable", 0),  # the announcement, then no protocol
    "locked_after_the_protocol": ("handed_off", "ok", None, 0),  # the rest from the journal
}


@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("path", ["ari", "agi"])
async def test_each_scenario_ends_as_documented(tmp_path, monkeypatch, name, path):
    run = through_ari if path == "ari" else through_agi
    got = await run(tmp_path, SCENARIOS[name], monkeypatch)
    status, dialplan_status, reason, callbacks = EXPECTED[name]
    assert got.call["status"] == status
    assert got.variables.get("CALLPROOF_STATUS") == dialplan_status
    assert got.variables.get("CALLPROOF_REASON") == reason
    assert len(got.callbacks) == callbacks
    if SCENARIOS[name].hangup_in:
        assert got.call["ended_at"] and cause_of(got.call["hangup_cause"]) == SCENARIOS[name].cause
    if callbacks:
        assert got.callbacks[0]["reason"] == "dropped q850=38 in abandoned_in_protocol"
    if status == "failed":
        assert got.call["error"].startswith(reason)
    if SCENARIOS[name].locked_from:  # the whole story is in the row once the journal is in
        assert got.call["consent_outcome"] == "finished" and got.call["error"].startswith("storage_unavailable")
    if SCENARIOS[name].locked_from == "reading":
        assert got.call["protocol"] and got.variables["CALLPROOF_PROTOCOL"] == got.call["protocol"]
        assert got.call["protocol_read_count"] == 2 and [r["state"] for r in got.recordings] == ["recording"]


async def test_finalise_without_the_argument_reads_hangupcause(tmp_path, monkeypatch):
    """An admin's own hangup handler may run AGI(callproof-agi,finalise) without the cause:
    the step reads HANGUPCAUSE itself, and a drop is still called back."""
    config = path_config(tmp_path, "agi")
    async with Database.open(config.storage.database, now=lambda: DB_NOW) as db:
        fake = FakeAsterisk(hangup_in="protocol")
        await AgiFlow(config, db, FakePrompts(), fake, clock=lambda: NOW).run()
        handler = FakeAsterisk(args=("finalise",), hangup_cause=38)
        outcome = await AgiFlow(config, db, FakePrompts(), handler, clock=lambda: NOW).run()
        got = await evidence(db, {}, outcome)
    assert outcome == "abandoned_in_protocol" and len(got.callbacks) == 1
    assert 'GET VARIABLE "HANGUPCAUSE"' in handler.commands


def test_the_shipped_agi_hangup_handlers_pass_the_cause():
    from importlib.resources import files

    for name in ("callproof-agi.conf", "callproof-fastagi.conf"):
        text = files("callproof.dialplan").joinpath(name).read_text()
        finalise = [line for line in text.splitlines() if ",finalise" in line and "AGI(" in line
                    and not line.lstrip().startswith(";")]
        assert finalise and all(line.rstrip().endswith("finalise,${HANGUPCAUSE})") for line in finalise), name
