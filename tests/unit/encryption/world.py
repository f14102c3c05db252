"""Encrypted recordings for the unit tests of what reads them (verify, web, export, package,
migration): a real signed call finalised by the one finalisation function with a keyring,
and that keyring written to disk in the keyring's layout (callproof/encryption/keyring.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

from callproof.callflow.recording_files import finalise_recording
from callproof.config import Config, EncryptionConfig
from callproof.encryption import format_identity_file
from callproof.encryption.atrest import use_keyring
from callproof.evidence import records
from callproof.evidence.keys import Signer
from callproof.storage import Database, connect_sync
from tests.unit.evidence.world import NOW_ISO, signed_config
from tests.unit.rights.test_export import make_recording

from .fakekeys import FakeKeyring

UNTIL = "2027-03-10T14:00:00.000000+00:00"
CLASS = "consumer"


def encrypted_config(tmp_path: Path, *, key: bool = True, target: str | None = None) -> Config:
    base = signed_config(tmp_path, key=key, target=target)
    return dataclasses.replace(base, encryption=EncryptionConfig(
        enabled=True, public_keys_dir=tmp_path / "keys" / "age-public",
        private_keys_dir=tmp_path / "keys" / "age-private"))


def write_keyring(config: Config, keyring: FakeKeyring) -> None:
    """The fake keyring's keys as files: <id>.key (0600) in a 0700 directory, <id>.pub (0644)."""
    pub, priv = config.encryption.public_keys_dir, config.encryption.private_keys_dir
    pub.mkdir(parents=True, exist_ok=True)
    priv.mkdir(parents=True, exist_ok=True)
    os.chmod(priv, 0o700)
    for key_id, identity in [*keyring.periods.items(), ("hold-1", keyring.hold)]:
        (pub / f"{key_id}.pub").write_text(f"{identity.recipient}\n")
        os.chmod(pub / f"{key_id}.pub", 0o644)
        target = priv / f"{key_id}.key"
        target.write_text(format_identity_file(identity))
        os.chmod(target, 0o600)


def finalise_with(config: Config, rec: dict, keyring) -> None:
    async def finalise() -> None:
        records.use_signer(Signer.load(config.evidence.signing_key) if config.evidence.signing_key else None)
        db = await Database.open(config.storage.target)
        use_keyring(keyring, db.path)
        try:
            assert await finalise_recording(db, rec["recording_id"], rec["path"], NOW_ISO, attempts=1)
        finally:
            use_keyring(None, db.path)
            await db.close()
            records.use_signer(None)

    asyncio.run(finalise())


def unfinalised_call(config: Config, channel: str = "ch-1") -> dict:
    conn = connect_sync(config.storage.target)
    try:
        rec = make_recording(conn, config, channel=channel, finalise=False)
        conn.execute("UPDATE recordings SET retention_until = ?, retention_class = ? WHERE id = ?",
                     (UNTIL, CLASS, rec["recording_id"]))
    finally:
        conn.close()
    rec["plaintext"] = rec["path"].read_bytes()
    return rec


def encrypted_call(config: Config, keyring: FakeKeyring | None = None, channel: str = "ch-1") -> dict:
    """A call whose recording was finalised and encrypted; the keyring is written to disk."""
    keyring = keyring or FakeKeyring()
    rec = unfinalised_call(config, channel)
    finalise_with(config, rec, keyring)
    write_keyring(config, keyring)
    rec["age_path"] = Path(str(rec["path"]) + ".age")
    rec["keyring"] = keyring
    return rec


__all__ = ["encrypted_call", "encrypted_config", "finalise_with", "unfinalised_call", "write_keyring"]
