"""Key management costs, as ratios against a baseline measured in the same run.

    python bench/bench_keys.py [--minutes 60] [--rounds 3] [--lookups 2000]

1. **Re-wrap for a legal hold** (what ``keys destroy-expired`` does to each held recording):
   callproof's ``rewrap_file`` on an encrypted 1-hour recording (8 kHz 16-bit mono WAV,
   57.6 MB: a new header, the payload copied, fsynced, its sha256 checked, renamed) against
   what an administrator would do with Debian's ``age`` alone: ``age -d -i period.key |
   age -r HOLD -o new`` (decrypt and encrypt again).  Median of ``--rounds`` wall times each.
2. **The period-key lookup at finalisation** (``PublicKeyring.recipients_for``: one listing
   of the public keys directory, 2 classes x 26 months of keys) against encrypting a 3-minute
   recording (2.9 MB) with callproof: the lookup's share of a call's encryption work.

Needs ``age`` on PATH (Debian package age).  Nothing is asserted; the last line is the
figures as one JSON object (docs/benchmarks.md, Keys).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from callproof.encryption import encrypt  # noqa: E402
from callproof.encryption.keyring import PrivateKeyring, PublicKeyring  # noqa: E402
from callproof.encryption.keystore import export_public, top_up  # noqa: E402
from callproof.encryption.shredding import rewrap_file  # noqa: E402

BYTES_PER_MINUTE = 8000 * 2 * 60


def _keys(tmp: Path) -> tuple[PrivateKeyring, PublicKeyring]:
    private, public = tmp / "private", tmp / "public"
    top_up(private, {"consumer_service": 90, "mobile_telecom": 180}, datetime.now(UTC), 24, 7)
    export_public(private, public)
    return PrivateKeyring.from_dir(private), PublicKeyring.from_dir(public)


def bench_rewrap(tmp: Path, ring: PrivateKeyring, minutes: int, rounds: int) -> dict:
    age = shutil.which("age")
    if age is None:
        raise SystemExit("bench_keys: Debian's age is required (apt-get install age)")
    period = next(k for k in ring.key_ids() if not k.startswith("hold-"))
    plain = tmp / "call.wav"
    with plain.open("wb") as f:
        for _ in range(minutes):
            f.write(os.urandom(BYTES_PER_MINUTE))
    sealed = tmp / "call.wav.age"
    with plain.open("rb") as src, sealed.open("wb") as dst:
        digests = encrypt(src, dst, [ring.identity(period).recipient])
    plain.unlink()
    hold = ring.hold_recipients()
    key_file = ring.directory / f"{period}.key"
    ours, theirs = [], []
    for i in range(rounds):
        copy = tmp / f"copy-{i}.age"
        shutil.copy(sealed, copy)
        subprocess.run(["sync"], check=True)
        t = time.perf_counter()
        rewrap_file(copy, [ring.identity(period)], list(hold.recipients), payload_sha256=digests.payload_sha256,
                    already=[])
        ours.append(time.perf_counter() - t)
        out = tmp / f"age-{i}.age"
        t = time.perf_counter()
        dec = subprocess.Popen([age, "-d", "-i", str(key_file), str(sealed)], stdout=subprocess.PIPE)
        subprocess.run([age, "-r", str(hold.recipients[0]), "-o", str(out)], stdin=dec.stdout, check=True)
        assert dec.stdout is not None
        dec.stdout.close()
        dec.wait()
        with open(out, "rb") as f:
            os.fsync(f.fileno())
        theirs.append(time.perf_counter() - t)
        copy.unlink()
        out.unlink()
    a, b = statistics.median(ours), statistics.median(theirs)
    size_mb = digests.ciphertext_size / 1e6
    print(f"re-wrap of a {minutes}-minute recording ({size_mb:.1f} MB): callproof {a * 1000:.0f} ms "
          f"({size_mb / a:.0f} MB/s), age -d | age -r {b * 1000:.0f} ms; ratio {a / b:.2f}")
    return {"rewrap_ms": round(a * 1000, 1), "age_reencrypt_ms": round(b * 1000, 1), "rewrap_ratio": round(a / b, 3)}


def bench_lookup(tmp: Path, public: PublicKeyring, lookups: int) -> dict:
    expires = datetime.now(UTC) + timedelta(days=90)
    public.recipients_for("consumer_service", expires)
    t = time.perf_counter()
    for _ in range(lookups):
        chosen = public.recipients_for("consumer_service", expires)
    lookup = (time.perf_counter() - t) / lookups
    data = os.urandom(3 * BYTES_PER_MINUTE)
    t = time.perf_counter()
    for _ in range(5):
        encrypt(io.BytesIO(data), io.BytesIO(), list(chosen.recipients))
    enc = (time.perf_counter() - t) / 5
    print(f"period-key lookup {lookup * 1e6:.0f} us ({len(public.key_ids())} keys in the directory); "
          f"encrypting a 3-minute recording {enc * 1000:.1f} ms; lookup/encryption {lookup / enc:.4f}")
    return {"lookup_us": round(lookup * 1e6, 1), "encrypt_3min_ms": round(enc * 1000, 2),
            "lookup_ratio": round(lookup / enc, 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lookups", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-keys-") as name:
        tmp = Path(name)
        ring, public = _keys(tmp / "keys")
        figures = {**bench_rewrap(tmp, ring, args.minutes, args.rounds), **bench_lookup(tmp, public, args.lookups)}
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
