"""The ``calls`` table: one row per inbound call, evidence of what happened."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import astuple, dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._sqlutil import fetch_all, fetch_one, inserted_id, recoverable
from .call_status import INITIAL, STATUS_VALUES, CallStatus, IllegalTransitionError, parse, predecessors
from .errors import AlreadyExistsError, NotFoundError, evidence_order_error
from .timefmt import to_db_time, to_db_time_or_none

if TYPE_CHECKING:
    from .db import Database


# Columns calls.update() may change.  Deliberately absent: id, channel_id,
# caller_number_raw and started_at (facts fixed at creation), protocol (only
# via protocols.allocate_for_call, which keeps the protocols table and the
# outbox consistent) and updated_at (set automatically).
TIME_COLUMNS = frozenset({
    "consent_started_at", "consent_finished_at", "protocol_read_finished_at",
    "recording_started_at", "handed_off_at", "ended_at", "language_chosen_at",
})
UPDATABLE_COLUMNS = TIME_COLUMNS | {
    "uniqueid", "linkedid", "caller_number", "caller_name", "dialled_number", "language",
    "status", "consent_prompt", "consent_language", "consent_sha256", "consent_outcome",
    "protocol_read_count", "hangup_cause", "error",
    "consent_playback_id", "protocol_playback_id", "protocol_replays",
    "language_source", "language_menu",
}


#: Which path served a call (``calls.served_by``, migration 0007): the ARI application,
#: the classic AGI script, the FastAGI server, or one of the AGI paths run by the shipped
#: dialplan because ``Stasis()`` failed (the ARI application was not connected).
SERVED_BY_VALUES = ("ari", "agi", "fastagi", "agi_fallback", "fastagi_fallback")

#: What chose a call's language (``calls.language_source``, migration 0015).
LANGUAGE_SOURCES = ("dialplan", "did", "menu", "channel", "default")


@dataclass(frozen=True, slots=True)
class NewCall:
    channel_id: str
    uniqueid: str | None
    linkedid: str | None
    caller_number_raw: str       # exactly as received; may be empty or hostile
    caller_number: str | None    # E.164 or None
    caller_name: str | None
    dialled_number: str | None
    language: str | None
    started_at: str | datetime
    served_by: str | None = None  # one of SERVED_BY_VALUES (None: not known)
    # what chose ``language``: dialplan | did | channel | default (migration 0015; 'menu' later)
    language_source: str | None = None
    ari_app: str | None = None    # the ARI application (instance) whose Stasis holds the call (migration 0017)
    node: str | None = None       # the node whose Asterisk carries it ([recording] node; migration 0019)


_INSERT_COLUMNS = [f.name for f in fields(NewCall)]
#: Written only when set (NULL is their column default): a row can be created by code that
#: knows a column the schema it writes to does not have yet (a migration test's older schema).
_OPTIONAL_COLUMNS = frozenset({"language_source", "ari_app", "node"})


def _sql_insert(columns: list[str]) -> str:
    return (f"INSERT INTO calls ({', '.join(columns)}, status, updated_at)"
            f" VALUES ({', '.join('?' for _ in columns)}, '{INITIAL.value}', ?)")


def create_sync(conn: sqlite3.Connection, call: NewCall, updated_at: str | datetime) -> int:
    if call.served_by is not None and call.served_by not in SERVED_BY_VALUES:
        raise ValueError(f"calls.served_by must be one of {', '.join(SERVED_BY_VALUES)}, not {call.served_by!r}")
    values = list(astuple(call))
    values[_INSERT_COLUMNS.index("started_at")] = to_db_time(call.started_at)
    if call.language_source is not None and call.language_source not in LANGUAGE_SOURCES:
        raise ValueError(f"calls.language_source must be one of {', '.join(LANGUAGE_SOURCES)}, "
                         f"not {call.language_source!r}")
    kept = [(c, v) for c, v in zip(_INSERT_COLUMNS, values, strict=True)
            if v is not None or c not in _OPTIONAL_COLUMNS]
    try:
        with recoverable(conn):
            cur = conn.execute(_sql_insert([c for c, _ in kept]), (*(v for _, v in kept), to_db_time(updated_at)))
    except sqlite3.IntegrityError as e:
        existing = get_by_channel_sync(conn, call.channel_id)
        if existing is not None:
            raise AlreadyExistsError(
                f"a call for channel {call.channel_id!r} already exists (id {existing['id']})"
            ) from e
        raise
    return inserted_id(cur)


def update_sync(
    conn: sqlite3.Connection, call_id: int, changes: dict[str, Any], updated_at: str | datetime
) -> None:
    if not changes:
        raise ValueError("calls.update: no columns given")
    bad = sorted(set(changes) - UPDATABLE_COLUMNS)
    if bad:
        raise ValueError(
            f"calls.update: column(s) not updatable: {', '.join(bad)} "
            f"(allowed: {', '.join(sorted(UPDATABLE_COLUMNS))})"
        )
    values = {
        k: to_db_time_or_none(v) if k in TIME_COLUMNS else v for k, v in changes.items()
    }
    names = sorted(values)  # from the whitelist only: safe to interpolate
    assignments = ", ".join(f"{name} = ?" for name in names)
    guard, guard_values = "", tuple[str, ...]()
    status, guarded = values.get("status"), None
    if isinstance(status, str) and status in STATUS_VALUES:  # an unknown one meets the table's CHECK
        # The state machine's check is part of the write: no other writer can slip in between.
        sources = sorted(predecessors(parse(status)))
        guard = f" AND status IN ({', '.join('?' for _ in sources)})"
        guard_values = tuple(s.value for s in sources)
        guarded = status
    try:
        cur = conn.execute(
            f"UPDATE calls SET {assignments}, updated_at = ? WHERE id = ?{guard}",
            (*(values[n] for n in names), to_db_time(updated_at), call_id, *guard_values),
        )
    except sqlite3.IntegrityError as e:
        refused = evidence_order_error(e, call_id)
        if refused is None:
            raise
        raise refused from None
    if cur.rowcount == 0:
        row = conn.execute("SELECT status FROM calls WHERE id = ?", (call_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"call {call_id} does not exist")
        assert guarded is not None  # an existing row is left alone by the guard only
        raise IllegalTransitionError(call_id, row[0], guarded)


def complete_sync(conn: sqlite3.Connection, call_id: int, ended_at: str | datetime, hangup_cause: str,
                  updated_at: str | datetime) -> tuple[str, str | None] | None:
    """A handed-off call hung up: 'completed', with when and why it ended; a call that failed
    but was handed off all the same only gets its end.  One statement in the usual case, where
    reading the row first and then updating it was two (and two thread hops).  Returns the
    call's status and protocol as written, or None when there was nothing to write (no such
    call, one that ended already, or in another status)."""
    ended, updated = to_db_time(ended_at), to_db_time(updated_at)
    for status, assignments in ((CallStatus.HANDED_OFF.value, "status = 'completed', "),
                                (CallStatus.FAILED.value, "")):
        try:
            row = conn.execute(
                f"UPDATE calls SET {assignments}ended_at = ?, hangup_cause = ?, updated_at = ?"
                " WHERE id = ? AND ended_at IS NULL AND status = ? RETURNING status, protocol",
                (ended, hangup_cause, updated, call_id, status)).fetchone()
        except sqlite3.IntegrityError as e:
            refused = evidence_order_error(e, call_id)
            if refused is None:
                raise
            raise refused from None
        if row is not None:
            return row[0], row[1]
    return None


_IDENTITY_HASH = re.compile(r"[0-9a-f]{64}")


def set_identity_hashes_sync(
    conn: sqlite3.Connection, call_id: int, *, cpf_hash: str | None = None,
    customer_code_hash: str | None = None, updated_at: str | datetime,
) -> None:
    """Store the keyed hashes (callproof/rights/identity.py) of the CPF / customer
    code the dialplan captured for the call.  Only 64-hex-digit hashes are
    accepted, so a raw CPF can never be stored here by mistake; None leaves a
    column as it is."""
    changes = {name: value for name, value in (("cpf_hash", cpf_hash), ("customer_code_hash", customer_code_hash))
               if value is not None}
    for name, value in changes.items():
        if not (isinstance(value, str) and _IDENTITY_HASH.fullmatch(value)):
            raise ValueError(f"calls.{name} must be a keyed hash (64 lowercase hex digits)")
    if not changes:
        return
    names = sorted(changes)  # fixed column names only
    cur = conn.execute(
        f"UPDATE calls SET {', '.join(f'{n} = ?' for n in names)}, updated_at = ? WHERE id = ?",
        (*(changes[n] for n in names), to_db_time(updated_at), call_id))
    if cur.rowcount == 0:
        raise NotFoundError(f"call {call_id} does not exist")


def get_sync(conn: sqlite3.Connection, call_id: int) -> dict | None:
    return fetch_one(conn.execute("SELECT * FROM calls WHERE id = ?", (call_id,)))


def get_by_channel_sync(conn: sqlite3.Connection, channel_id: str) -> dict | None:
    return fetch_one(conn.execute("SELECT * FROM calls WHERE channel_id = ?", (channel_id,)))


def get_by_protocol_sync(conn: sqlite3.Connection, protocol: str) -> dict | None:
    return fetch_one(conn.execute("SELECT * FROM calls WHERE protocol = ?", (protocol,)))


def unfinished_sync(conn: sqlite3.Connection) -> list[dict]:
    return fetch_all(
        conn.execute("SELECT * FROM calls WHERE ended_at IS NULL ORDER BY started_at, id")
    )


def served_by_counts_sync(conn: sqlite3.Connection, since: str | datetime | None = None) -> dict[str | None, int]:
    """How many calls each path served (``None``: stored before the path was recorded),
    optionally only calls started at or after ``since``."""
    where, params = ("WHERE started_at >= ?", (to_db_time(since),)) if since is not None else ("", ())
    rows = conn.execute(f"SELECT served_by, count(*) FROM calls {where} GROUP BY served_by", params).fetchall()
    return {row[0]: row[1] for row in rows}


class Calls:
    """Async repository (``db.calls``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, call: NewCall) -> int:
        """Insert with status 'consent_playing'; AlreadyExistsError for a known channel."""
        return await self._db.run_in_connection(create_sync, call, self._db.now())

    async def update(self, call_id: int, **changes: Any) -> None:
        """Set whitelisted columns (ValueError names any other) and updated_at."""
        await self._db.run_in_connection(update_sync, call_id, changes, self._db.now())

    async def complete(self, call_id: int, ended_at: str | datetime,
                       hangup_cause: str) -> tuple[str, str | None] | None:
        """A handed-off call's end (see complete_sync)."""
        return await self._db.run_in_connection(complete_sync, call_id, ended_at, hangup_cause, self._db.now())

    async def set_identity_hashes(self, call_id: int, *, cpf_hash: str | None = None,
                                  customer_code_hash: str | None = None) -> None:
        """Keyed hashes of a captured CPF / customer code (see set_identity_hashes_sync)."""
        await self._db.run_in_connection(set_identity_hashes_sync, call_id, cpf_hash=cpf_hash,
                                         customer_code_hash=customer_code_hash, updated_at=self._db.now())

    async def get(self, call_id: int) -> dict | None:
        return await self._db.run_in_connection(get_sync, call_id)

    async def get_by_channel(self, channel_id: str) -> dict | None:
        return await self._db.run_in_connection(get_by_channel_sync, channel_id)

    async def get_by_protocol(self, protocol: str) -> dict | None:
        return await self._db.run_in_connection(get_by_protocol_sync, protocol)

    async def unfinished(self) -> list[dict]:
        """Calls with ended_at NULL, oldest first (to reconcile after a reconnect)."""
        return await self._db.run_in_connection(unfinished_sync)

    async def served_by_counts(self, since: str | datetime | None = None) -> dict[str | None, int]:
        """Calls per serving path (see served_by_counts_sync)."""
        return await self._db.run_in_connection(served_by_counts_sync, since)
