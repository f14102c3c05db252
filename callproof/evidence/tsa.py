"""RFC 3161 timestamps of audit checkpoints, through the ``openssl ts`` command.

``openssl`` runs with a fixed argument list (no shell) on files in a private temporary
folder; the request travels to ``[audit] tsa_url`` by HTTP POST
(``application/timestamp-query``). A token is verified against ``[audit] tsa_ca_file``
before it is kept, and again by ``callproof audit verify`` and ``evidence verify``.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import urllib.request
from pathlib import Path

OPENSSL = "openssl"
_TIME = re.compile(r"^Time stamp: (.+)$", re.MULTILINE)


class TsaError(Exception):
    """The time-stamping authority could not be reached, or its answer does not verify."""


def _openssl(args: list[str], timeout: float = 30.0) -> str:
    try:
        done = subprocess.run([OPENSSL, *args], capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TsaError(f"openssl ts: {exc}") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).decode("utf-8", "replace").strip().splitlines()
        raise TsaError(f"openssl ts {args[1]} failed: {detail[-1] if detail else done.returncode}")
    return done.stdout.decode("utf-8", "replace")


def request_token(data: bytes, url: str, ca_file: Path, timeout: float = 10.0) -> bytes:
    """A verified RFC 3161 timestamp response (DER) over sha256(``data``)."""
    with tempfile.TemporaryDirectory(prefix="callproof-tsa-") as tmp:
        d = Path(tmp)
        (d / "data").write_bytes(data)
        _openssl(["ts", "-query", "-data", str(d / "data"), "-sha256", "-cert", "-out", str(d / "req")])
        req = urllib.request.Request(url, data=(d / "req").read_bytes(), method="POST",
                                     headers={"Content-Type": "application/timestamp-query"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # http(s) only: validated
                token = resp.read(1 << 20)
        except OSError as exc:
            raise TsaError(f"time-stamping authority unreachable: {exc}") from None
    verify_token(data, token, ca_file)
    return token


def verify_token(data: bytes, token: bytes, ca_file: Path) -> str:
    """Check ``token`` is a valid timestamp of ``data`` by a TSA under ``ca_file``; its time."""
    with tempfile.TemporaryDirectory(prefix="callproof-tsa-") as tmp:
        d = Path(tmp)
        (d / "data").write_bytes(data)
        (d / "token").write_bytes(token)
        _openssl(["ts", "-verify", "-data", str(d / "data"), "-in", str(d / "token"), "-CAfile", str(ca_file)])
        text = _openssl(["ts", "-reply", "-in", str(d / "token"), "-text"])
    m = _TIME.search(text)
    return m.group(1).strip() if m else "?"
