"""The sync handle: :class:`SyncDatabase`, for the CLI, the web page's pool
threads and business code that runs on :class:`storage.Database`'s thread.

Callers outside ``storage/`` never see a ``sqlite3.Connection``: they get a
``SyncDatabase`` and call its repositories (``db.requests.get(12)``,
``db.links.revoke(...)``).  Each repository method is the table module's
``*_sync`` function with the connection bound, so the statements, their
transactions and the SQLite-only SQL stay in the table modules.  A second
backend implements the same repositories; callers do not change.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from . import audit as _audit
from . import callbacks as _callbacks
from . import calls as _calls
from . import deliveries as _deliveries
from . import evidence as _evidence
from . import exports as _exports
from . import history as _history
from . import holds as _holds
from . import keys as _keys
from . import links as _links
from . import lookups as _lookups
from . import pages as _pages
from . import recordings as _recordings
from . import report as _report
from . import request_codes as _codes
from . import requests as _requests
from . import webauth as _webauth

P = ParamSpec("P")
T = TypeVar("T")


class _Bound(Generic[P, T]):
    """A repository method: ``fn(connection, *args, **kwargs)`` with the repository's connection.

    Read from an instance (``db.webauth.get_user``) it is a bound method; read
    from the class (``WebAuthRepo.get_user``) it takes the handle first, which
    is what :meth:`SyncPool.run` and :meth:`Database.run_sync` pass:
    ``await pool.run(WebAuthRepo.get_user, name)``.
    """

    def __init__(self, fn: Callable[Concatenate[sqlite3.Connection, P], T]) -> None:
        self._fn = fn
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    @overload
    def __get__(self, repo: None, owner: type) -> _Bound[P, T]: ...
    @overload
    def __get__(self, repo: _Repository, owner: type) -> Callable[P, T]: ...

    def __get__(self, repo: _Repository | None, owner: type) -> Any:
        if repo is None:
            return self
        fn, conn = self._fn, repo._conn

        def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return fn(conn, *args, **kwargs)

        method.__doc__ = fn.__doc__
        method.__name__ = fn.__name__
        return method

    def __call__(self, db: SyncDatabase, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._fn(db._conn, *args, **kwargs)


class _Repository:
    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn


class CallsRepo(_Repository):
    get = _Bound(_calls.get_sync)
    get_by_protocol = _Bound(_calls.get_by_protocol_sync)


class RecordingsRepo(_Repository):
    get = _Bound(_recordings.get_sync)
    for_call = _Bound(_recordings.for_call_sync)
    latest_for_protocol = _Bound(_recordings.latest_for_protocol_sync)
    finalised_batch = _Bound(_recordings.finalised_batch_sync)
    mark_encrypted = _Bound(_recordings.mark_encrypted_sync)
    mark_rewrapped = _Bound(_recordings.mark_rewrapped_sync)
    mark_encryption_pending = _Bound(_recordings.mark_encryption_pending_sync)
    with_key = _Bound(_recordings.recordings_with_key_sync)
    plaintext_batch = _Bound(_recordings.plaintext_batch_sync)
    encrypted_batch = _Bound(_recordings.encrypted_unfinished_sync)
    record_encrypted = _Bound(_recordings.record_encrypted_sync)


class RequestsRepo(_Repository):
    create = _Bound(_requests.create_request_sync)
    get = _Bound(_requests.get_request_sync)
    get_by_protocol = _Bound(_requests.get_request_by_protocol_sync)
    for_call = _Bound(_requests.requests_for_call_sync)
    list = _Bound(_requests.list_requests_sync)
    count_open = _Bound(_requests.count_open_sync)
    count_by_state = _Bound(_requests.count_by_state_sync)
    set_state = _Bound(_requests.set_state_sync)
    with_call = _Bound(_requests.request_with_call_sync)
    queue_code = _Bound(_codes.queue_code_sync)
    codes_sent_since = _Bound(_codes.codes_sent_since_sync)
    check_code = _Bound(_codes.check_code_sync)
    set_identity_basis = _Bound(_codes.set_identity_basis_sync)
    queue_notice = _Bound(_codes.queue_notice_sync)


class ExportsRepo(_Repository):
    get = _Bound(_exports.get_export_sync)
    for_request = _Bound(_exports.exports_for_request_sync)
    summaries = _Bound(_exports.export_summaries_sync)
    latest = _Bound(_exports.latest_export_sync)
    record = _Bound(_exports.record_export_sync)


class LinksRepo(_Repository):
    get = _Bound(_links.get_link_sync)
    insert = _Bound(_links.insert_link_sync)
    revoke = _Bound(_links.revoke_link_sync)
    count_download = _Bound(_links.count_download_sync)
    record_refusal = _Bound(_links.record_refusal_sync)


class DeliveriesRepo(_Repository):
    get = _Bound(_deliveries.get_delivery_sync)
    for_request = _Bound(_deliveries.deliveries_for_request_sync)
    queue_sms = _Bound(_deliveries.queue_sms_sync)
    queue_email = _Bound(_deliveries.queue_email_sync)
    finish_email = _Bound(_deliveries.finish_email_sync)


class HistoryRepo(_Repository):
    collect = _Bound(_history.collect_history_sync)
    create = _Bound(_history.create_history_request_sync)
    mark_produced = _Bound(_history.mark_history_produced_sync)
    get = _Bound(_history.get_history_request_sync)


class LookupsRepo(_Repository):
    find_calls = _Bound(_lookups.find_calls_sync)
    active_holds = _Bound(_lookups.active_holds_for_call_sync)
    open_request_ids = _Bound(_lookups.open_request_ids_sync)
    deletion_receipt = _Bound(_lookups.deletion_receipt_sync)
    sms_for_protocol = _Bound(_lookups.sms_for_protocol_sync)


class ReportRepo(_Repository):
    rows = _Bound(_report.report_rows_sync)


class PagesRepo(_Repository):
    call_page = _Bound(_pages.call_page_sync)


class AuditRepo(_Repository):
    append = _Bound(_audit.append_sync)
    verify_chain = _Bound(_audit.verify_chain_sync)
    head = _Bound(_audit.head_sync)
    count = _Bound(_audit.count_sync)
    hash_of = _Bound(_audit.hash_of_sync)
    hashes_upto = _Bound(_audit.hashes_upto_sync)
    for_protocol = _Bound(_audit.for_protocol_sync)
    range = _Bound(_audit.range_sync)
    page = _Bound(_audit.page_sync)
    for_subject = _Bound(_audit.for_subject_sync)


class EvidenceRepo(_Repository):
    facts = _Bound(_evidence.facts_sync)
    insert = _Bound(_evidence.insert_sync)
    for_recording = _Bound(_evidence.for_recording_sync)
    finalised_batch = _Bound(_evidence.finalised_batch_sync)
    has_signed = _Bound(_evidence.has_signed_sync)
    unsigned_batch = _Bound(_evidence.unsigned_batch_sync)
    finalised_entries = _Bound(_evidence.finalised_entries_sync)
    insert_sealed_late = _Bound(_evidence.insert_sealed_late_sync)


class HoldsRepo(_Repository):
    place = _Bound(_holds.place_hold_sync)
    release = _Bound(_holds.release_hold_sync)
    list = _Bound(_holds.list_holds_sync)


class KeysRepo(_Repository):
    held = _Bound(_keys.recording_held_sync)
    record_rewrap = _Bound(_keys.record_rewrap_sync)
    recordings_per_key = _Bound(_keys.recordings_per_key_sync)
    audit = _Bound(_keys.audit_key_sync)


class WebAuthRepo(_Repository):
    create_user = _Bound(_webauth.create_user_sync)
    get_user = _Bound(_webauth.get_user_sync)
    list_users = _Bound(_webauth.list_users_sync)
    disable_user = _Bound(_webauth.disable_user_sync)
    set_password = _Bound(_webauth.set_password_sync)
    set_locale = _Bound(_webauth.set_locale_sync)
    create_session = _Bound(_webauth.create_session_sync)
    get_session = _Bound(_webauth.get_session_sync)
    end_session = _Bound(_webauth.end_session_sync)
    begin_login = _Bound(_webauth.begin_login_sync)
    login_failed = _Bound(_webauth.login_failed_sync)
    login_succeeded = _Bound(_webauth.login_succeeded_sync)
    prune_failures = _Bound(_webauth.prune_failures_sync)


class CallbacksRepo(_Repository):
    schedule_manual = _Bound(_callbacks.schedule_manual_sync)
    cancel = _Bound(_callbacks.cancel_sync)
    get = _Bound(_callbacks.get_sync)
    get_for_call = _Bound(_callbacks.get_for_call_sync)
    list = _Bound(_callbacks.list_sync)
    attempts = _Bound(_callbacks.attempts_sync)


class SyncDatabase:
    """One sync connection and the repositories that use it.

    Open one with :meth:`open` (or :func:`storage.open_sync` from the config);
    :meth:`Database.run_sync` and the web pool hand one to a function running on
    their thread.  Not thread-safe: one thread at a time, as sqlite3 itself.
    """

    def __init__(self, conn: sqlite3.Connection, *, owned: bool = False) -> None:
        self._conn = conn
        self._owned = owned
        self.calls = CallsRepo(conn)
        self.recordings = RecordingsRepo(conn)
        self.requests = RequestsRepo(conn)
        self.exports = ExportsRepo(conn)
        self.links = LinksRepo(conn)
        self.deliveries = DeliveriesRepo(conn)
        self.history = HistoryRepo(conn)
        self.lookups = LookupsRepo(conn)
        self.pages = PagesRepo(conn)
        self.report = ReportRepo(conn)
        self.audit = AuditRepo(conn)
        self.evidence = EvidenceRepo(conn)
        self.holds = HoldsRepo(conn)
        self.keys = KeysRepo(conn)
        self.webauth = WebAuthRepo(conn)
        self.callbacks = CallbacksRepo(conn)

    @property
    def engine(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        from .dialect import dialect_of

        return dialect_of(self._conn).name

    @classmethod
    def open(cls, path: str | os.PathLike[str], **options: Any) -> SyncDatabase:
        """Open (creating and migrating) like :func:`storage.connect_sync`; close it when done."""
        from .db import connect_sync

        return cls(connect_sync(path, **options), owned=True)

    @classmethod
    def wrap(cls, handle: SyncDatabase | sqlite3.Connection) -> SyncDatabase:
        """``handle`` itself, or a handle over a connection opened by storage
        (:func:`storage.connect_sync`; tests and storage-internal code)."""
        return handle if isinstance(handle, SyncDatabase) else cls(handle)

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SyncDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._owned:
            self.close()
