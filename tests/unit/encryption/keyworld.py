"""Keys on disk and encrypted recordings in a real database, for the key management and
crypto-shredding tests: a configuration with both key directories under tmp_path, the keys
``keys init`` makes, and finalised recordings encrypted to a period key the way finalisation
leaves them (``<name>.wav.age``, row 'encrypted' with its key ids)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from datetime import UTC, datetime
from pathlib import Path

from callproof.config import Config, EncryptionConfig, RetentionConfig
from callproof.encryption import encrypt
from callproof.encryption.keyring import PrivateKeyring
from callproof.encryption.keystore import top_up
from callproof.storage import connect_sync
from callproof.storage import recordings as recordings_store
from tests.engines import storage_config
from tests.unit.rights.test_export import make_config, make_recording

#: when the keys are made (``keys init``): recordings of March 2027 expire in that period
KEYS_MADE = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MARCH = "consumer_service-2027-03"
APRIL = "consumer_service-2027-04"


def key_config(tmp_path: Path, target: str | None = None, **encryption) -> Config:
    """``target``: the database (tests/conftest.py's fixture; None: the SQLite file in ``tmp_path``)."""
    base = make_config(tmp_path)
    return dataclasses.replace(
        base, storage=storage_config(tmp_path, target),
        retention=RetentionConfig(classes={"consumer_service": 90}, default_class="consumer_service"),
        encryption=EncryptionConfig(enabled=True, public_keys_dir=tmp_path / "keys" / "public",
                                    private_keys_dir=tmp_path / "keys" / "private",
                                    **{"months_ahead": 6, "destroy_margin_days": 7, **encryption}))


def make_keys(config: Config) -> PrivateKeyring:
    top_up(config.encryption.private_keys_dir, config.retention.classes, KEYS_MADE,
           config.encryption.months_ahead, config.encryption.destroy_margin_days)
    return PrivateKeyring.from_dir(config.encryption.private_keys_dir)


def encrypted_recording(config: Config, keyring: PrivateKeyring, key_id: str, *, channel: str,
                        retention_until: str) -> dict:
    """A finalised recording encrypted to ``key_id``; its plaintext is removed."""
    conn = connect_sync(config.storage.target)
    try:
        rec = make_recording(conn, config, channel=channel)
        path: Path = rec["path"]
        plaintext = path.read_bytes()
        age_path = Path(f"{path}.age")
        with path.open("rb") as src, age_path.open("wb") as dst:
            digests = encrypt(src, dst, [keyring.identity(key_id).recipient])
        age_path.chmod(0o640)
        path.unlink()
        recordings_store.mark_encrypted_sync(
            conn, rec["recording_id"], age_path=str(age_path), ciphertext_sha256=digests.ciphertext_sha256,
            ciphertext_size=digests.ciphertext_size, payload_sha256=digests.payload_sha256, key_ids=(key_id,))
        conn.execute("UPDATE recordings SET retention_until = ?, retention_class = 'consumer_service'"
                     " WHERE id = ?", (retention_until, rec["recording_id"]))
    finally:
        conn.close()
    return {**rec, "age_path": age_path, "plaintext_sha256": hashlib.sha256(plaintext).hexdigest(),
            "payload_sha256": digests.payload_sha256}


def decrypts_with(age_path: Path, identities) -> str | None:
    """The plaintext sha256 when ``identities`` open the file, else None."""
    from callproof.encryption import AgeError, decrypt

    out = io.BytesIO()
    try:
        with age_path.open("rb") as src:
            return decrypt(src, out, identities).plaintext_sha256
    except AgeError:
        return None
