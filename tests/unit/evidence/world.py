"""A finalised, signed recording the evidence tests share: a real call row, protocol and
WAV file, finalised through the one finalisation function both transports use."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from callproof.callflow.recording_files import finalise_recording
from callproof.config import AuditConfig, Config, EvidenceConfig
from callproof.evidence import records
from callproof.evidence.keys import Signer, generate_key_file
from callproof.storage import Database, connect_sync
from tests.engines import storage_config
from tests.unit.rights.test_export import NOW, make_config, make_recording

NOW_ISO = "2026-03-10T17:00:05.000000+00:00"


def signed_config(tmp_path: Path, *, key: bool = True, checkpoints: bool = False,
                  target: str | None = None) -> Config:
    """``target``: the database (tests/conftest.py's fixture; None: the SQLite file in ``tmp_path``)."""
    base = make_config(tmp_path)
    signing = tmp_path / "keys" / "signing.pem"
    if key and not signing.exists():
        signing.parent.mkdir(exist_ok=True)
        generate_key_file(signing)
    return dataclasses.replace(
        base, storage=storage_config(tmp_path, target),
        evidence=EvidenceConfig(signing_key=signing if key else None,
                                trusted_keys=tmp_path / "keys" / "trusted" if key else None),
        audit=AuditConfig(checkpoint_file=tmp_path / "checkpoints.jsonl" if checkpoints else None))


def finalised_call(config: Config, channel: str = "ch-1", *, process_key: bool = True) -> dict:
    """A call whose recording is finalised by ``finalise_recording`` with the config's key
    (``process_key``: set as this process's key for every database; False: the key the
    caller configured for the config's database is used)."""
    conn = connect_sync(config.storage.target)
    try:
        rec = make_recording(conn, config, channel=channel, finalise=False)
        conn.execute("UPDATE calls SET consent_prompt = 'consent', consent_language = 'pt_BR',"
                     " consent_sha256 = ?, consent_started_at = ?, consent_finished_at = ?,"
                     " consent_outcome = 'finished' WHERE id = ?",
                     ("ab" * 32, "2026-03-10T17:00:00.000000+00:00", "2026-03-10T17:00:00.000000+00:00",
                      rec["call_id"]))
    finally:
        conn.close()

    async def finalise() -> None:
        if process_key:
            records.use_signer(Signer.load(config.evidence.signing_key) if config.evidence.signing_key else None)
        db = await Database.open(config.storage.target)
        try:
            assert await finalise_recording(db, rec["recording_id"], rec["path"], NOW_ISO, attempts=1)
        finally:
            await db.close()
            if process_key:
                records.use_signer(None)

    asyncio.run(finalise())
    return rec


__all__ = ["NOW", "NOW_ISO", "finalised_call", "signed_config"]
