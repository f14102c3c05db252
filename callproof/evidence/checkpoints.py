"""Signed checkpoints of the audit chain's head, kept outside the database (docs/evidence.md).

A checkpoint is ``{head_id, head_hash, count, at, key, entries_root}`` signed with the evidence key, one
JSON line appended to ``[audit] checkpoint_file`` (mode 0640, opened O_APPEND|O_NOFOLLOW,
never rewritten), optionally sent to syslog and timestamped by an RFC 3161 authority.
``verify`` checks the chain against every checkpoint: a rewritten chain (hashes recomputed
after entries were changed or deleted) no longer has the checkpointed hash at the
checkpointed id, a truncated one no longer reaches it. What happened after the newest
checkpoint is not proven: at most one interval of entries.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import socket
import syslog
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callproof.logs import event
from callproof.storage import SyncDatabase
from callproof.storage.audit import canonical_json

from . import merkle
from .keys import Signer, TrustedKeys
from .tsa import TsaError, request_token, verify_token

if TYPE_CHECKING:
    from callproof.config import Config

log = logging.getLogger("callproof.audit")

CHECKPOINT_TYPE = "callproof.audit_checkpoint"
FILE_MODE = 0o640


def body_bytes(body: dict[str, Any]) -> bytes:
    return canonical_json(body).encode("utf-8")


def make_checkpoint(db: SyncDatabase, signer: Signer, at: str) -> dict[str, Any]:
    """A signed checkpoint line (a dict) of the chain's head now."""
    head = db.audit.head()
    head_id, head_hash = head if head else (0, "0" * 64)
    hashes = [h for _, h in db.audit.hashes_upto(head_id)]
    body = {"type": CHECKPOINT_TYPE, "version": 1, "head_id": head_id, "head_hash": head_hash,
            "count": db.audit.count(), "at": at, "key": signer.fingerprint, "host": socket.gethostname(),
            # every entry's hash up to the head under one Merkle root: a package proves a call's
            # entries with a few sibling hashes, without the other entries (merkle.py)
            "entries_root": merkle.root(hashes), "entries_in_root": len(hashes), "tree": merkle.TREE}
    return {"checkpoint": body, "signature": base64.b64encode(signer.sign(body_bytes(body))).decode("ascii")}


