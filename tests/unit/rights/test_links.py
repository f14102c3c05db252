"""Signed download links: the token, and the row as the authority (expiry,
revocation, download budget, the file still being what was exported).
Every outcome must be in the audit log."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import pytest

from callproof.config import ConfigError
from callproof.rights.links import (
    LinkError,
    issue_link_sync,
    make_token,
    parse_token,
    resolve_token_sync,
    revoke_link_sync,
)
from callproof.storage import connect_sync
from callproof.storage.audit import verify_chain_sync
from callproof.storage.errors import InvalidStateError, NotFoundError
from callproof.storage.timefmt import parse_db_time

from .test_export import NOW, SECRET, audit_rows, file_request, make_config, make_recording

RECIPIENT = "email:cliente@example.com"


@pytest.fixture
def world(tmp_path, target):
    """An export (a small file with its sha256, as export_request_sync records it)."""
    config = make_config(tmp_path, link_max_downloads=3, link_lifetime_hours=2,
                         public_base_url="https://rec.example.com/callproof/")
    conn = connect_sync(target)
    rec = make_recording(conn, config)
    request_id = file_request(conn, config, rec["protocol"])
    config.rights.export_dir.mkdir()
    path = config.rights.export_dir / f"request-{request_id}-{rec['protocol']}-1.mp3"
    path.write_bytes(b"ID3 not much of an mp3" * 50)
    export_id = conn.execute(
        "INSERT INTO request_exports (request_id, format, path, sha256, size_bytes, created_at,"
        " created_by) VALUES (?, 'mp3', ?, ?, ?, '2026-03-10T17:00:00.000000Z', 'ops')",
        (request_id, str(path), hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)).lastrowid
    yield config, conn, rec, export_id, path
    conn.close()


def issue(conn, config, export_id, at=NOW):
    return issue_link_sync(conn, config, export_id, recipient=RECIPIENT, actor="ops", now=at)


def refusals(conn) -> list[str]:
    return [e["details"]["reason"] for e in audit_rows(conn, "download.refused")]


def test_valid_link_resolves_counts_and_is_audited(world):
    config, conn, rec, export_id, path = world
    link = issue(conn, config, export_id)
    assert link.url == f"https://rec.example.com/callproof/d/{link.token}"
    assert parse_db_time(link.expires_at) == NOW + timedelta(hours=2)
    got, export = resolve_token_sync(conn, config, link.token, now=NOW + timedelta(minutes=5),
                                     remote="203.0.113.7")
    assert got["id"] == link.link_id and got["recipient"] == RECIPIENT and got["download_count"] == 1
    assert export["id"] == export_id and export["path"] == str(path)
    (entry,) = audit_rows(conn, "recording.downloaded")
    assert entry["protocol"] == rec["protocol"]
    assert entry["details"]["link_id"] == link.link_id and entry["details"]["recipient"] == RECIPIENT
    assert entry["details"]["remote"] == "203.0.113.7"
    (issued,) = audit_rows(conn, "link.issued")
    assert issued["details"]["recipient"] == RECIPIENT and issued["actor"] == "ops"


def test_expired_one_second_after_expiry(world):
    config, conn, _rec, export_id, _path = world
    link = issue(conn, config, export_id)
    expiry = parse_db_time(link.expires_at)
    resolve_token_sync(conn, config, link.token, now=expiry - timedelta(seconds=1))
    with pytest.raises(LinkError) as exc:
        resolve_token_sync(conn, config, link.token, now=expiry + timedelta(seconds=1))
    assert exc.value.reason == "expired"
    assert refusals(conn) == ["expired"]


def test_tampered_signature_payload_and_other_secret(world):
    config, conn, _rec, export_id, _path = world
    link = issue(conn, config, export_id)
    payload, mac = link.token.split(".")
    flipped_mac = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    raw = bytearray(base64.urlsafe_b64decode(payload + "="))
    raw[8] ^= 0x01  # another link id, same signature
    forged_payload = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    other = make_token("another-secret-of-sufficient-length-42", link.link_id, NOW + timedelta(hours=1))
    longer = make_token(SECRET, link.link_id, NOW + timedelta(days=365))  # valid MAC, row says 2 h
    for token in (f"{payload}.{flipped_mac}", f"{forged_payload}.{mac}", other):
        with pytest.raises(LinkError) as exc:
            resolve_token_sync(conn, config, token, now=NOW)
        assert exc.value.reason == "bad_signature"
    with pytest.raises(LinkError) as exc:
        resolve_token_sync(conn, config, longer, now=NOW + timedelta(hours=3))
    assert exc.value.reason == "expired", "the row's expiry wins over the token's"
    assert refusals(conn) == ["bad_signature"] * 3 + ["expired"]
    assert conn.execute("SELECT download_count FROM download_links").fetchone()[0] == 0


@pytest.mark.parametrize("token", ["", "abc", "../../etc/passwd", "A" * 23 + "." + "B" * 42,
                                   "A" * 23 + "." + "B" * 43 + "C", "x" * 5000, "ñ" * 23 + "." + "B" * 43])
def test_malformed_tokens(world, token):
    config, conn, _rec, _export_id, _path = world
    with pytest.raises(LinkError) as exc:
        resolve_token_sync(conn, config, token, now=NOW, remote="198.51.100.1")
    assert exc.value.reason == "malformed"
    (entry,) = audit_rows(conn, "download.refused")
    assert entry["details"]["reason"] == "malformed" and entry["details"]["remote"] == "198.51.100.1"
    assert token not in str(entry["details"]) or token == "", "the token itself is not logged"


def test_revoked_link(world):
    config, conn, _rec, export_id, _path = world
    link = issue(conn, config, export_id)
    revoke_link_sync(conn, link.link_id, actor="supervisor", now=NOW, reason="sent to a wrong address")
    with pytest.raises(LinkError) as exc:
        resolve_token_sync(conn, config, link.token, now=NOW)
    assert exc.value.reason == "revoked"
    with pytest.raises(InvalidStateError):
        revoke_link_sync(conn, link.link_id, actor="supervisor", now=NOW)
    with pytest.raises(NotFoundError):
        revoke_link_sync(conn, 999, actor="supervisor", now=NOW)
    assert refusals(conn) == ["revoked"]
    assert audit_rows(conn, "link.revoked")[0]["details"]["reason"] == "sent to a wrong address"


def test_exhausted_after_max_downloads(world):
    config, conn, _rec, export_id, _path = world
    link = issue(conn, config, export_id)
    counts = [resolve_token_sync(conn, config, link.token, now=NOW)[0]["download_count"] for _ in range(3)]
    assert counts == [1, 2, 3]
    with pytest.raises(LinkError) as exc:
        resolve_token_sync(conn, config, link.token, now=NOW)
    assert exc.value.reason == "exhausted"
    assert refusals(conn) == ["exhausted"] and len(audit_rows(conn, "recording.downloaded")) == 3


def test_gone_when_the_export_file_is_deleted_or_changed(world):
    config, conn, _rec, export_id, path = world
    link = issue(conn, config, export_id)
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(LinkError) as exc:
        resolve_token_sync(conn, config, link.token, now=NOW)
    assert exc.value.reason == "gone" and "sha256" in str(exc.value)
    path.unlink()
    with pytest.raises(LinkError) as exc:
        resolve_token_sync(conn, config, link.token, now=NOW)
    assert exc.value.reason == "gone"
    unknown = make_token(SECRET, 12345, NOW + timedelta(hours=1))
    with pytest.raises(LinkError) as exc:
        resolve_token_sync(conn, config, unknown, now=NOW)
    assert exc.value.reason == "gone"
    assert refusals(conn) == ["gone"] * 3
    assert verify_chain_sync(conn) is None


def test_secret_required_and_token_round_trip(world, tmp_path):
    config, conn, _rec, export_id, _path = world
    unset = make_config(tmp_path, link_secret="")
    with pytest.raises(ConfigError, match=r"rights\.link_secret"):
        issue(conn, unset, export_id)
    with pytest.raises(ConfigError, match=r"rights\.link_secret"):
        resolve_token_sync(conn, unset, "whatever", now=NOW)
    expiry = NOW + timedelta(hours=1)
    assert parse_token(SECRET, make_token(SECRET, 7, expiry)) == (7, expiry)
    with pytest.raises(NotFoundError):
        issue(conn, config, 999)
