"""The retention run's key step: after the sweep has deleted a period's expired recordings,
the period's private key is destroyed (held recordings re-wrapped first) and the period
keys due ahead are created; a host without the private keys (a PBX) skips it."""

from __future__ import annotations

from datetime import UTC, datetime

from callproof.encryption.keyring import PrivateKeyring
from callproof.retention.run import run_sweep
from callproof.storage import connect_sync
from callproof.storage.holds import place_hold_sync
from tests.unit.encryption.keyworld import MARCH, decrypts_with, encrypted_recording, key_config, make_keys

AFTER_MARCH = datetime(2027, 4, 9, tzinfo=UTC)


def test_the_sweep_deletes_then_the_period_key_is_destroyed(tmp_path, target):
    config = key_config(tmp_path, target)
    ring = make_keys(config)
    gone = encrypted_recording(config, ring, MARCH, channel="a", retention_until="2027-03-10T14:00:00.000000Z")
    held = encrypted_recording(config, ring, MARCH, channel="b", retention_until="2027-03-11T14:00:00.000000Z")
    conn = connect_sync(config.storage.target)
    place_hold_sync(conn, "protocol", protocol=held["protocol"], reason="court order", placed_by="legal",
                    at=AFTER_MARCH)
    conn.close()
    summary = run_sweep(config, now=lambda: AFTER_MARCH)
    assert summary.deleted == 1 and summary.held == 1 and not gone["age_path"].exists()
    assert summary.keys_destroyed == 2 and summary.keys_refused == 0  # February's and March's
    assert any(line.startswith(f"{MARCH}: destroyed") for line in summary.key_outcomes)
    after = PrivateKeyring.from_dir(config.encryption.private_keys_dir)
    assert MARCH not in after.key_ids()
    assert "consumer_service-2027-11" in after.key_ids()  # topped up ahead
    assert decrypts_with(held["age_path"], after.identities()) == held["plaintext_sha256"]
    # the PBX's public directory no longer offers the destroyed key
    assert not (config.encryption.public_keys_dir / f"{MARCH}.pub").exists()
    assert (config.encryption.public_keys_dir / "consumer_service-2027-11.pub").exists()


def test_a_host_without_private_keys_only_sweeps(tmp_path, target):
    config = key_config(tmp_path, target)
    config.recording.root.mkdir()
    summary = run_sweep(config, now=lambda: AFTER_MARCH)
    assert summary.errors == 0 and summary.keys_destroyed == 0
    assert not config.encryption.private_keys_dir.exists()
