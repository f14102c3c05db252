"""Dropped-call call-backs: drop vs hang-up, scheduling with the call's end,
sweep, leased claims, attempts and retries, the scheduler against a scripted
fake ARI, and the CLI.  Storage is the real SQLite layer in a temp dir."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from callproof.ari_app.call_events import CallInbox
from callproof.ari_app.callback import CallbackScheduler, far_end_cause, record_call_end
from callproof.ari_app.flow import CallFlow, Services
from callproof.cli import main as cli_main
from callproof.config import load_config
from callproof.storage import Database, InvalidStateError, NewCall, NotFoundError, SmsDraft, connect_sync
from callproof.storage import callbacks as cb
from callproof.storage.callbacks import Plan
from tests.call_rows import advance
from tests.fakes import FakePrompts, FakeRecorder, ScriptedAri, start_event
from tests.fakes.flow_config import write_flow_config

NOW = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)
T0 = "2026-11-22T15:30:00.000000Z"
MOBILE = "+5511987654321"


def at(seconds: float) -> str:
    return cb.to_db_time(NOW + timedelta(seconds=seconds))


@pytest.fixture
def config_path(tmp_path):
    return write_flow_config(tmp_path, """
[callback]
enabled = true
endpoint_template = "PJSIP/{number}@trunk"
first_delay_seconds = 30
retry_delay_seconds = 300
max_attempts = 2
""")


@pytest.fixture
def config(config_path, target):
    # the call-backs' storage on both engines: [storage] url when the target is PostgreSQL
    return load_config(config_path, env={"CALLPROOF_STORAGE_URL": target} if "://" in target else {})


@pytest.fixture
async def db(config):
    database = await Database.open(config.storage.target, now=lambda: T0)
    yield database
    await database.close()


async def call_with_protocol(db, n=1, number=MOBILE, status="protocol_reading") -> tuple[int, str]:
    call_id = await db.calls.create(NewCall(f"chan-{n}", f"{n}.1", f"{n}.1", number or "", number, "Cliente",
                                            "4000", "pt_BR", "2026-11-22T15:29:00Z"))
    draft = SmsDraft(destination=None, language="pt_BR", render_body=lambda p: p, not_sendable_reason="test")
    result = await db.protocols.allocate_for_call(call_id, year=2026, allocated_at=T0, sms=draft)
    if status != "protocol_reading":
        await advance(db, call_id, status)
    return call_id, result.protocol


def rows(db, sql, *params):
    return db.run_in_connection(lambda c: [tuple(r) for r in c.execute(sql, params).fetchall()])


def ended(ev_type="ChannelHangupRequest", **fields) -> CallInbox:
    inbox = CallInbox("chan")
    inbox.push({"type": ev_type, "channel": {"id": "chan"}, **fields})
    return inbox


# ------------------------------------------------------------ drop or not
def test_only_a_far_end_cause_counts():
    assert far_end_cause({"type": "ChannelHangupRequest", "cause": 38}) == 38
    assert far_end_cause({"type": "ChannelDestroyed", "cause": 16, "cause_txt": "Normal Clearing"}) == 16
    # A soft hang-up was asked inside Asterisk; its 'cause' is the soft-hangup flag (32), not Q.850.
    assert far_end_cause({"type": "ChannelHangupRequest", "cause": 32, "soft": True}) is None
    assert far_end_cause({"type": "StasisEnd"}) is None
    assert far_end_cause(None) is None
    assert cb.cause_of(cb.cause_text("ChannelHangupRequest:38", 38)) == 38
    assert cb.cause_of("ended while callproof was disconnected") is None


async def test_drop_after_protocol_is_scheduled_with_the_end(db, config):
    call_id, protocol = await call_with_protocol(db)
    cid = await record_call_end(db, config, call_id, status="abandoned_in_protocol", ended_at=T0,
                                description="ChannelHangupRequest:38", inbox=ended(cause=38))
    call = await db.calls.get(call_id)
    assert call["status"] == "abandoned_in_protocol" and call["ended_at"] == T0
    assert call["hangup_cause"] == "ChannelHangupRequest:38 q850=38"
    row = await cb.Callbacks(db).get(cid)
    assert row["call_id"] == call_id and row["protocol"] == protocol and row["destination"] == MOBILE
    assert row["state"] == "scheduled" and row["next_attempt_at"] == at(30) and row["max_attempts"] == 2
    assert row["language"] == "pt_BR" and "q850=38" in row["reason"]
    audit = await rows(db, "SELECT action, protocol, subject FROM audit_log")
    assert audit == [("callback.scheduled", protocol, f"callback:{cid}")]
    # Idempotent: the same call never gets a second call-back.
    again = await cb.Callbacks(db).end_call(call_id, {"hangup_cause": "x"}, schedule_reason="again",
                                            plan=Plan(0, 3))
    assert again is None
    assert await rows(db, "SELECT count(*) FROM callbacks") == [(1,)]


@pytest.mark.parametrize("status, inbox, enabled", [
    ("abandoned_in_protocol", ended(cause=16), True),                 # the caller hung up
    ("abandoned_in_protocol", ended(cause=32, soft=True), True),      # hung up from inside Asterisk
    ("abandoned_in_consent", ended(cause=38), True),                  # no protocol yet
    ("abandoned_in_protocol", ended(cause=38), False),                # call-backs disabled
])
async def test_no_callback_for_hangups_early_drops_or_when_disabled(db, config, config_path, status, inbox,
                                                                     enabled):
    if not enabled:
        config = load_config(config_path, env={"CALLPROOF_CALLBACK_ENABLED": "false"})
    if status == "abandoned_in_consent":  # hung up before any protocol was given
        call_id = await db.calls.create(NewCall("chan-1", "1.1", "1.1", MOBILE, MOBILE, "", "4000", "pt_BR", T0))
    else:
        call_id, _ = await call_with_protocol(db)
    assert await record_call_end(db, config, call_id, status=status, ended_at=T0, description="x",
                                 inbox=inbox) is None
    assert await rows(db, "SELECT count(*) FROM callbacks") == [(0,)]
    assert (await db.calls.get(call_id))["ended_at"] == T0


async def test_no_callback_without_a_callable_number(db, config):
    call_id, _ = await call_with_protocol(db, number=None)
    assert await record_call_end(db, config, call_id, status="protocol_given", ended_at=T0,
                                 description="x", inbox=ended(cause=41)) is None
    assert (await db.calls.get(call_id))["hangup_cause"] == "x q850=41"


async def test_flow_drop_during_protocol_schedules_a_callback(db, config):
    """The real CallFlow: the far end drops (cause 38) while the protocol is read."""
    ev = start_event()
    inbox = CallInbox(ev["channel"]["id"])

    services = Services(config=config, db=db, ari=ScriptedAri(inbox, hangup_in="protocol", hangup_cause=38),
                        recorder=FakeRecorder(), prompts=FakePrompts(), wake_sms=lambda: None, clock=lambda: NOW)
    flow = CallFlow(services, inbox, ev)
    await asyncio.wait_for(flow.run(), 5)
    row = await cb.Callbacks(db).get_for_call(flow.call_id)
    assert row is not None and row["state"] == "scheduled" and row["protocol"] == flow.protocol
    assert (await db.calls.get(flow.call_id))["status"] == "abandoned_in_protocol"


async def test_sweep_schedules_what_was_missed(db, config):
    dropped, _ = await call_with_protocol(db, 1)
    hung_up, _ = await call_with_protocol(db, 2)
    old, _ = await call_with_protocol(db, 3)
    in_consent = await db.calls.create(NewCall("chan-4", "4.1", "4.1", MOBILE, MOBILE, "", "4000", "pt_BR", T0))
    await advance(db, dropped, "protocol_given", ended_at=T0, hangup_cause="x q850=38")
    await advance(db, hung_up, "protocol_given", ended_at=T0, hangup_cause="x q850=16")
    await advance(db, old, "recording", ended_at="2026-11-20T00:00:00Z", hangup_cause="x q850=38")
    await db.calls.update(in_consent, status="abandoned_in_consent", ended_at=T0, hangup_cause="x q850=38")
    store = cb.Callbacks(db)
    plan = Plan(0, 3)
    scheduled = await store.sweep(drop_causes=config.callback.drop_causes, since=NOW - timedelta(days=1), plan=plan)
    assert len(scheduled) == 1 and (await store.get(scheduled[0]))["call_id"] == dropped
    assert "sweep" in (await store.get(scheduled[0]))["reason"]
    assert await store.sweep(drop_causes=config.callback.drop_causes, since=NOW - timedelta(days=1),
                             plan=plan) == []


# ----------------------------------------------------------- claim / retry
def sync_conn(config):
    return connect_sync(config.storage.target)


async def scheduled_callback(db, first_delay=0, max_attempts=2) -> int:
    call_id, _ = await call_with_protocol(db)
    return await cb.Callbacks(db).end_call(call_id, {"status": "protocol_given", "ended_at": T0},
                                           schedule_reason="test", plan=Plan(first_delay, max_attempts))


async def test_claim_leases_due_rows_and_opens_an_attempt(db, config):
    cid = await scheduled_callback(db, first_delay=60)
    conn = sync_conn(config)
    try:
        assert cb.claim_sync(conn, "a", 5, 100, T0) == []             # not due yet
        [row] = cb.claim_sync(conn, "a", 5, 100, at(60))
        assert row["id"] == cid and row["state"] == "dialling" and row["attempt"] == 1
        assert row["lease_owner"] == "a" and row["lease_until"] == at(160)
        assert cb.claim_sync(conn, "b", 5, 100, at(61)) == []         # leased
        # 'a' died: after the lease, 'b' claims; the open attempt is recorded as interrupted.
        [again] = cb.claim_sync(conn, "b", 5, 100, at(161))
        assert again["attempt"] == 2 and again["lease_owner"] == "b"
        attempts = cb.attempts_sync(conn, cid)
        assert [(a["attempt"], a["outcome"]) for a in attempts] == [(1, "interrupted"), (2, None)]
        # ... and when 'b' dies too, the attempts are used up: failed, audited.
        assert cb.claim_sync(conn, "c", 5, 100, at(400)) == []
        assert cb.get_sync(conn, cid)["state"] == "failed"
        assert conn.execute("SELECT action FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()[0] == "callback.failed"
    finally:
        conn.close()


async def test_busy_retries_after_the_delay_then_fails(db, config):
    cid = await scheduled_callback(db, max_attempts=2)
    conn = sync_conn(config)
    try:
        [row] = cb.claim_sync(conn, "a", 5, 100, T0)
        after = cb.finish_attempt_sync(conn, row["attempt_id"], owner="a", outcome=cb.BUSY, cause=17,
                                       retry_delay_seconds=300, now=at(10))
        assert after["state"] == "scheduled" and after["next_attempt_at"] == at(310)
        assert after["lease_owner"] is None and "busy" in after["outcome"]
        assert cb.claim_sync(conn, "a", 5, 100, at(309)) == []
        [row] = cb.claim_sync(conn, "a", 5, 100, at(310))
        after = cb.finish_attempt_sync(conn, row["attempt_id"], owner="a", outcome=cb.NO_ANSWER, cause=19,
                                       retry_delay_seconds=300, now=at(350))
        assert after["state"] == "failed" and after["completed_at"] == at(350)
        assert after["outcome"] == "gave up after 2 attempts (last: no_answer)"
        attempts = cb.attempts_sync(conn, cid)
        assert [(a["outcome"], a["hangup_cause"], a["answered_at"]) for a in attempts] == [
            ("busy", 17, None), ("no_answer", 19, None)]
    finally:
        conn.close()


async def test_answered_and_played_completes(db, config):
    cid = await scheduled_callback(db)
    conn = sync_conn(config)
    try:
        [row] = cb.claim_sync(conn, "a", 5, 100, T0)
        cb.attempt_dialled_sync(conn, row["attempt_id"], "callproof-cb-1-1-x")
        cb.attempt_answered_sync(conn, row["attempt_id"], at(5))
        after = cb.finish_attempt_sync(conn, row["attempt_id"], owner="a", outcome=cb.ANSWERED_PLAYED, cause=None,
                                       retry_delay_seconds=300, now=at(40))
        assert after["state"] == "completed" and after["outcome"] == "answered_played"
        [a] = cb.attempts_sync(conn, cid)
        assert (a["channel_id"], a["answered_at"], a["ended_at"]) == ("callproof-cb-1-1-x", at(5), at(40))
        actions = [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY id")]
        assert actions == ["callback.scheduled", "callback.completed"]
        with pytest.raises(ValueError, match="unknown attempt outcome"):
            cb.finish_attempt_sync(conn, row["attempt_id"], owner="a", outcome="great", cause=None,
                                   retry_delay_seconds=1, now=at(41))
    finally:
        conn.close()


async def test_cancel_and_manual_schedule(db, config):
    cid = await scheduled_callback(db)
    protocol = (await cb.Callbacks(db).get(cid))["protocol"]
    conn = sync_conn(config)
    try:
        with pytest.raises(InvalidStateError, match="already scheduled"):
            cb.schedule_manual_sync(conn, protocol, actor="ana", plan=Plan(0, 3), now=T0)
        [row] = cb.claim_sync(conn, "a", 5, 100, T0)
        cb.cancel_sync(conn, cid, reason="customer asked", actor="ana", now=at(1))
        # The attempt that was ringing is still recorded; no further attempt is made.
        after = cb.finish_attempt_sync(conn, row["attempt_id"], owner="a", outcome=cb.NO_ANSWER, cause=19,
                                       retry_delay_seconds=1, now=at(2))
        assert after["state"] == "cancelled" and after["outcome"] == "cancelled: customer asked"
        assert cb.attempts_sync(conn, cid)[0]["outcome"] == "no_answer"
        with pytest.raises(InvalidStateError, match="already cancelled"):
            cb.cancel_sync(conn, cid, reason="again", actor="ana", now=at(3))
        # A finished call-back can be opened again by hand, with fresh attempts.
        assert cb.schedule_manual_sync(conn, protocol, actor="bruno", plan=Plan(0, 3), now=at(4)) == cid
        row = cb.get_sync(conn, cid)
        assert (row["state"], row["attempts"], row["max_attempts"], row["next_attempt_at"]) == (
            "scheduled", 1, 4, at(4))
        actors = conn.execute("SELECT action, actor FROM audit_log ORDER BY id").fetchall()
        assert [tuple(a) for a in actors][-2:] == [("callback.cancelled", "ana"), ("callback.scheduled", "bruno")]
        with pytest.raises(NotFoundError, match="no call has protocol"):
            cb.schedule_manual_sync(conn, "20269999999999999", actor="x", plan=Plan(0, 1), now=T0)
        with pytest.raises(ValueError, match="reason"):
            cb.cancel_sync(conn, cid, reason="", actor="x", now=T0)
    finally:
        conn.close()


# -------------------------------------------------------------- scheduler
class DiallingAri:
    """Answers originate with the events Asterisk sends: a script per attempt."""

    app = "callproof"

    def __init__(self, scheduler_ref: list, scripts: list[str]):
        self.ref = scheduler_ref
        self.scripts = scripts
        self.ops: list[tuple] = []

    def _emit(self, channel_id, *events):
        loop = asyncio.get_running_loop()
        for ev in events:
            if ev["type"] != "Dial":
                ev.setdefault("channel", {"id": channel_id})
            loop.call_soon(self.ref[0].route, ev, channel_id)

    async def originate(self, *, endpoint, channel_id, app_args, caller_id="", timeout=30):
        self.ops.append(("originate", endpoint, app_args, caller_id, timeout))
        script = self.scripts.pop(0)
        if script == "busy":
            # What a Local leg gives: the Dial status says BUSY, the channel ends with cause 0.
            self._emit(channel_id, {"type": "Dial", "dialstatus": "BUSY", "peer": {"id": channel_id}},
                       {"type": "ChannelDestroyed", "cause": 0, "cause_txt": "Unknown"})
        else:
            self._emit(channel_id, {"type": "StasisStart", "args": app_args.split(","),
                                    "channel": {"id": channel_id, "name": "PJSIP/trunk-1", "state": "Up"}})

    async def play(self, channel_id, media, playback_id, language=None):
        self.ops.append(("play", playback_id.split("-")[2], tuple(media)))
        pb = {"id": playback_id, "target_uri": f"channel:{channel_id}", "state": "done"}
        self._emit(channel_id, {"type": "PlaybackFinished", "playback": pb})

    async def hangup(self, channel_id, reason="normal"):
        self.ops.append(("hangup", channel_id))


async def run_scheduler_until(scheduler, store, cid, states, timeout=5):
    task = asyncio.ensure_future(scheduler.run())
    try:
        async with asyncio.timeout(timeout):
            while (await store.get(cid))["state"] not in states or scheduler.tasks:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return await store.get(cid)


async def test_scheduler_busy_then_answered_plays_announcement_and_protocol(config_path):
    config = load_config(config_path, env={"CALLPROOF_CALLBACK_RETRY_DELAY_SECONDS": "0",
                                           "CALLPROOF_CALLBACK_FIRST_DELAY_SECONDS": "0"})
    async with Database.open(config.storage.target) as db:
        cid = await scheduled_callback(db)
        row = await cb.Callbacks(db).get(cid)
        ref: list = []
        ari = DiallingAri(ref, ["busy", "answer"])
        scheduler = CallbackScheduler(config, db, FakePrompts(), lambda: ari)
        ref.append(scheduler)
        final = await run_scheduler_until(scheduler, cb.Callbacks(db), cid, {"completed", "failed"})
        assert final["state"] == "completed" and final["attempts"] == 2
        attempts = await cb.Callbacks(db).attempts(cid)
        assert [(a["outcome"], a["hangup_cause"]) for a in attempts] == [("busy", 17), ("answered_played", None)]
        assert attempts[1]["answered_at"] and attempts[1]["channel_id"].startswith("callproof-cb-")
        originate = ari.ops[0]
        assert originate == ("originate", f"PJSIP/{MOBILE[1:]}@trunk", f"callback,{cid}", "", 30)
        plays = [op[1:] for op in ari.ops if op[0] == "play"]
        assert plays[0] == ("consent", ("sound:/prompts/pt_BR/consent",))
        digits = [m for _what, media in plays[1:] for m in media if m.startswith("sound:digits/")]
        assert "".join(m[-1] for m in digits) == row["protocol"] * (1 + config.protocol_reading.repeat)
        assert ari.ops[-1][0] == "hangup"


# -------------------------------------------------------------------- CLI
async def test_cli_list_schedule_cancel(db, config, config_path, capsys, monkeypatch):
    if config.storage.url:  # the command reads its configuration itself: the same database
        monkeypatch.setenv("CALLPROOF_STORAGE_URL", config.storage.url)
    call_id, protocol = await call_with_protocol(db)
    await advance(db, call_id, "protocol_given", ended_at=T0)
    base = ["--config", str(config_path)]
    assert cli_main([*base, "callback", "schedule", protocol, "--by", "ana"]) == 0
    assert f"scheduled for protocol {protocol}" in capsys.readouterr().out
    assert cli_main([*base, "callback", "list", "--state", "scheduled", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["protocol"] == protocol and row["destination"] == MOBILE and row["reason"] == "manual by ana"
    assert cli_main([*base, "callback", "list"]) == 0
    out = capsys.readouterr().out
    assert protocol in out and MOBILE not in out and "+551198765****" in out
    assert cli_main([*base, "callback", "cancel", str(row["id"]), "--reason", "duplicate", "--by", "ana"]) == 0
    assert cli_main([*base, "callback", "cancel", str(row["id"]), "--reason", "again", "--by", "ana"]) == 1
    assert "already cancelled" in capsys.readouterr().err
    assert cli_main([*base, "callback", "schedule", "123", "--by", "ana"]) == 2
    assert cli_main([*base, "callback", "show", str(row["id"])]) == 0
    assert "cancelled" in capsys.readouterr().out
