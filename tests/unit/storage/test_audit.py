"""storage.audit: append-only, hash-chained log."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3

import pytest

from callproof.storage import Database
from callproof.storage.audit import GENESIS

NOW = "2026-03-10T14:00:00.000000Z"


@pytest.fixture
async def db(target):
    async with Database.open(target, now=lambda: NOW) as database:
        yield database


def drop_trigger(db, name):
    """What someone with write access to the database would type to silence a trigger."""
    return f"DROP TRIGGER {name}" + (" ON audit_log" if db.engine == "postgresql" else "")


async def sql(db, statement, *params):
    return await db.run_in_connection(lambda c: c.execute(statement, params).fetchall())


async def fill(db, n=4):
    return [await db.audit.append(f"action.{i}", "ari", protocol="20260000000000001",
                                  subject=f"call:{i}", details={"i": i, "note": "çã"})
            for i in range(n)]


async def test_append_chains_entries(db):
    assert await fill(db, 3) == [1, 2, 3]
    rows = await sql(db, "SELECT id, prev_hash, hash FROM audit_log ORDER BY id")
    assert rows[0][1] == GENESIS
    assert rows[1][1] == rows[0][2] and rows[2][1] == rows[1][2]
    assert await db.audit.verify_chain() is None
    assert await db.audit.head() == (3, rows[2][2])


async def test_empty_log_verifies(db):
    assert await db.audit.verify_chain() is None
    assert await db.audit.head() is None


async def test_hash_formula_is_documented_one(db):
    entry_id = await db.audit.append("consent.finished", "ari", protocol=None, subject="call:7",
                                     details={"b": 2, "a": [1, "x"]},
                                     at="2026-03-10T11:00:00-03:00")
    [(at, details, prev_hash, stored)] = await sql(
        db, "SELECT at, details, prev_hash, hash FROM audit_log WHERE id = ?", entry_id)
    assert at == NOW
    assert details == '{"a":[1,"x"],"b":2}'
    payload = json.dumps({"id": entry_id, "at": at, "actor": "ari", "action": "consent.finished",
                          "protocol": None, "subject": "call:7", "details": details},
                         sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert stored == hashlib.sha256((prev_hash + payload).encode()).hexdigest()


async def test_update_and_delete_refused(db):
    await fill(db, 2)
    with pytest.raises(sqlite3.IntegrityError, match="append-only: UPDATE refused"):
        await sql(db, "UPDATE audit_log SET actor = 'mallory' WHERE id = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only: DELETE refused"):
        await sql(db, "DELETE FROM audit_log WHERE id = 2")
    assert await sql(db, "SELECT count(*) FROM audit_log") == [(2,)]


async def test_insert_must_link_to_head(db):
    await fill(db, 1)
    with pytest.raises(sqlite3.IntegrityError, match="prev_hash does not link"):
        await sql(db, "INSERT INTO audit_log (id, at, actor, action, prev_hash, hash)"
                      " VALUES (2, ?, 'x', 'y', ?, ?)", NOW, GENESIS, "f" * 64)


async def test_tampered_row_detected(db):
    await fill(db, 4)
    await sql(db, drop_trigger(db, "audit_log_no_update"))
    await sql(db, "UPDATE audit_log SET details = '{\"i\":99}' WHERE id = 3")
    assert await db.audit.verify_chain() == 3


async def test_rehashed_row_breaks_next_link(db):
    await fill(db, 4)
    await sql(db, drop_trigger(db, "audit_log_no_update"))
    # a forger who recomputes the row's own hash still breaks the next link
    await sql(db, "UPDATE audit_log SET hash = ? WHERE id = 2", "e" * 64)
    assert await db.audit.verify_chain() == 2
    await sql(db, "UPDATE audit_log SET prev_hash = ? WHERE id = 3", "e" * 64)
    assert await db.audit.verify_chain() == 2


async def test_deleted_row_detected(db):
    await fill(db, 4)
    await sql(db, drop_trigger(db, "audit_log_no_delete"))
    await sql(db, "DELETE FROM audit_log WHERE id = 2")
    assert await db.audit.verify_chain() == 3


async def test_concurrent_appends_from_two_connections_keep_one_chain(db):
    async with Database.open(db.path) as other:
        async def burst(database, actor):
            for i in range(25):
                await database.audit.append("tick", actor, details={"i": i})

        await asyncio.gather(burst(db, "a"), burst(other, "b"))
    assert await sql(db, "SELECT count(*), max(id) FROM audit_log") == [(50, 50)]
    assert await db.audit.verify_chain() is None


async def test_bad_arguments(db):
    with pytest.raises(ValueError):
        await db.audit.append("", "ari")
    with pytest.raises(TypeError):
        await db.audit.append("x", "ari", details=["not", "a", "dict"])
    with pytest.raises(ValueError):
        await db.audit.append("x", "ari", details={"nan": float("nan")})
    assert await sql(db, "SELECT count(*) FROM audit_log") == [(0,)]
