"""A 3-hour encrypted recording (173 MB of plaintext) exports with bounded memory: the
exporting process's peak resident set grows by a small fraction of the recording, and so
does ffmpeg's, because the recording is decrypted chunk by chunk into ffmpeg's stdin."""

from __future__ import annotations

import hashlib
import io
import shutil

import pytest

from callproof.encryption import decrypt
from callproof.encryption.keyring import PrivateKeyring

from .long_export import long_encrypted_request, measure_export

THREE_HOURS = 3 * 3600
MIB = 1024


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg (Debian package ffmpeg) not installed")
def test_a_three_hour_recording_exports_in_bounded_memory(tmp_path):
    config, request_id, size = long_encrypted_request(tmp_path, THREE_HOURS)
    assert size > 170_000_000
    outcome = measure_export(config, request_id, "wav")
    assert outcome["growth_kib"] < 48 * MIB, outcome  # the recording is 165 MiB
    assert outcome["ffmpeg_kib"] < 64 * MIB, outcome
    # the customer gets the whole call: the export's WAV holds every sample
    digest = hashlib.sha256()

    class Sink(io.RawIOBase):
        length = 0

        def write(self, data):  # type: ignore[override]
            digest.update(data)
            Sink.length += len(data)
            return len(data)

    with open(outcome["path"], "rb") as fh:
        decrypt(fh, Sink(), PrivateKeyring.load(config).identities())
    assert Sink.length >= size  # ffmpeg's WAV header may carry a LIST (tags) chunk
    assert Sink.length - size < 4096
