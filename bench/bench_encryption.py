"""Encryption at rest: callproof's age against Debian's ``age`` on the same files, one core,
and the first byte of a Range request in the middle of an encrypted one-hour recording.

    .venv/bin/python bench/bench_encryption.py [--mb 57.6] [--repeat 3] [--ranges 50]

1. Throughput, one core (this process and each ``age`` run pinned to one CPU with
   sched_setaffinity): a 1-hour recording's worth of random bytes (8 kHz 16-bit mono WAV:
   57.6 MB; ``--mb`` to change) on the file system the script's temporary directory is on.
   callproof ``encrypt`` (file to file, to one X25519 recipient) and ``decrypt`` (to
   /dev/null, every chunk authenticated), then ``age -r`` / ``age -d -i`` on the same
   plaintext and the same age file.  Best of ``--repeat`` runs each, MB/s (10^6 bytes per
   second of wall time) and callproof / age ratios.  Target: >= 200 MB/s both ways.
   Each tool also decrypts the other's file (the sha256 must match: interop, not speed).
2. Range first byte: the real web application (callproof.web.app, aiohttp, over loopback)
   serving the encrypted recording of a call, as the call page's player asks for it: GET
   /calls/<protocol>/audio with ``Range: bytes=<middle>-`` at random offsets in the middle
   half, time from sending the request to the first body byte; median and p99 (nearest
   rank) over ``--ranges`` requests, and the same for the plaintext file (the ratio is the
   cost of decrypting: one 64 KiB chunk opened on its own).  Target: <= 50 ms.

Figures are printed (a table and one JSON line), never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from callproof.encryption import Identity, decrypt, encrypt, format_identity_file  # noqa: E402

TARGET_MBPS = 200.0
TARGET_FIRST_BYTE_MS = 50.0


class _Null:
    def write(self, data: bytes) -> int:
        return len(data)


def pin_one_core() -> int:
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def throughput(work: Path, size: int, repeat: int, cpu: int) -> dict:
    age, keygen = shutil.which("age"), shutil.which("age-keygen")
    plain, sealed, by_age = work / "plain.wav", work / "plain.wav.age", work / "by-age.age"
    with plain.open("wb") as fh:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            fh.write(block)
            left -= len(block)
    identity = Identity.generate()
    key_file = work / "key.txt"
    key_file.write_text(format_identity_file(identity))
    key_file.chmod(0o600)
    expected = hashlib.sha256(plain.read_bytes()).hexdigest()

    def cp_encrypt() -> None:
        with plain.open("rb") as src, sealed.open("wb") as dst:
            encrypt(src, dst, [identity.recipient])

    def cp_decrypt() -> None:
        with sealed.open("rb") as src:
            assert decrypt(src, _Null(), [identity]).plaintext_sha256 == expected  # type: ignore[arg-type]

    out = {"size_bytes": size, "cpu": cpu}
    out["callproof_encrypt_s"] = best(cp_encrypt, repeat)
    out["callproof_decrypt_s"] = best(cp_decrypt, repeat)
    if age is None or keygen is None:
        out["age"] = "not installed (Debian package age)"
        return out
    taskset = ["taskset", "-c", str(cpu)] if shutil.which("taskset") else []

    def age_encrypt() -> None:
        subprocess.run([*taskset, age, "-r", str(identity.recipient), "-o", str(by_age), str(plain)], check=True)

    def age_decrypt() -> None:
        with open(os.devnull, "wb") as null:
            subprocess.run([*taskset, age, "-d", "-i", str(key_file), str(sealed)], stdout=null, check=True)

    out["age_encrypt_s"] = best(age_encrypt, repeat)
    out["age_decrypt_s"] = best(age_decrypt, repeat)
    # interop on the very files: age opens callproof's, callproof opens age's
    done = subprocess.run([age, "-d", "-i", str(key_file), str(sealed)], capture_output=True, check=True)
    out["age_opens_callproof"] = hashlib.sha256(done.stdout).hexdigest() == expected
    with by_age.open("rb") as src:
        out["callproof_opens_age"] = decrypt(src, _Null(), [identity]).plaintext_sha256 == expected  # type: ignore[arg-type]
    return out


# -- the Range request through the web app --------------------------------------------------

async def first_bytes(work: Path, size: int, n: int) -> dict:
    import random

    import aiohttp

    from callproof.encryption.atrest import encrypt_beside, open_dir
    from callproof.storage import recordings as recordings_store
    from tests.unit.encryption.fakekeys import FakeKeyring
    from tests.unit.web.test_app import PASSWORD, make_site

    (work / "web").mkdir()
    site = await make_site(work / "web")
    try:
        # the site's recording, replaced by a one-hour one (a WAV header and `size` bytes of audio)
        path = site.call["path"]
        with path.open("r+b") as fh:
            header = fh.read(44)
            fh.seek(0)
            fh.write(header)
            fh.truncate(44)
            fh.seek(44)
            left = size - 44
            while left:
                block = os.urandom(min(left, 1 << 20))
                fh.write(block)
                left -= len(block)
        plain_copy = path.with_name("plain-" + path.name)
        shutil.copyfile(path, plain_copy)
        keyring = FakeKeyring()
        chosen = keyring.recipients_for("consumer", site.now().replace(year=site.now().year + 1))
        dir_fd = open_dir(path.parent)
        with path.open("rb") as fh:
            d = encrypt_beside(fh, dir_fd, path.name, chosen.recipients)
        os.close(dir_fd)
        path.unlink()
        site.app_ctx.keyring = keyring
        base = str(site.client.make_url("/"))
        rng = random.Random(7)
        results = {}
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            page = await http.get(base + "login")
            token = (await page.text()).split('name="login_token" value="', 1)[1].split('"', 1)[0]
            await http.post(base + "login", data={"username": "vera", "password": PASSWORD, "login_token": token,
                                                 "next": "/search"}, allow_redirects=False)
            url = base + f"calls/{site.call['protocol']}/audio"
            for mode in ("encrypted", "plaintext"):
                if mode == "plaintext":  # the same row, its file as it was before encryption
                    site.conn.execute("UPDATE recordings SET encryption = NULL, age_path = NULL WHERE id = ?",
                                      (site.call["recording_id"],))
                    shutil.move(plain_copy, path)
                else:
                    recordings_store.mark_encrypted_sync(
                        site.conn, site.call["recording_id"], age_path=str(path) + ".age",
                        ciphertext_sha256=d.ciphertext_sha256, ciphertext_size=d.ciphertext_size,
                        payload_sha256=d.payload_sha256, key_ids=chosen.key_ids)
                times = []
                for i in range(n + 2):
                    offset = rng.randrange(size // 4, 3 * size // 4)
                    t = time.perf_counter()
                    async with http.get(url, headers={"Range": f"bytes={offset}-"}) as resp:
                        assert resp.status == 206, resp.status
                        await resp.content.readany()
                        elapsed = time.perf_counter() - t
                    if i >= 2:  # two warm-up requests: the first connections, the first imports
                        times.append(elapsed * 1000)
                times.sort()
                results[mode] = {"median_ms": statistics.median(times),
                                 "p99_ms": times[min(len(times) - 1, max(0, -(-99 * len(times) // 100) - 1))]}
        return results
    finally:
        await site.client.close()
        site.pool.close()
        site.conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=57.6, help="file size in 10^6 bytes (default: one hour of audio)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (the best is kept)")
    parser.add_argument("--ranges", type=int, default=50, help="Range requests per mode")
    args = parser.parse_args()
    size = int(args.mb * 1_000_000)
    cpu = pin_one_core()
    with tempfile.TemporaryDirectory(prefix="callproof-bench-enc-") as tmp:
        work = Path(tmp)
        tp = throughput(work, size, args.repeat, cpu)
        fb = asyncio.run(first_bytes(work, size, args.ranges))
    mbps = {k: size / 1e6 / tp[f"{k}_s"] for k in ("callproof_encrypt", "callproof_decrypt", "age_encrypt",
                                                    "age_decrypt") if f"{k}_s" in tp}
    print(f"{size / 1e6:.1f} MB file, one core (CPU {cpu}), best of {args.repeat}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'':12}{'callproof MB/s':>16}{'age MB/s':>10}{'ratio':>8}")
    for op in ("encrypt", "decrypt"):
        mine, theirs = mbps[f"callproof_{op}"], mbps.get(f"age_{op}")
        print(f"{op:12}{mine:>16.0f}{theirs if theirs is None else round(theirs):>10}"
              f"{'' if theirs is None else f'{mine / theirs:.2f}':>8}")
    print(f"(target >= {TARGET_MBPS:.0f} MB/s; interop on these files: age opens callproof's "
          f"{tp.get('age_opens_callproof')}, callproof opens age's {tp.get('callproof_opens_age')})")
    enc, plain = fb["encrypted"], fb["plaintext"]
    print(f"Range first byte, middle of the file, through the web app ({args.ranges} requests): encrypted median "
          f"{enc['median_ms']:.1f} ms p99 {enc['p99_ms']:.1f} ms; plaintext median {plain['median_ms']:.1f} ms "
          f"p99 {plain['p99_ms']:.1f} ms; ratio (p99) {enc['p99_ms'] / plain['p99_ms']:.2f} "
          f"(target <= {TARGET_FIRST_BYTE_MS:.0f} ms)")
    print(json.dumps({"benchmark": "bench_encryption", "size_bytes": size, "cpu": cpu, "repeat": args.repeat,
                      "mb_per_s": {k: round(v, 1) for k, v in mbps.items()},
                      "ratio_vs_age": {op: round(mbps[f"callproof_{op}"] / mbps[f"age_{op}"], 3)
                                       for op in ("encrypt", "decrypt") if f"age_{op}" in mbps},
                      "interop": {k: tp.get(k) for k in ("age_opens_callproof", "callproof_opens_age")},
                      "range_first_byte_ms": fb, "targets": {"mb_per_s_min": TARGET_MBPS,
                                                             "first_byte_ms_max": TARGET_FIRST_BYTE_MS},
                      "loadavg_end": [round(x, 2) for x in os.getloadavg()]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
