"""How a call ends, written once for both transports: the caller left, the flow
failed, or (AGI hangup handler) the channel is gone and the call is closed.

A call that ends by a network drop (a Q.850 cause in ``[callback] drop_causes``)
after its protocol was given and before the hand-off gets a call-back, written in
the same transaction as its end (``docs/callback.md``).  ARI knows the cause when
the caller leaves; AGI learns it in the hangup handler, which passes
``HANGUPCAUSE`` to :func:`finalise`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from callproof.config import Config
from callproof.logs import event
from callproof.storage import Database
from callproof.storage.call_status import CallStatus, when_caller_left, when_ended
from callproof.storage.callbacks import ELIGIBLE_END_STATUSES, Callbacks, Plan, cause_of, cause_text

from .decisions import iso
from .port import CallPort
from .reasons import PROTOCOL_VARIABLE, REASON_VARIABLE, STATUS_VARIABLE, DialplanStatus, Reason
from .recording_files import finalise_recording

log = logging.getLogger("callproof.flow")


def is_drop(cause: int | None, config: Config) -> bool:
    return cause is not None and cause in config.callback.drop_causes


def callback_reason(config: Config, cause: int | None, status: str) -> str | None:
    """Why the call is called back, or None when it is not (see the module doc)."""
    if config.callback.enabled and is_drop(cause, config) and status in ELIGIBLE_END_STATUSES:
        return f"dropped q850={cause} in {status}"
    return None


async def end_call(db: Database, config: Config, call_id: int, *, status: str, ended_at: str,
                   description: str, cause: int | None, changes: dict[str, Any] | None = None) -> int | None:
    """Record the end of a call (its status, when and why, with the Q.850 cause) and its
    call-back when it was a drop in an eligible phase.  Returns the call-back id, if any."""
    written = {"status": status, "ended_at": ended_at, "hangup_cause": cause_text(description, cause),
               **(changes or {})}
    cb = config.callback
    reason = callback_reason(config, cause, status)
    callback_id = await Callbacks(db).end_call(
        call_id, written, schedule_reason=reason,
        plan=Plan(cb.first_delay_seconds, cb.max_attempts) if reason else None)
    if callback_id is not None:
        event(log, "callback.scheduled", call_id=call_id, callback_id=callback_id, cause=cause)
    elif reason is not None:
        event(log, "callback.not_scheduled", logging.WARNING, call_id=call_id, cause=cause,
              why="already scheduled, no protocol, or no callable caller number")
    return callback_id


async def caller_left(db: Database, config: Config, call_id: int, current: str, *, description: str,
                      cause: int | None, now: datetime) -> CallStatus:
    """The caller hung up (or the network dropped them) during the flow."""
    status = when_caller_left(current)
    await end_call(db, config, call_id, status=status, ended_at=iso(now), description=description[:200],
                   cause=cause)
    return status


async def record_failure(db: Database | None, call_id: int | None, reason: Reason, exc: BaseException) -> None:
    """Write ``failed`` and why on the call row, whenever there is one and storage answers."""
    if db is None or call_id is None:
        return
    try:
        await db.calls.update(call_id, status=CallStatus.FAILED,
                              error=f"{reason}: {type(exc).__name__}: {exc}"[:500])
    except Exception:
        log.exception("could not record the failure")


async def tell_dialplan_failed(port: CallPort, reason: Reason, protocol: str | None) -> None:
    """CALLPROOF_STATUS=failed and CALLPROOF_REASON, then on to the hand-off: a caller
    is never left in silence."""
    try:
        await port.set_variable(STATUS_VARIABLE, DialplanStatus.FAILED)
        await port.set_variable(REASON_VARIABLE, reason)
        if protocol:
            await port.set_variable(PROTOCOL_VARIABLE, protocol)
        await port.hand_off(None)
    except Exception:
        log.warning("could not hand a failed call to the dialplan", exc_info=True)


def parse_cause(value: str | None) -> int | None:
    """``HANGUPCAUSE`` as a Q.850 cause; 0, empty or garbage is unknown."""
    text = (value or "").strip()
    return int(text) if text.isdigit() and 0 < int(text) < 128 else None


async def finalise(db: Database, config: Config, channel_id: str, *, cause: int | None,
                   cause_raw: str, now: datetime) -> str:
    """The channel is gone (AGI hangup handler): measure its recordings, close the call
    row with the hang-up cause, and schedule a call-back for a drop."""
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