def append_line(path: Path, line: dict[str, Any]) -> None:
    """Append one line under an exclusive lock; never truncates, never follows a symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, (json.dumps(line, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: Path) -> list[dict[str, Any] | None]:
    """Every line of a checkpoint file (None for a line that is not JSON)."""
    out: list[dict[str, Any] | None] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for text in fh:
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except ValueError:
                out.append(None)
                continue
            out.append(value if isinstance(value, dict) else None)
    return out


def last_head(path: Path) -> tuple[int, str] | None:
    try:
        lines = read_lines(path)
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        body = (line or {}).get("checkpoint")
        if isinstance(body, dict) and isinstance(body.get("head_id"), int) and isinstance(body.get("head_hash"), str):
            return body["head_id"], body["head_hash"]
    return None


def write_checkpoint(config: Config, db: SyncDatabase, signer: Signer, at: str, *,
                     only_if_changed: bool = False) -> dict[str, Any] | None:
    """Make, timestamp (``[audit] tsa_url``) and append one checkpoint; None when
    ``only_if_changed`` and the head is the one checkpointed last."""
    a = config.audit
    if a.checkpoint_file is None:
        raise ValueError("no [audit] checkpoint_file configured")
    line = make_checkpoint(db, signer, at)
    body = line["checkpoint"]
    if only_if_changed and last_head(a.checkpoint_file) == (body["head_id"], body["head_hash"]):
        return None
    if a.tsa_url and a.tsa_ca_file is not None:
        try:
            token = request_token(body_bytes(body), a.tsa_url, a.tsa_ca_file, a.tsa_timeout_seconds)
            line["tsa_token"] = base64.b64encode(token).decode("ascii")
        except TsaError as exc:  # the checkpoint is still worth keeping; the next one retries
            line["tsa_error"] = str(exc)[:300]
            event(log, "audit.checkpoint_tsa_failed", logging.WARNING, error=str(exc))
    append_line(a.checkpoint_file, line)
    if a.syslog:
        syslog.openlog("callproof", 0, syslog.LOG_AUTH)
        syslog.syslog(syslog.LOG_NOTICE, "audit.checkpoint " + json.dumps(line, sort_keys=True,
                                                                          separators=(",", ":")))
    event(log, "audit.checkpoint", head_id=body["head_id"], head_hash=body["head_hash"],
          timestamped="tsa_token" in line)
    return line


# -- verification ----------------------------------------------------------------------------

@dataclass
class ChainReport:
    intact: bool = True
    entries: int = 0
    head: tuple[int, str] | None = None
    problems: list[str] = field(default_factory=list)
    proven_id: int = 0  # entries 1..proven_id match a valid checkpoint
    proven_at: str | None = None
    proven_tsa_time: str | None = None
    checkpoints: int = 0  # valid checkpoints read


def _valid(line: dict[str, Any] | None, trusted: TrustedKeys) -> dict[str, Any] | None:
    if not line:
        return None
    body, sig = line.get("checkpoint"), line.get("signature")
    if not isinstance(body, dict) or body.get("type") != CHECKPOINT_TYPE or not isinstance(sig, str):
        return None
    try:
        raw = base64.b64decode(sig, validate=True)
    except ValueError:
        return None
    fp = body.get("key")
    if not isinstance(fp, str) or not trusted.verify(fp, raw, body_bytes(body)):
        return None
    return body


def verify(db: SyncDatabase, lines: list[dict[str, Any] | None], trusted: TrustedKeys,
           tsa_ca_file: Path | None = None) -> ChainReport:
    """The chain on its own, then against each checkpoint."""
    report = ChainReport()
    broken = db.audit.verify_chain()
    report.head = db.audit.head()
    report.entries = db.audit.count()
    if broken is not None:
        report.intact = False
        report.problems.append(f"entry {broken}: its link or hash does not match (edited in place)")
    if report.head and report.head[0] != report.entries:
        report.intact = False
        report.problems.append(f"{report.head[0] - report.entries} entries missing between 1 and "
                               f"{report.head[0]} (ids have gaps)")
    for n, line in enumerate(lines, 1):
        body = _valid(line, trusted)
        if body is None:
            report.intact = False
            report.problems.append(f"checkpoint line {n}: not a checkpoint signed by a trusted key")
            continue
        report.checkpoints += 1
        hid, hhash, when = body["head_id"], body["head_hash"], body["at"]
        if hid == 0:
            continue
        actual = db.audit.hash_of(hid)
        if actual is None:
            report.intact = False
            report.problems.append(f"checkpoint of {when} saw {hid} entries; the log now ends at "
                                   f"{report.head[0] if report.head else 0}: entries were DELETED "
                                   "(truncated, or removed and the chain rewritten)")
            continue
        if actual != hhash:
            report.intact = False
            report.problems.append(f"checkpoint of {when}: entry {hid} had hash {hhash[:16]}..., now "
                                   f"{actual[:16]}...: the chain up to it was REWRITTEN")
            continue
        if hid >= report.proven_id:
            report.proven_id, report.proven_at, report.proven_tsa_time = hid, when, None
            token = (line or {}).get("tsa_token")
            if token and tsa_ca_file is not None:
                try:
                    report.proven_tsa_time = verify_token(body_bytes(body), base64.b64decode(token), tsa_ca_file)
                except (TsaError, ValueError) as exc:
                    report.problems.append(f"checkpoint of {when}: its timestamp token does not verify ({exc})")
                    report.intact = False
    _check_roots(db, lines, trusted, report)
    if not report.intact:
        report.proven_id = 0
    return report


def _check_roots(db: SyncDatabase, lines: list[dict[str, Any] | None], trusted: TrustedKeys,
                 report: ChainReport) -> None:
    """Each checkpoint's ``entries_root`` against the chain's hashes, in one pass."""
    wanted: dict[int, list[tuple[str, int, str]]] = {}
    for line in lines:
        body = _valid(line, trusted)
        if body is not None and isinstance(body.get("entries_root"), str) and body["head_id"] > 0:
            wanted.setdefault(body["head_id"], []).append((body["entries_root"], body.get("entries_in_root", -1),
                                                           body["at"]))
    if not wanted:
        return
    acc = merkle.Accumulator()
    pending = sorted(wanted)
    for entry_id, entry_hash in db.audit.hashes_upto(pending[-1]):
        acc.add(entry_hash)
        while pending and pending[0] <= entry_id:
            for expected, size, when in wanted[pending.pop(0)]:
                if acc.root() != expected or acc.size != size:
                    report.intact = False
                    report.problems.append(f"checkpoint of {when}: its Merkle root of the entries does not match "
                                           "the chain's")


# -- who writes them: `callproof run` on its interval, the retention sweep after each run ----

def anchor_once(config: Config, signer: Signer | None = None, *, only_if_changed: bool = True) -> bool:
    """One checkpoint now, if ``[audit] checkpoint_file`` is set; False when it could not be
    written (logged).  Blocking: run it in a thread from async code."""
    from callproof.storage import open_sync, utc_now
    from callproof.storage.timefmt import to_db_time

    from .keys import KeyFileError

    if config.audit.checkpoint_file is None:
        return True
    try:
        signer = signer or (Signer.load(config.evidence.signing_key) if config.evidence.signing_key else None)
        if signer is None:
            return False
        with open_sync(config) as db:
            write_checkpoint(config, db, signer, to_db_time(utc_now()), only_if_changed=only_if_changed)
    except (KeyFileError, OSError, ValueError) as exc:
        event(log, "audit.checkpoint_failed", logging.ERROR, error=str(exc))
        return False
    except Exception as exc:  # storage trouble: the next interval tries again
        event(log, "audit.checkpoint_failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
        return False
    return True


async def anchor_periodically(config: Config, signer: Signer) -> None:
    """``callproof run``: a checkpoint at start and every ``[audit] checkpoint_interval_seconds``
    (skipped while the head has not moved)."""
    import asyncio

    while True:
        await asyncio.to_thread(anchor_once, config, signer)
        await asyncio.sleep(config.audit.checkpoint_interval_seconds)
