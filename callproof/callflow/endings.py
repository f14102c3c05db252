"""How a call ends, written once for both transports: the caller left, the flow
failed, or (AGI hangup handler) the channel is gone and the call is closed.

A call that ends by a network drop (a Q.850 cause in ``[callback] drop_causes``)
after its protocol was given and before the hand-off gets a call-back, written in
the same transaction as its end (``docs/callback.md``).  ARI knows the cause when
the caller leaves; AGI learns it in the hangup handler, which passes
``HANGUPCAUSE`` to :func:`finalise`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from callproof.config import Config
from callproof.logs import event
from callproof.storage import Database
from callproof.storage.call_status import CallStatus, when_caller_left, when_ended
from callproof.storage.callbacks import ELIGIBLE_END_STATUSES, Callbacks, Plan, cause_of, cause_text
from callproof.storage.errors import StorageUnavailable
from callproof.storage.journal import Journal, replay_sync

from .call_store import CallStore
from .decisions import iso
from .port import CallPort
from .reasons import PROTOCOL_VARIABLE, REASON_VARIABLE, RECORDING_VARIABLE, STATUS_VARIABLE, DialplanStatus, Reason
from .recording_files import finalise_recording, journal_recording_end, keyring_of

log = logging.getLogger("callproof.flow")


def is_drop(cause: int | None, config: Config) -> bool:
    return cause is not None and cause in config.callback.drop_causes


def callback_reason(config: Config, cause: int | None, status: str) -> str | None:
    """Why the call is called back, or None when it is not (see the module doc)."""
    if config.callback.enabled and is_drop(cause, config) and status in ELIGIBLE_END_STATUSES:
        return f"dropped q850={cause} in {status}"
    return None


async def end_call(db: Database, config: Config, call_id: int | None, *, status: str, ended_at: str,
                   description: str, cause: int | None, changes: dict[str, Any] | None = None,
                   store: CallStore | None = None) -> int | None:
    """Record the end of a call (its status, when and why, with the Q.850 cause) and its
    call-back when it was a drop in an eligible phase.  Returns the call-back id, if any.
    With the call's ``store`` the write is bounded (and journalled when storage is away)."""
    written = {"status": status, "ended_at": ended_at, "hangup_cause": cause_text(description, cause),
               **(changes or {})}
    cb = config.callback
    reason = callback_reason(config, cause, status)
    plan = Plan(cb.first_delay_seconds, cb.max_attempts) if reason else None
    if store is not None:
        callback_id = await store.end(written, reason, plan)
    else:
        assert call_id is not None
        callback_id = await Callbacks(db).end_call(call_id, written, schedule_reason=reason, plan=plan)
    if callback_id is not None:
        event(log, "callback.scheduled", call_id=call_id, callback_id=callback_id, cause=cause)
    elif reason is not None:
        event(log, "callback.not_scheduled", logging.WARNING, call_id=call_id, cause=cause,
              why="already scheduled, no protocol, or no callable caller number")
    return callback_id


async def caller_left(store: CallStore, config: Config, current: str, *, description: str,
                      cause: int | None, now: datetime) -> CallStatus:
    """The caller hung up (or the network dropped them) during the flow."""
    status = when_caller_left(current)
    await end_call(store.db, config, store.call_id, status=status, ended_at=iso(now), description=description[:200],
                   cause=cause, store=store)
    return status


async def record_failure(store: CallStore | None, reason: Reason, exc: BaseException) -> None:
    """Write ``failed`` and why on the call row, whenever there is one (journalled when storage is away)."""
    if store is None or (store.call_id is None and not store.journalled):
        return
    try:
        await store.update(status=CallStatus.FAILED, error=f"{reason}: {type(exc).__name__}: {exc}"[:500])
    except Exception:
        log.exception("could not record the failure")


