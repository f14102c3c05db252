"""What a statement's cursor answers, the same on both engines: the column names of a row
(``fetch_one``/``fetch_all`` build their dicts from them), none for a statement that
returns no rows, and the rows of an ``UPDATE ... RETURNING``."""

from __future__ import annotations

from callproof.storage import calls as calls_table
from callproof.storage import connect_sync
from callproof.storage._sqlutil import fetch_all, fetch_one
from callproof.storage.calls import NewCall

T0 = "2026-03-01T12:00:00+00:00"


def _call(conn, channel: str) -> int:
    return calls_table.create_sync(conn, NewCall(channel, "u1", "l1", "11987654321", "+5511987654321", "Ana",
                                                 "100", "pt_BR", T0), T0)


def test_a_rows_columns_are_named_as_the_table_names_them(target):
    conn = connect_sync(target)
    try:
        call_id = _call(conn, "PJSIP/a-1")
        columns = [r[0] for r in conn.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).description]
        row = calls_table.get_sync(conn, call_id)
        assert list(row) == columns and len(columns) > 30
        assert (row["id"], row["channel_id"], row["caller_number"], row["status"]) == (
            call_id, "PJSIP/a-1", "+5511987654321", "consent_playing")
        assert fetch_one(conn.execute("SELECT channel_id AS ch, count(*) AS n FROM calls GROUP BY channel_id")) == {
            "ch": "PJSIP/a-1", "n": 1}
        # a query with no row has its columns all the same, and no row
        cur = conn.execute("SELECT id, status FROM calls WHERE id = ?", (call_id + 1000,))
        assert [d[0] for d in cur.description] == ["id", "status"] and cur.fetchone() is None
    finally:
        conn.close()


def test_a_write_without_returning_has_no_columns_and_no_rows(target):
    conn = connect_sync(target)
    try:
        call_id = _call(conn, "PJSIP/a-2")
        cur = conn.execute("UPDATE calls SET caller_name = ? WHERE id = ?", ("Bia", call_id))
        assert cur.description is None and cur.rowcount == 1
        assert cur.fetchone() is None and cur.fetchall() == []
        assert calls_table.get_sync(conn, call_id)["caller_name"] == "Bia"
    finally:
        conn.close()


def test_an_update_returning_gives_the_changed_rows_by_name(target):
    conn = connect_sync(target)
    try:
        first, second = _call(conn, "PJSIP/a-3"), _call(conn, "PJSIP/a-4")
        rows = fetch_all(conn.execute("UPDATE calls SET caller_name = 'Caio' WHERE id IN (?, ?)"
                                      " RETURNING id, caller_name", (first, second)))
        assert sorted((r["id"], r["caller_name"]) for r in rows) == [(first, "Caio"), (second, "Caio")]
    finally:
        conn.close()
