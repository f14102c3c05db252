"""Test helper: a database seeded through the real storage functions with calls, protocol SMS
(sent, then a delivery receipt), recordings, legal holds, customer requests and history
requests whose outcomes are known, across October and November 2026 in São Paulo time
(UTC-3, no DST).  :data:`EXPECTED` holds the figures the compliance report must show for
them, worked out by hand in the comments of :func:`seed_two_months`.

The edge cases: a call at 23:59 local (02:59 UTC the next day) counted on its local day; a
call at 23:30 local the day before the period (inside it in UTC) left out; an SMS delivered
24 h + 1 s after the call (late) and one at exactly 24 h (in time); an answer at exactly
60 s (within 60 s); 6 October, the day after, with no call at all; a request delivered on
the 10th day (in time) and one on the 11th (late); an open request past its due day (late)
and one before it (neither); a history produced on the 5th day (in time) and on the 6th.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from callproof.storage import NewCall, allocate_sync
from callproof.storage import calls as calls_store
from callproof.storage import holds as holds_store
from callproof.storage import recordings as recordings_store
from callproof.storage.history import create_history_request_sync, mark_history_produced_sync
from callproof.storage.outbox import claim_for_send_sync
from callproof.storage.outbox_answers import finish_attempt_sync
from callproof.storage.outbox_receipts import record_dlr_sync
from callproof.storage.protocols import SmsDraft
from callproof.storage.queue_wait import mark_queue_event_sync
from callproof.storage.retention import retention_store
from tests.call_rows import advance_sync

TZ = ZoneInfo("America/Sao_Paulo")
#: the report's clock: requests still open are judged against it
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
FIRST, LAST = date(2026, 10, 1), date(2026, 11, 30)


def local(text: str) -> datetime:
    """'2026-10-05 10:00:00' São Paulo time, as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


@dataclass
class SeedCall:
    at: str  # local start
    consent: str = "finished"  # consent_outcome; anything else: the caller left in the announcement
    protocol: bool = True  # the protocol reading finished
    sms_after: float | None = None  # seconds from the start to the DELIVRD receipt; None: no receipt
    wait: float | None = None  # hand-off -> agent answered, seconds
    abandoned_after: float | None = None  # hand-off -> caller gave up, seconds
    recording: str | None = None  # "kept", "deleted" or None
    hold: bool = False  # a legal hold on its protocol


_seq = 0


def seed_call(conn: sqlite3.Connection, c: SeedCall) -> dict:
    """One call through the storage calls a real call makes; returns its row's id and protocol."""
    global _seq
    _seq += 1
    start = local(c.at)
    uniqueid = f"seed-{_seq}.{int(start.timestamp())}"
    caller = f"+55119876{_seq:05d}"
    call_id = calls_store.create_sync(conn, NewCall(f"ch-{uniqueid}", uniqueid, uniqueid, caller[3:], caller,
                                                    None, "4000", "pt_BR", start), start)
    if c.consent != "finished":
        advance_sync(conn, call_id, "abandoned_in_consent", consent_outcome=c.consent, ended_at=start)
        return {"id": call_id, "protocol": None}
    calls_store.update_sync(conn, call_id, {"consent_outcome": "finished",
                                            "consent_finished_at": start + timedelta(seconds=10)}, start)
    draft = SmsDraft(caller, "pt_BR", lambda p: f"Protocolo {p}")
    allocated = allocate_sync(conn, year=start.year, allocated_at=start + timedelta(seconds=10), call_id=call_id,
                              sms=draft if c.protocol else None)
    protocol = allocated.protocol
    if not c.protocol:
        advance_sync(conn, call_id, "abandoned_in_protocol", ended_at=start + timedelta(seconds=15))
        return {"id": call_id, "protocol": protocol}
    read_at = start + timedelta(seconds=30)
    advance_sync(conn, call_id, "protocol_given", protocol_read_finished_at=read_at)
    if allocated.outbox_id is not None:
        claimed = claim_for_send_sync(conn, "seed", 1, 60, read_at, "smpp")
        assert [r["id"] for r in claimed] == [allocated.outbox_id]
        gateway_id = f"gw-{uniqueid}"
        finish_attempt_sync(conn, claimed[0]["attempt_id"], outcome="accepted", row_state="sent",
                            now=read_at + timedelta(seconds=1), owner="seed", gateway_message_id=gateway_id)
        if c.sms_after is not None:
            record_dlr_sync(conn, gateway_id, "DELIVRD", start + timedelta(seconds=c.sms_after))
    if c.recording:
        rec = recordings_store.create_sync(conn, call_id, protocol, f"/seed/{protocol}.wav", caller,
                                           read_at)
        recordings_store.finalise_sync(conn, rec, size_bytes=8000, duration_ms=60_000, sha256="0" * 64,
                                       finalised_at=read_at + timedelta(seconds=90))
        if c.recording == "deleted":
            with retention_store(conn).write() as writes:
                writes.set_deleted([rec])
    if c.hold:
        holds_store.place_hold_sync(conn, "protocol", reason="litigation", placed_by="seed", at=start,
                                    protocol=protocol)
    handed_off = read_at + timedelta(seconds=30)
    advance_sync(conn, call_id, "handed_off", handed_off_at=handed_off)
    if c.wait is not None:
        mark_queue_event_sync(conn, uniqueid, "answered", handed_off + timedelta(seconds=c.wait), "support")
    elif c.abandoned_after is not None:
        mark_queue_event_sync(conn, uniqueid, "abandoned", handed_off + timedelta(seconds=c.abandoned_after),
                              "support")
    advance_sync(conn, call_id, "completed", ended_at=handed_off + timedelta(seconds=600))
    return {"id": call_id, "protocol": protocol}