async def tell_dialplan_failed(port: CallPort, reason: Reason, protocol: str | None,
                               call_id: int | None = None, recording: Path | None = None) -> None:
    """CALLPROOF_STATUS=failed and CALLPROOF_REASON (and the protocol, whenever one was
    allocated), then on to the hand-off: a caller is never left in silence.  ``call_id``:
    the call has a row (or one in the journal, ``UNKNOWN_ROW``) whose end is to be watched."""
    try:
        await port.set_variable(STATUS_VARIABLE, DialplanStatus.FAILED)
        await port.set_variable(REASON_VARIABLE, reason)
        if protocol:
            await port.set_variable(PROTOCOL_VARIABLE, protocol)
        if recording is not None:
            await port.set_variable(RECORDING_VARIABLE, str(recording))
        await port.hand_off(call_id)
    except Exception:
        log.warning("could not hand a failed call to the dialplan", exc_info=True)


async def _settle(config: Config, ids: frozenset[int]) -> None:
    """Settle what the replay finalised (journal_replay.settle_journalled); never fails the
    hangup handler: what is left is finished by 'callproof recording encrypt'."""
    try:
        from .journal_replay import settle_journalled
        await asyncio.to_thread(settle_journalled, config, ids)
    except Exception as exc:  # no cryptography on this Python, a storage error...
        event(log, "recording.settle_failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}"[:300],
              hint="'callproof recording encrypt' finishes it (docs/keys.md)")


async def _finalise_journalled(journal: Journal, channel_id: str, cause_raw: str, now: datetime,
                               keyring: Any = None) -> str:
    entries = journal.entries_for(channel_id)
    done = {e["path"] for e in entries if e["op"] in ("recording.finalise", "recording.fail")}
    for e in entries:
        if e["op"] == "recording.create" and e["path"] not in done:
            await journal_recording_end(journal, channel_id, Path(e["path"]), iso(now), keyring=keyring)
    journal.submit(channel_id, "call.ended", ended_at=iso(now),
                   hangup_cause=f"Hangup:{cause_raw}" if cause_raw else "Hangup")
    await asyncio.to_thread(journal.flush)  # the hangup handler's process ends next
    event(log, "agi.call.finalised", channel=channel_id, journalled=True)
    return "journalled"


def parse_cause(value: str | None) -> int | None:
    """``HANGUPCAUSE`` as a Q.850 cause; 0, empty or garbage is unknown."""
    text = (value or "").strip()
    return int(text) if text.isdigit() and 0 < int(text) < 128 else None


async def finalise(db: Database, config: Config, channel_id: str, *, cause: int | None,
                   cause_raw: str, now: datetime, journal: Journal | None = None) -> str:
    """The channel is gone (AGI hangup handler): measure its recordings, close the call
    row with the hang-up cause, and schedule a call-back for a drop.  When the call's
    writes still wait in the journal (storage unavailable), its end joins them there."""
    if journal is not None and journal.has_pending:
        try:
            replayed = await db.run_within(config.storage.call_wait_seconds, replay_sync, journal, db.now())
        except StorageUnavailable as exc:
            event(log, "storage.journal_waiting", logging.WARNING, problem=exc.problem)
        else:  # the caller has gone: the hangup handler settles what it replayed, as the replayer does
            if replayed.to_settle and config.encryption.enabled:
                await _settle(config, replayed.to_settle)
        if journal.entries_for(channel_id):
            return await _finalise_journalled(journal, channel_id, cause_raw, now, keyring_of(db))
    row = await db.calls.get_by_channel(channel_id)
    if row is None:
        return "no_call"
    for rec in await db.recordings.for_call(row["id"]):
        if rec["state"] == "recording":
            await finalise_recording(db, rec["id"], Path(rec["path"]), iso(now))
    status = when_ended(row["status"])
    description = row["hangup_cause"] or (f"Hangup:{cause_raw}" if cause_raw else "Hangup")
    known = cause if cause_of(description) is None else None  # a cause already written stays
    if row["ended_at"] is None or status != row["status"] or known is not None:
        await end_call(db, config, row["id"], status=status, ended_at=row["ended_at"] or iso(now),
                       description=description, cause=known)
    event(log, "agi.call.finalised", channel=channel_id, protocol=row["protocol"], status=status, cause=cause)
    return status
