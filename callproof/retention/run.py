"""Glue for ``callproof retention sweep`` and ``callproof run``: the lock file,
opening the database for a sweep, and the periodic sweep inside the app."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callproof.storage.retention import open_retention_store

from .files import SweepLocked, SweepLockLost, sweep_lock
from .summary import SweepSummary
from .sweeper import Clock, Report, Sweeper, utc_now

if TYPE_CHECKING:
    from callproof.config import Config


def lock_path(config: Config) -> Path:
    rt = config.retention
    if rt.lock_file is not None:
        return rt.lock_file
    db = Path(config.storage.database)
    return db.with_name(db.name + ".retention.lock")


def run_sweep(config: Config, *, dry_run: bool = False, scan: bool = True,
              report: Report | None = None,
              progress_total: Callable[[int], Callable[[int], Any] | None] | None = None,
              now: Clock = utc_now, stop: threading.Event | None = None) -> SweepSummary:
    """Take the lock, open the database, sweep.  Raises SweepLocked.

    The lock is this host's ``flock`` and, on PostgreSQL, the database's sweep lock (a session
    advisory lock): of several nodes whose timers fire at once one sweeps -- the shared store's
    recordings, its own local ones, the call records and exports -- and the others are refused
    (exit 75) until it is done; a node's own files not yet in the store wait for its next run."""
    from callproof.store import node_name

    with sweep_lock(lock_path(config)):
        store = open_retention_store(config.storage.target, busy_timeout_ms=config.storage.busy_timeout_ms,
                                     password=config.storage.password)
        try:
            taken, holder = store.try_sweep_lock()
            if taken is False:
                raise SweepLocked(f"another node's retention sweep holds the database's sweep lock"
                                  f" ({holder or 'holder unknown'})")
            sweeper = Sweeper(
                store, root=config.recording.root, tz=config.general.tz,
                classes=dict(config.retention.classes),
                call_record_days=config.retention.call_record_days,
                request_grace_days=config.retention.request_grace_days,
                batch_size=config.retention.batch_size,
                quarantine_dir=config.retention.quarantine_dir, now=now, report=report, stop=stop,
                export_dir=config.rights.export_dir, recordings_store=config.recording.store,
                node=node_name(config), guarded=taken is True)
            if progress_total is not None:
                sweeper.progress = progress_total(sweeper.count_expired()) or sweeper.progress
            summary = sweeper.sweep(dry_run=dry_run, scan=scan)
        finally:
            store.close()
        if not dry_run and config.encryption.enabled:
            shred_after_sweep(config, now(), summary)
        return summary


def shred_after_sweep(config: Config, now: datetime, summary: SweepSummary) -> None:
    """The retention run's key step, on the host that holds the private keys (a PBX host
    holds only public keys: it skips): create the period keys now due ahead, then destroy
    the private keys of periods that are over (callproof.encryption.shredding).  A failure
    is counted in the summary; the sweep's own work stands."""
    from callproof.encryption.keyring import KeyringError
    from callproof.encryption.keystore import top_up
    from callproof.encryption.shredding import destroy_expired
    from callproof.logs import event
    from callproof.storage import open_sync

    enc = config.encryption
    if not enc.private_keys_dir.exists():
        event(logging.getLogger("callproof.keys"), "keys.shred_skipped",
              reason="no private keys on this host: run 'callproof keys destroy-expired' on the key host")
        return
    try:
        created = top_up(enc.private_keys_dir, config.retention.classes, now, enc.months_ahead,
                         enc.destroy_margin_days)
        with open_sync(config) as db:
            if created:
                db.keys.audit("keys.created", "retention", now, details={
                    "keys": {k: i.recipient.fingerprint for k, i in created}})
            outcomes = destroy_expired(config, db, now=now, actor="retention")
        if created or any(o.result == "destroyed" for o in outcomes):
            from callproof.encryption.keystore import export_public
            export_public(enc.private_keys_dir, enc.public_keys_dir)
    except (KeyringError, OSError) as exc:
        summary.error(f"keys: {exc}")
        return
    for outcome in outcomes:
        summary.key_outcomes.append(outcome.describe())
        if outcome.result == "destroyed":
            summary.keys_destroyed += 1
        else:
            summary.keys_refused += 1


async def periodic_sweep(config: Config, *, first_delay: float = 60.0) -> None:
    """``[retention] sweep_in_run``: sweep every ``sweep_interval_seconds`` inside
    ``callproof run``, in a worker thread (own connection; the event loop never
    blocks).  Another sweeper (cron) holding the lock just means skip this turn.
    Cancelling stops the sweep at the next batch boundary (crash-safe anyway)."""
    from callproof.logs import event

    log = logging.getLogger("callproof.retention")
    stop = threading.Event()
    delay = first_delay
    try:
        while True:
            await asyncio.sleep(delay)
            delay = config.retention.sweep_interval_seconds
            try:
                summary = await asyncio.to_thread(run_sweep, config, stop=stop)
            except SweepLockLost as exc:
                event(log, "retention.sweep_lock_lost", logging.WARNING, reason=str(exc))
                continue
            except SweepLocked as exc:
                event(log, "retention.sweep_skipped", reason=str(exc))
                continue
            except Exception as exc:  # keep the app running; the next turn retries
                event(log, "retention.sweep_failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
                continue
            event(log, "retention.swept", **{k: v for k, v in summary.as_dict().items()
                                             if k != "error_samples"})
    finally:
        stop.set()
