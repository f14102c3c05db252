"""SMS delivery receipts (``sms_dlrs``) and the counts behind the SMS metrics.

Which row a receipt belongs to, from facts only (docs/sms.md, "Receipts"):

* A receipt carries the gateway's message id.  An SMSC that restarts may
  hand out its ids again, so several rows can have been accepted with the
  same id.  The id belongs to the row accepted with it **last**: by giving
  the id out again the SMSC shows it is done with the earlier message.
* That row takes the receipt unless it already has a *final* receipt for
  that id (:data:`FINAL_STATES`); a final receipt is never overwritten.
  Not even a receipt identical to it is attached as "sent again": within a
  minute, the receipt of the next message given the same id reads exactly
  the same (the text has minute-resolution dates).
* Otherwise the receipt has no row yet: it is **held** (stored with no
  ``outbox_id``) and attached when an acceptance with that id is written
  for an attempt started before the receipt arrived
  (:func:`attach_early_receipts`, in the acceptance's transaction).  Held
  receipts that no acceptance claims within the hold time expire
  (:func:`expire_held_receipts_sync`): kept as received, never attached;
  one that reads exactly like a receipt stored for a row (likely the SMSC
  sending it again) says which row.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from ._sqlutil import fetch_all, immediate
from .dialect import dialect_of
from .timefmt import parse_db_time, to_db_time

#: SMPP 3.4 appendix B states after which the message's fate does not change.
#: ENROUTE is intermediate; UNKNOWN ("invalid state", also what an unreadable
#: receipt is recorded as) is not taken as final, so a later receipt can still say.
FINAL_STATES = frozenset({"DELIVRD", "UNDELIV", "EXPIRED", "DELETED", "REJECTD", "ACCEPTD"})
_FINAL_SQL = ", ".join(f"'{s}'" for s in sorted(FINAL_STATES))


def is_final(status: str) -> bool:
    return status.upper() in FINAL_STATES


def _accepted_with(conn: sqlite3.Connection, gateway_message_id: str) -> list[int]:
    """Rows accepted with this gateway id (alone, or as one part of a message
    sent in parts), the last accepted first."""
    # CROSS JOIN: the outbox rows (found by index) first, then their attempts
    accepting = ("SELECT o.id, a.finished_at, a.id FROM sms_outbox o{hint}"
                 " {join} sms_attempts a ON a.outbox_id = o.id AND a.outcome = 'accepted'"
                 " AND a.gateway_message_id = o.gateway_message_id WHERE {where}")
    join = dialect_of(conn).ordered_join
    found = conn.execute(accepting.format(hint="", join=join, where="o.gateway_message_id = ?"),
                         (gateway_message_id,)).fetchall()
    found += conn.execute(accepting.format(
        hint=" INDEXED BY sms_outbox_parts", join=join,
        where="o.gateway_message_id LIKE '%,%' AND instr(',' || o.gateway_message_id || ',', ?) > 0"),
        (f",{gateway_message_id},",)).fetchall()
    found.sort(key=lambda r: (r[1], r[2]), reverse=True)
    return [r[0] for r in found]


def _final_for(conn: sqlite3.Connection, outbox_id: int, gateway_message_id: str) -> bool:
    return conn.execute(
        "SELECT 1 FROM sms_dlrs WHERE outbox_id = ? AND gateway_message_id = ? AND final = 1 LIMIT 1",
        (outbox_id, gateway_message_id)).fetchone() is not None


def _set_row_receipt(conn: sqlite3.Connection, outbox_id: int, status: str, at: str) -> None:
    """The row shows its latest receipt, except that a non-final one never
    replaces a final one (a message in parts: another part still en route)."""
    conn.execute(
        "UPDATE sms_outbox SET dlr_state = ?, dlr_at = ? WHERE id = ?"
        f" AND (? = 1 OR dlr_state IS NULL OR dlr_state NOT IN ({_FINAL_SQL}))",
        (status, at, outbox_id, is_final(status)))


def match_receipt(conn: sqlite3.Connection, gateway_message_id: str,
                  idempotency_key: str | None = None) -> tuple[int | None, str | None]:
    """(row, how) a receipt belongs to under the rules above; (None, None): hold it."""
    rows = _accepted_with(conn, gateway_message_id)
    if rows:
        last = rows[0]
        if not _final_for(conn, last, gateway_message_id):
            return last, "gateway_id" if len(rows) == 1 else "reused_id"
        return None, None
    if idempotency_key:
        hit = conn.execute("SELECT id FROM sms_outbox WHERE idempotency_key = ?", (idempotency_key,)).fetchone()
        if hit is not None and not _final_for(conn, hit[0], gateway_message_id):
            return hit[0], "idempotency_key"
    return None, None


def record_dlr_sync(
    conn: sqlite3.Connection, gateway_message_id: str, status: str, now: str | datetime,
    detail: str | None = None, idempotency_key: str | None = None,
) -> int | None:
    """Store a delivery receipt; returns the outbox row it belongs to (None
    when it is held until its acceptance is written: the module's rules)."""
    if not gateway_message_id:
        raise ValueError("a delivery receipt needs the gateway's message id")
    now = to_db_time(now)
    status = status.upper()
    with immediate(conn):
        oid, how = match_receipt(conn, gateway_message_id, idempotency_key)
        conn.execute(
            "INSERT INTO sms_dlrs (outbox_id, gateway_message_id, status, received_at, detail, final, matched_by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)", (oid, gateway_message_id, status, now, detail, is_final(status), how))
        if oid is not None:
            _set_row_receipt(conn, oid, status, now)
        return oid


def held_gateway_ids(conn: sqlite3.Connection) -> set[str]:
    """The gateway ids of the receipts held now (usually none)."""
    return {r[0] for r in conn.execute(
        "SELECT DISTINCT gateway_message_id FROM sms_dlrs INDEXED BY sms_dlrs_held"
        " WHERE outbox_id IS NULL AND expired_at IS NULL")}


def attach_early_receipts(conn: sqlite3.Connection, oid: int, gateway_message_id: str,
                          attempt_started_at: str | datetime) -> int:
    """In the transaction that writes the acceptance of row ``oid`` with this
    gateway id (one id per part, joined by commas): attach the held receipts
    for those ids that arrived after the attempt started (an earlier one
    cannot be this message's).  Returns how many."""
    ids = gateway_message_id.split(",")
    since = to_db_time(attempt_started_at)
    held = conn.execute(
        "SELECT id, status, received_at FROM sms_dlrs INDEXED BY sms_dlrs_held"
        " WHERE outbox_id IS NULL AND expired_at IS NULL"
        f" AND gateway_message_id IN ({', '.join('?' for _ in ids)}) AND received_at >= ? ORDER BY id",
        (*ids, since)).fetchall()
    if not held:
        return 0
    conn.executemany("UPDATE sms_dlrs SET outbox_id = ?, matched_by = 'early' WHERE id = ?",
                     [(oid, h[0]) for h in held])
    shown = next((h for h in held if is_final(h[1])), held[-1])
    _set_row_receipt(conn, oid, shown[1], shown[2])
    return len(held)


def expire_held_receipts_sync(conn: sqlite3.Connection, now: str | datetime,
                              hold_seconds: float) -> list[dict]:
    """Held receipts older than ``hold_seconds`` expire: no acceptance will
    claim them now.  Returns them (id, gateway_message_id, status,
    received_at, and ``same_as_outbox_id``: the row that has a receipt
    reading exactly the same, or None)."""
    if hold_seconds <= 0:
        raise ValueError("hold_seconds must be > 0")
    now = to_db_time(now)
    cutoff = to_db_time(parse_db_time(now) - timedelta(seconds=hold_seconds))
    with immediate(conn):
        gone = fetch_all(conn.execute(
            "UPDATE sms_dlrs INDEXED BY sms_dlrs_held SET expired_at = ?"
            " WHERE outbox_id IS NULL AND expired_at IS NULL AND received_at < ?"
            " RETURNING id, gateway_message_id, status, received_at, detail", (now, cutoff)))
    for r in gone:
        gw, detail = r["gateway_message_id"], r.pop("detail")
        r["same_as_outbox_id"] = next((oid for oid in _accepted_with(conn, gw) if conn.execute(
            "SELECT 1 FROM sms_dlrs WHERE outbox_id = ? AND gateway_message_id = ? AND status = ? AND detail IS ?",
            (oid, gw, r["status"], detail)).fetchone()), None)
    return gone


def dlrs_sync(conn: sqlite3.Connection, outbox_id: int) -> list[dict]:
    return fetch_all(conn.execute(
        "SELECT * FROM sms_dlrs WHERE outbox_id = ? ORDER BY id", (outbox_id,)))


def counters_sync(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Counts for the metrics exposition, read from the tables so that every
    sender process (and a restart) adds to the same monotonic figures."""
    # an attempt the development log backend "accepted" sent nothing: counted as 'logged', never 'accepted'
    attempts = dict(conn.execute(
        "SELECT CASE WHEN backend = 'log' AND outcome = 'accepted' THEN 'logged' ELSE outcome END AS o,"
        " count(*) FROM sms_attempts GROUP BY o").fetchall())
    retried = conn.execute("SELECT count(*) FROM sms_attempts WHERE attempt_no > 1").fetchone()[0]
    throttled = conn.execute("SELECT coalesce(sum(throttled), 0) FROM sms_outbox").fetchone()[0]
    dlrs = dict(conn.execute("SELECT status, count(*) FROM sms_dlrs GROUP BY status").fetchall())
    states = dict(conn.execute("SELECT state, count(*) FROM sms_outbox GROUP BY state").fetchall())
    recordings = dict(conn.execute("SELECT state, count(*) FROM recordings GROUP BY state").fetchall())
    return {"attempts": attempts, "retried": {"": retried}, "throttled": {"": throttled},
            "dlrs": dlrs, "states": states, "recordings": recordings}
