"""The web page plays an encrypted recording: HTTP Range over the age file's plaintext
(AgeReader opens only the chunks a range touches), the exact bytes of the original for
ranges inside a chunk, across chunk boundaries and at the end; 416 and HEAD as for a plain
file.  Without the private key the recording is refused (404, audited), and the web side
does not start when encryption is on and the private keyring is missing."""

from __future__ import annotations

import dataclasses
import os

import pytest

from callproof.config import EncryptionConfig
from callproof.encryption.atrest import encrypt_beside, open_dir
from callproof.encryption.keyring import KeyringError
from callproof.storage import recordings as recordings_store
from callproof.web.app import build_app
from tests.unit.encryption.fakekeys import FakeKeyring

from .test_app import login, make_site


def encrypt_seeded(site, keyring: FakeKeyring) -> bytes:
    """Encrypt the site's recording as finalisation does, and record it on the row."""
    path = site.call["path"]
    data = path.read_bytes()
    chosen = keyring.recipients_for("consumer", site.now().replace(year=site.now().year + 1))
    dir_fd = open_dir(path.parent)
    try:
        with path.open("rb") as fh:
            d = encrypt_beside(fh, dir_fd, path.name, chosen.recipients)
    finally:
        os.close(dir_fd)
    recordings_store.mark_encrypted_sync(site.conn, site.call["recording_id"], age_path=str(path) + ".age",
                                         ciphertext_sha256=d.ciphertext_sha256, ciphertext_size=d.ciphertext_size,
                                         payload_sha256=d.payload_sha256, key_ids=chosen.key_ids)
    path.unlink()
    return data


async def _long_site(tmp_path, seconds: int = 10):
    from tests.unit.web import test_app
    s = await make_site(tmp_path)
    s.call = test_app.seed_call(s.conn, s.config.recording.root, channel="ch-long", caller="+5511900001111",
                                seconds=seconds)
    return s


async def test_ranges_of_an_encrypted_recording_are_the_original_bytes(tmp_path):
    site = await _long_site(tmp_path)
    try:
        keyring = FakeKeyring()
        data = encrypt_seeded(site, keyring)
        site.app_ctx.keyring = keyring
        size = len(data)
        assert size > 2 * 65536  # several chunks
        await login(site.client, "vera")
        page = await (await site.client.get(f"/calls/{site.call['protocol']}")).text()
        assert "encrypted (age) to consumer-" in page and site.call["path"].name not in page
        url = f"/calls/{site.call['protocol']}/audio"
        for first, last in ((100, 1099), (65530, 65545), (65536, 131071), (0, 0), (size - 1, size - 1)):
            part = await site.client.get(url, headers={"Range": f"bytes={first}-{last}"})
            assert part.status == 206, (first, last)
            assert part.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
            assert await part.read() == data[first:last + 1]
        tail = await site.client.get(url, headers={"Range": "bytes=-44"})
        assert tail.status == 206 and await tail.read() == data[-44:]
        whole = await site.client.get(url)
        assert whole.status == 200 and await whole.read() == data
        assert whole.headers["Content-Type"] == "audio/wav" and whole.headers["Accept-Ranges"] == "bytes"
        head = await site.client.head(url)
        assert head.status == 200 and head.headers["Content-Length"] == str(size) and await head.read() == b""
        beyond = await site.client.get(url, headers={"Range": f"bytes={size}-"})
        assert beyond.status == 416 and beyond.headers["Content-Range"] == f"bytes */{size}"
        streamed = site.audit("recording.streamed")
        assert streamed and all(s["details"]["encrypted"] for s in streamed)
        site.client.session.cookie_jar.clear()
        await login(site.client, "otto")
        download = await site.client.get(f"/calls/{site.call['protocol']}/download")
        assert download.status == 200 and await download.read() == data
    finally:
        await site.client.close()
        site.pool.close()
        site.conn.close()


async def test_without_the_private_key_an_encrypted_recording_is_refused_and_audited(tmp_path):
    site = await _long_site(tmp_path, seconds=1)
    try:
        encrypt_seeded(site, FakeKeyring())
        site.app_ctx.keyring = FakeKeyring()  # other keys: not the recording's
        await login(site.client, "vera")
        resp = await site.client.get(f"/calls/{site.call['protocol']}/audio")
        assert resp.status == 404 and "cannot be served" in await resp.text()
        (refused,) = site.audit("recording.refused")
        assert "cannot be decrypted here" in refused["details"]["why"]
        assert site.audit("recording.streamed") == []
    finally:
        await site.client.close()
        site.pool.close()
        site.conn.close()


async def test_a_plaintext_file_where_the_row_says_encrypted_is_refused(tmp_path):
    site = await _long_site(tmp_path, seconds=1)
    try:
        data = encrypt_seeded(site, FakeKeyring())
        (site.call["path"].parent / (site.call["path"].name + ".age")).write_bytes(data)  # swapped in
        site.app_ctx.keyring = FakeKeyring()
        await login(site.client, "vera")
        resp = await site.client.get(f"/calls/{site.call['protocol']}/audio")
        assert resp.status == 404
        (refused,) = site.audit("recording.refused")
        assert "not what its row says" in refused["details"]["why"]
    finally:
        await site.client.close()
        site.pool.close()
        site.conn.close()


def test_the_web_side_does_not_start_without_the_private_keyring(tmp_path):
    from callproof.config import Config
    config = dataclasses.replace(Config(), encryption=EncryptionConfig(
        enabled=True, public_keys_dir=tmp_path / "pub", private_keys_dir=tmp_path / "private"))
    with pytest.raises(KeyringError, match=f"{tmp_path / 'private'}: the private keys directory does not exist"):
        build_app(config, db=object())  # type: ignore[arg-type]
