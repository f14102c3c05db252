"""Exports and history documents with encryption on: an encrypted recording is decrypted,
chunk by chunk, into ffmpeg and checked against its signed record before publishing; the
export is stored encrypted to the hold key (``….wav.age``, 0640) and the customer's link
serves its plaintext (HTTP Range, download counted on the last byte only); a history
document is stored encrypted to the hold key.  No temporary file survives, and a tampered
recording or a missing private keyring exports nothing."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import stat
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydub import AudioSegment

from callproof.encryption import NoIdentityError, decrypt
from callproof.encryption.atrest import AGE_MAGIC
from callproof.rights.export import ExportError, export_request_sync
from callproof.rights.history import produce_history_sync, resolve_subject
from callproof.rights.links import issue_link_sync
from callproof.storage import connect_sync
from callproof.web.app import build_app, runner_options
from callproof.web.dbpool import DbPool
from tests.unit.encryption.world import encrypted_call, encrypted_config
from tests.unit.rights.test_export import NOW, audit_rows, file_request

from .test_export import SECRET


def _open(path, identities) -> bytes:
    out = io.BytesIO()
    with open(path, "rb") as fh:
        decrypt(fh, out, identities)
    return out.getvalue()


@pytest.fixture
def enc(tmp_path):
    config = encrypted_config(tmp_path)
    config = dataclasses.replace(config, rights=dataclasses.replace(config.rights, link_secret=SECRET,
                                                                    history_dir=tmp_path / "history"))
    rec = encrypted_call(config)
    conn = connect_sync(config.storage.database)
    request_id = file_request(conn, config, rec["protocol"])
    yield config, conn, rec, request_id
    conn.close()


def test_an_encrypted_recording_exports_to_a_file_encrypted_to_the_hold_key(enc):
    config, conn, rec, request_id = enc
    export = export_request_sync(conn, config, request_id, actor="ops", now=NOW, fmt="wav")
    stored = config.rights.export_dir / os.path.basename(export.path)
    assert stored.name.endswith(".wav.age") and stored.read_bytes().startswith(AGE_MAGIC)
    assert stat.S_IMODE(stored.stat().st_mode) == 0o640
    assert export.sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()  # what the link checks
    keyring = rec["keyring"]
    with pytest.raises(NoIdentityError, match="encrypted to other keys"):
        _open(stored, list(keyring.periods.values()))  # the recording's period key cannot open it
    plain = _open(stored, [keyring.hold])
    audio = AudioSegment.from_file(io.BytesIO(plain), format="wav")
    assert abs(len(audio) - 1000) < 20
    (entry,) = audit_rows(conn, "recording.exported")
    assert entry["details"]["plaintext_sha256"] == hashlib.sha256(plain).hexdigest()
    assert entry["details"]["encrypted_to"] == ["hold-1"]
    assert entry["details"]["source_sha256"] == hashlib.sha256(rec["plaintext"]).hexdigest()
    assert sorted(p.name for p in config.rights.export_dir.iterdir()) == [stored.name]  # no temporaries


def test_a_tampered_encrypted_recording_is_not_exported(enc):
    config, conn, rec, request_id = enc
    data = bytearray(rec["age_path"].read_bytes())
    data[-3] ^= 1
    rec["age_path"].write_bytes(bytes(data))
    with pytest.raises(ExportError) as exc:
        export_request_sync(conn, config, request_id, actor="ops", now=NOW, fmt="wav")
    assert exc.value.reason == "integrity" and "cannot be decrypted" in str(exc.value)
    assert list(config.rights.export_dir.iterdir()) == []
    assert conn.execute("SELECT count(*) FROM request_exports").fetchone()[0] == 0


def test_without_the_private_keyring_nothing_is_exported(enc):
    config, conn, _rec, request_id = enc
    for p in config.encryption.private_keys_dir.iterdir():
        p.unlink()
    with pytest.raises(ExportError) as exc:
        export_request_sync(conn, config, request_id, actor="ops", now=NOW, fmt="wav")
    assert exc.value.reason == "encryption" and "no hold key" in str(exc.value)


def test_a_history_document_is_stored_encrypted_to_the_hold_key(enc):
    config, conn, rec, _ = enc
    row = produce_history_sync(conn, config, resolve_subject(config, "+5511987654321"), fmt="html",
                               actor="ops", now=NOW)
    path = config.rights.history_dir / os.path.basename(row["path"])
    assert path.name.endswith(".html.age") and stat.S_IMODE(path.stat().st_mode) == 0o640
    document = _open(path, [rec["keyring"].hold])
    assert hashlib.sha256(document).hexdigest() == row["sha256"] and b"<html" in document.lower()
    produced = [json.loads(d) for (d,) in conn.execute(
        "SELECT details FROM audit_log WHERE action = 'history.produced'")]
    assert produced[-1]["encrypted_to"] == ["hold-1"]


async def test_the_link_serves_the_plaintext_of_an_encrypted_export(enc):
    config, conn, rec, request_id = enc
    config = dataclasses.replace(config, web=dataclasses.replace(config.web, public_rate_per_minute=10000))
    export = export_request_sync(conn, config, request_id, actor="ops", now=NOW, fmt="wav")
    now = datetime.now(UTC)
    link = issue_link_sync(conn, config, export.id, recipient="sms:+5511987654321", actor="ops", now=now)
    plain = _open(export.path, [rec["keyring"].hold])
    pool = DbPool(config.storage.database, size=2)
    app = build_app(config, db=pool, clock=lambda: now + timedelta(seconds=1))
    server = TestServer(app)
    await server.start_server(**runner_options())
    client = TestClient(server)
    await client.start_server()
    try:
        url = f"/d/{link.token}"
        head = await client.head(url)
        assert head.status == 200 and head.headers["Content-Length"] == str(len(plain))
        part = await client.get(url, headers={"Range": "bytes=10-99"})
        assert part.status == 206 and await part.read() == plain[10:100]
        assert part.headers["Content-Range"] == f"bytes 10-99/{len(plain)}"
        assert conn.execute("SELECT download_count FROM download_links").fetchone()[0] == 0
        whole = await client.get(url)
        assert whole.status == 200 and await whole.read() == plain
        assert conn.execute("SELECT download_count FROM download_links").fetchone()[0] == 1
    finally:
        await client.close()
        pool.close()
