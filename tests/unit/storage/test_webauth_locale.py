"""An account's page language in storage: set, cleared, audited with old and new value,
refused when not shipped (in code and by the column's CHECK)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

import pytest

from callproof.storage import NotFoundError, connect_sync, webauth

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def conn(target):
    c = connect_sync(target)  # SQLite and PostgreSQL (tests/conftest.py)
    webauth.create_user_sync(c, "lia", "scrypt$x", "viewer", actor="test", at=AT)
    yield c
    c.close()


def _changes(conn) -> list[tuple[str, str, dict]]:
    return [(a, s, json.loads(d)) for a, s, d in conn.execute(
        "SELECT actor, subject, details FROM audit_log WHERE action = 'web.user.locale_changed' ORDER BY id")]


def test_the_choice_is_stored_in_the_session_row_and_audited(conn):
    assert webauth.set_locale_sync(conn, "lia", "pt_BR", actor="web:lia", at=AT) is True
    assert webauth.get_user_sync(conn, "lia")["locale"] == "pt_BR"
    user = webauth.get_user_sync(conn, "lia")
    webauth.create_session_sync(conn, id_hash="h" * 64, user_id=user["id"], username="lia", csrf_token="c",
                                at=AT, expires_at=datetime(2099, 1, 1, tzinfo=UTC), remote=None)
    assert webauth.get_session_sync(conn, "h" * 64, AT)["locale"] == "pt_BR"  # every page reads it from here
    assert webauth.set_locale_sync(conn, "lia", "pt_BR", actor="web:lia", at=AT) is False  # unchanged
    assert webauth.set_locale_sync(conn, "lia", None, actor="web:lia", at=AT) is True
    assert webauth.get_user_sync(conn, "lia")["locale"] is None
    assert _changes(conn) == [("web:lia", "web_user:lia", {"from": None, "to": "pt_BR"}),
                              ("web:lia", "web_user:lia", {"from": "pt_BR", "to": None})]


def test_unknown_accounts_and_locales_are_refused(conn):
    with pytest.raises(NotFoundError):
        webauth.set_locale_sync(conn, "nobody", "es", actor="web:x", at=AT)
    with pytest.raises(ValueError, match="'fr'"):
        webauth.set_locale_sync(conn, "lia", "fr", actor="web:lia", at=AT)
    with pytest.raises(sqlite3.IntegrityError):  # the column refuses it whoever writes
        conn.execute("UPDATE web_users SET locale = 'pt-BR' WHERE username = 'lia'")
    assert _changes(conn) == []
