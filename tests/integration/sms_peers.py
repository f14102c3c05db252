"""Real SMS gateway peers started by the tests on loopback.

``SmppPeer`` runs tests/peers/smpp_peer.pl (Debian's Net::SMPP: an SMPP
implementation independent of callproof's own SMPP client).  Under CI a
missing peer fails the test; elsewhere it skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from callproof.sandbox.ports import free_port as sandbox_free_port

PEER = Path(__file__).resolve().parent.parent / "peers" / "smpp_peer.pl"
SYSTEM_ID, PASSWORD = "callprf", "t3stPw9x"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_smpp_peer() -> None:
    ok = shutil.which("perl") is not None and subprocess.run(
        ["perl", "-MNet::SMPP", "-e", "1"], capture_output=True).returncode == 0
    if not ok:
        msg = "perl with Net::SMPP (Debian libnet-smpp-perl) is required for the SMPP peer"
        if in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


def free_port() -> int:
    """A loopback port outside the kernel's ephemeral range: no other test worker's
    connection can take it before the peer binds it (see callproof.sandbox.ports)."""
    return sandbox_free_port()


class SmppPeer:
    def __init__(self, log: Path, port: int = 0, *options: str) -> None:
        self.log = log
        self.options = options
        self.port = port
        self.proc: subprocess.Popen | None = None

    def start(self) -> SmppPeer:
        self.proc = subprocess.Popen(
            ["perl", str(PEER), "--port", str(self.port), "--log", str(self.log),
             "--system-id", SYSTEM_ID, "--password", PASSWORD, *self.options],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        if not line.startswith("LISTENING"):
            raise RuntimeError(f"SMPP peer did not start: {line!r} {self.proc.stderr.read()}")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def records(self, event: str = "submit_sm") -> list[dict]:
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("event") == event:
                out.append(rec)
        return out

    def wait_for(self, n: int, timeout: float = 20.0, event: str = "submit_sm") -> list[dict]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            recs = self.records(event)
            if len(recs) >= n:
                return recs
            time.sleep(0.05)
        raise AssertionError(f"the peer saw {len(self.records(event))} {event}, wanted {n}")


def decode_text(rec: dict) -> str:
    raw = bytes.fromhex(rec["short_message_hex"])
    if rec["esm_class"] & 0x40:  # strip the UDH
        raw = raw[raw[0] + 1:]
    if rec["data_coding"] == 8:
        return raw.decode("utf-16-be")
    from aiosmpplib import GSM7BitCodec  # unpacked GSM 03.38; an independent decoder, not ours
    return GSM7BitCodec().decode(raw)[0]
