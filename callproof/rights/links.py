"""Signed, expiring download links to one export, for one recipient.

Token: ``base64url(version | link_id | expires) . base64url(HMAC-SHA256)``, the
MAC keyed with ``[rights] link_secret`` over a domain-separated payload and
compared in constant time.  The token only lets the server find the
``download_links`` row without a lookup oracle; the row is the authority for
revocation, expiry and the download budget (``[rights] link_max_downloads``).

Every resolution is audited: ``recording.downloaded`` (link, recipient, remote
address) or ``download.refused`` (reason).  Refusal reasons (``LinkError.reason``):
``malformed``, ``bad_signature``, ``expired``, ``revoked``, ``exhausted``,
``gone`` (the link or its export file no longer exists or no longer matches
its sha256).  The public download route answers every refusal alike, so the
reason is for the audit log and the operator, not for the requester.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from callproof.config import Config, require_secret
from callproof.storage import SyncDatabase
from callproof.storage.exports import Export
from callproof.storage.links import DownloadLink
from callproof.storage.timefmt import parse_db_time, to_db_time

REASONS = ("malformed", "bad_signature", "expired", "revoked", "exhausted", "gone")
TOKEN_VERSION = 1
DOWNLOAD_ACTOR = "public-link"
_PAYLOAD = struct.Struct(">BQQ")  # version, link id, expiry (Unix seconds)
_DOMAIN = b"callproof download link\x00"
_B64 = r"[A-Za-z0-9_-]"
# 17 payload bytes -> 23 characters, 32 MAC bytes -> 43 characters (no padding).
_TOKEN = re.compile(rf"({_B64}{{23}})\.({_B64}{{43}})")
_MAX_TOKEN_CHARS = 128


class LinkError(Exception):
    """A download link refused; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str | None = None):
        if reason not in REASONS:
            raise ValueError(f"unknown link refusal reason {reason!r}")
        super().__init__(message or reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class IssuedLink:
    link_id: int
    url: str
    token: str
    expires_at: str  # stored UTC form


# --------------------------------------------------------------------------
# tokens

def make_token(secret: str, link_id: int, expires: datetime) -> str:
    payload = _PAYLOAD.pack(TOKEN_VERSION, link_id, int(expires.timestamp()))
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


def parse_token(secret: str, token: str) -> tuple[int, datetime]:
    """(link_id, expiry) of a token whose signature is valid; LinkError otherwise.

    Only the shape is checked before the MAC; nothing in the payload is
    trusted until the MAC matches."""
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS:
        raise LinkError("malformed", "the token is not a download token")
    m = _TOKEN.fullmatch(token)
    if m is None:
        raise LinkError("malformed", "the token is not a download token")
    try:
        payload, mac = _unb64(m[1]), _unb64(m[2])
    except (binascii.Error, ValueError):
        raise LinkError("malformed", "the token is not valid base64url") from None
    if len(payload) != _PAYLOAD.size or len(mac) != 32:
        raise LinkError("malformed", "the token has the wrong length")
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        raise LinkError("bad_signature", "the token's signature does not match")
    version, link_id, expires = _PAYLOAD.unpack(payload)
    if version != TOKEN_VERSION:
        raise LinkError("malformed", f"unknown token version {version}")
    return link_id, datetime.fromtimestamp(expires, UTC)


_ANY_TOKEN = re.compile(rf"{_B64}{{23}}\.{_B64}{{43}}")
REDACTED = "[redacted]"


def redact_link_tokens(text: str) -> str:
    """``text`` with every download token in it replaced by ``[redacted]`` (for
    logs and stored copies of a message already sent)."""
    return _ANY_TOKEN.sub(REDACTED, text)


def token_digest(token: str) -> str:
    """How a token is named where it is recorded: a short sha256, never the token."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:16]


def link_url(config: Config, token: str) -> str:
    return f"{config.rights.public_base_url}d/{token}"


def _mac(secret: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), _DOMAIN + payload, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --------------------------------------------------------------------------
# issue / revoke / resolve

def issue_link_sync(db: SyncDatabase, config: Config, export_id: int, *, recipient: str,
                    actor: str, now: str | datetime) -> IssuedLink:
    """A new link to export ``export_id`` for ``recipient`` (e.g. ``email:a@b.c``,
    ``sms:+5511...``), valid ``[rights] link_lifetime_hours``; audited ``link.issued``."""
    db = SyncDatabase.wrap(db)
    secret = require_secret(config, "rights.link_secret")
    if not recipient or not recipient.strip():
        raise ValueError("a download link needs its recipient")
    if not actor:
        raise ValueError("issuing a link needs the actor")
    issued = parse_db_time(to_db_time(now))
    # Whole seconds: the token carries the expiry in seconds and must agree with the row.
    expires = (issued + timedelta(hours=config.rights.link_lifetime_hours)).replace(microsecond=0)
    at, expires_at = to_db_time(issued), to_db_time(expires)
    link_id = db.links.insert(export_id, recipient=recipient, actor=actor, at=at, expires_at=expires_at,
                              max_downloads=config.rights.link_max_downloads)
    token = make_token(secret, link_id, expires)
    return IssuedLink(link_id=link_id, url=link_url(config, token), token=token, expires_at=expires_at)


def revoke_link_sync(db: SyncDatabase, link_id: int, *, actor: str, now: str | datetime,
                     reason: str | None = None) -> None:
    """Revoke a link (its token is refused from now on); audited ``link.revoked``."""
    if not actor:
        raise ValueError("revoking a link needs the actor")
    SyncDatabase.wrap(db).links.revoke(link_id, actor=actor, at=to_db_time(now), reason=reason)


def resolve_token_sync(db: SyncDatabase, config: Config, token: str, *,
                       now: str | datetime, remote: str | None = None,
                       count: bool = True) -> tuple[DownloadLink, Export]:
    """``(link, export)`` for a valid token, counting one download; LinkError otherwise.

    The caller then serves ``export.path`` (already checked: present, same
    sha256 as when exported).  Both outcomes are audited.  ``count=False``
    (a HEAD, or a range that does not reach the file's end) checks the link
    the same way, refusals audited, but neither counts nor audits a download."""
    db = SyncDatabase.wrap(db)
    secret = require_secret(config, "rights.link_secret")
    at = to_db_time(now)
    try:
        link_id, _token_expiry = parse_token(secret, token)
    except LinkError as exc:
        _refused(db, at, exc, remote, token=token)
        raise
    link = db.links.get(link_id)
    export = db.exports.get(link.export_id) if link else None
    try:
        _check_row(link, at)
        _check_file(export)
    except LinkError as exc:
        _refused(db, at, exc, remote, link=link, link_id=link_id)
        raise
    assert link is not None and export is not None
    if not count:
        return link, export
    refusal: LinkError | None = None

    def refused(changed: DownloadLink | None) -> dict[str, Any]:
        # A revocation or a concurrent last download between the checks above
        # and the count still wins; say which.
        nonlocal refusal
        try:
            _check_row(changed, at)
            refusal = LinkError("gone", "the link changed while it was being resolved")
        except LinkError as exc:
            refusal = exc
        return _refusal_details(refusal, remote, link=changed, link_id=link_id)

    counted, after = db.links.count_download(
        link_id, at=at, actor=DOWNLOAD_ACTOR, refused=refused,
        details={"link_id": link_id, "export_id": export.id, "request_id": export.request_id,
                 "recipient": link.recipient, "remote": remote, "sha256": export.sha256})
    if not counted:  # committed with its audit entry; now tell the caller
        assert refusal is not None
        raise refusal
    assert after is not None
    return after, export


def _check_row(link: DownloadLink | None, at: str) -> None:
    """LinkError when the row says no: the row decides, not the token."""
    if link is None:
        raise LinkError("gone", "the link does not exist")
    if link.revoked_at is not None:
        raise LinkError("revoked", f"the link was revoked at {link.revoked_at}")
    if at >= link.expires_at:
        raise LinkError("expired", f"the link expired at {link.expires_at}")
    if link.max_downloads is not None and link.download_count >= link.max_downloads:
        raise LinkError("exhausted", f"the link was used {link.download_count} times (the maximum)")


def _check_file(export: Export | None) -> None:
    """The export file is there and is what was exported (same sha256)."""
    if export is None or export.deleted_at is not None:
        raise LinkError("gone", "the export was deleted")
    path = Path(export.path)
    h = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise LinkError("gone", f"the export file cannot be read ({exc.strerror or exc})") from None
    if h.hexdigest() != export.sha256:
        raise LinkError("gone", "the export file no longer matches its sha256")


def _refusal_details(exc: LinkError, remote: str | None, *, token: str | None = None,
                     link: DownloadLink | None = None, link_id: int | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {"reason": exc.reason, "remote": remote, "detail": str(exc)}
    if link_id is not None:
        details["link_id"] = link_id
    if link is not None:
        details.update(recipient=link.recipient, export_id=link.export_id)
    if isinstance(token, str):
        # Never the token itself (a bearer credential): its length and a short digest.
        details["token_chars"] = len(token)
        details["token_sha256_prefix"] = token_digest(token)
    return details


def _refused(db: SyncDatabase, at: str, exc: LinkError, remote: str | None, *,
             token: str | None = None, link: DownloadLink | None = None, link_id: int | None = None) -> None:
    db.links.record_refusal(actor=DOWNLOAD_ACTOR, at=at, protocol=link.call_protocol if link else None,
                            link_id=link_id,
                            details=_refusal_details(exc, remote, token=token, link=link, link_id=link_id))