def seed_request(conn: sqlite3.Connection, protocol: str, opened: str, delivered: str | None) -> int:
    request_id = holds_store.open_request_sync(conn, protocol, at=local(opened), reference="seed")
    if delivered:
        holds_store.close_request_sync(conn, request_id, at=local(delivered))
    return request_id


def seed_history(conn: sqlite3.Connection, received: str, produced: str | None) -> int:
    history_id = create_history_request_sync(conn, "cpf", "seed-hash", received_at=local(received),
                                             due_at=local(received) + timedelta(days=5), actor="seed", fmt="pdf")
    if produced:
        mark_history_produced_sync(conn, history_id, produced_at=local(produced), fmt="pdf", path="/seed/h.pdf",
                                   sha256="0" * 64, actor="seed", audit_details={})
    return history_id


def seed_two_months(conn: sqlite3.Connection) -> dict[str, dict]:
    """The seeded rows; returns the calls by name."""
    calls = {
        # 30 Sep 23:30 local = 1 Oct 02:30 UTC: before the period's first local day, left out
        "Z": SeedCall("2026-09-30 23:30:00", sms_after=60, wait=10, recording="kept"),
        # 5 Oct: A answered in 30 s, SMS in 60 s
        "A": SeedCall("2026-10-05 10:00:00", sms_after=60, wait=30, recording="kept"),
        # B: SMS at 24 h + 1 s (late), answered in 120 s (within 180, not 60), recording held
        "B": SeedCall("2026-10-05 11:00:00", sms_after=24 * 3600 + 1, wait=120, recording="kept", hold=True),
        # C at 23:59 local (6 Oct 02:59 UTC): counts on the 5th; SMS at exactly 24 h (in time);
        # gave up in the queue; its recording deleted by retention
        "C": SeedCall("2026-10-05 23:59:00", sms_after=24 * 3600, abandoned_after=200, recording="deleted"),
        # D hung up during the announcement: no protocol, no SMS, no queue
        "D": SeedCall("2026-10-05 12:00:00", consent="caller_left", protocol=False),
        # 10 Nov: E's SMS never delivered, answered after 240 s (beyond both thresholds)
        "E": SeedCall("2026-11-10 09:00:00", wait=240, recording="kept"),
        # F answered at exactly 60 s (within 60), SMS in 5 minutes
        "F": SeedCall("2026-11-10 09:30:00", sms_after=300, wait=60, recording="kept"),
        # G heard the announcement but hung up before the protocol was read
        "G": SeedCall("2026-11-10 10:00:00", protocol=False),
    }
    rows = {name: seed_call(conn, c) for name, c in calls.items()}
    a, e, f = rows["A"]["protocol"], rows["E"]["protocol"], rows["F"]["protocol"]
    # received 5 Oct: due end of 15 Oct local. R1 delivered 15 Oct 22:00 (day 10: in time),
    # R2 on 16 Oct 09:00 (day 11: late).  Both closed long before the grace cutoff: hold nothing.
    seed_request(conn, a, "2026-10-05 10:30:00", "2026-10-15 22:00:00")
    seed_request(conn, a, "2026-10-05 11:30:00", "2026-10-16 09:00:00")
    # R3 received 10 Nov, due 20 Nov, still open on 2 Dec: late, and it holds E's recording
    seed_request(conn, e, "2026-11-10 09:10:00", None)
    # R4 received 28 Nov, due 8 Dec: open, not late yet; holds F's recording
    seed_request(conn, f, "2026-11-28 09:00:00", None)
    # histories: received 5 Oct, produced 10 Oct (day 5: in time); received 3 Nov, produced 9 Nov
    seed_history(conn, "2026-10-05 09:00:00", "2026-10-10 20:00:00")
    seed_history(conn, "2026-11-03 09:00:00", "2026-11-09 09:00:00")
    return rows


#: month / total -> figure -> what the report must show (thresholds 60, 180 s; 24 h; 10/5 days)
EXPECTED: dict[str, dict[str, object]] = {
    "2026-10": {
        "calls": 4, "announcement_pct": 75.0, "protocol_pct": 75.0, "sms_pct": 200 / 3,
        "queued": 3, "wait_median": 75.0, "wait_p95": 120.0, "within_pct": [100 / 3, 200 / 3], "abandoned": 1,
        "recordings_kept": 2, "recordings_deleted": 1, "recordings_held": 1,
        "requests_received": 2, "requests_in_time": 1, "requests_late": 1,
        "histories_received": 1, "histories_in_time": 1,
    },
    "2026-11": {
        "calls": 3, "announcement_pct": 100.0, "protocol_pct": 200 / 3, "sms_pct": 50.0,
        "queued": 2, "wait_median": 150.0, "wait_p95": 240.0, "within_pct": [50.0, 50.0], "abandoned": 0,
        "recordings_kept": 2, "recordings_deleted": 0, "recordings_held": 2,
        "requests_received": 2, "requests_in_time": 0, "requests_late": 1,
        "histories_received": 1, "histories_in_time": 0,
    },
    "total": {
        "calls": 7, "announcement_pct": 600 / 7, "protocol_pct": 500 / 7, "sms_pct": 60.0,
        "queued": 5, "wait_median": 90.0, "wait_p95": 240.0, "within_pct": [40.0, 60.0], "abandoned": 1,
        "recordings_kept": 4, "recordings_deleted": 1, "recordings_held": 3,
        "requests_received": 4, "requests_in_time": 1, "requests_late": 2,
        "histories_received": 2, "histories_in_time": 1,
    },
}
