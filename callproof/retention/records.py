"""The sweeper's passes over records rather than recordings: LGPD
minimisation of old call records, and the copies of recordings exported for
customer requests."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .files import SafeTree, UnsafePath
from .policy import add_calendar_days
from .summary import SweepSummary

if TYPE_CHECKING:
    from .sweeper import Sweeper

ANONYMISED_FIELDS = ["caller_number_raw", "caller_number", "caller_name"]


def anonymise_calls(sw: Sweeper, s: SweepSummary, dry_run: bool) -> None:
    """LGPD minimisation of call records older than call_record_days:
    caller number/name erased; protocol, times, statuses and counts stay."""
    now = sw.clock()
    grace_cutoff = sw.grace_cutoff(now)
    cutoff = add_calendar_days(now, -sw.call_record_days, sw.tz)
    last = 0
    while True:
        sw.check_lock()
        rows = sw.store.aged_calls(last, sw.batch_size, cutoff, grace_cutoff)
        if not rows or sw.stop.is_set():
            return
        last = rows[-1].id
        todo = []
        for call in rows:
            if call.held:
                s.calls_held += 1
            else:
                todo.append(call)
                sw.report({"action": "would_anonymise" if dry_run else "anonymised",
                           "call_id": call.id, "protocol": call.protocol})
        if dry_run or not todo:
            if dry_run:
                s.calls_anonymised += len(todo)
            continue
        at = sw.clock()
        with sw.store.write() as tx:
            for call in todo:
                if tx.anonymise_call(call.id, at):
                    tx.audit("call.anonymised", sw.actor, at, protocol=call.protocol,
                             subject=f"call:{call.id}",
                             details={"fields": list(ANONYMISED_FIELDS),
                                      "policy_days": sw.call_record_days, "run": s.run_id})
                    s.calls_anonymised += 1


def expire_exports(sw: Sweeper, s: SweepSummary, dry_run: bool) -> None:
    """An export is a copy of a recording made for one request: it goes once
    that request has been closed for the grace period and no download link
    to it is still usable, or as soon as its recording was deleted.  Unlink
    first (never following a symlink, never outside ``export_dir``), then
    record ``deleted_at`` + audit in one transaction; a run killed between
    the two finds the file gone next time and records it then."""
    if sw.export_dir is None or not sw.export_dir.is_dir():
        return
    now = sw.clock()
    grace_cutoff = sw.grace_cutoff(now)
    last = 0
    tree = SafeTree(sw.export_dir)
    try:
        while not sw.stop.is_set():
            sw.check_lock()
            rows = sw.store.expired_exports(last, sw.batch_size, now, grace_cutoff)
            if not rows:
                return
            last = rows[-1].id
            done = []
            for export in rows:
                sw.report({"action": "would_delete_export" if dry_run else "export_deleted",
                           "export_id": export.id, "protocol": export.protocol})
                if dry_run:
                    s.exports_deleted += 1
                    continue
                try:
                    # exports are flat files in export_dir (callproof/rights/export.py)
                    folder, name = os.path.split(export.path)
                    if os.path.realpath(folder) != tree.root:
                        raise UnsafePath(f"not in rights.export_dir {sw.export_dir}")
                    size = tree.unlink(f"{tree.root}/{name}")
                except FileNotFoundError:
                    size = 0
                except (UnsafePath, OSError) as exc:
                    s.error(f"export {export.id}: {exc}")
                    continue
                done.append((export, size))
            if done:
                at = sw.clock()
                with sw.store.write() as tx:
                    for export, size in done:
                        if tx.set_export_deleted(export.id, at):
                            tx.audit("export.deleted", sw.actor, at, protocol=export.protocol,
                                     subject=f"export:{export.id}",
                                     details={"request_id": export.request_id, "bytes": size,
                                              "run": s.run_id})
                            s.exports_deleted += 1
                            s.bytes_freed += size
    finally:
        tree.close()
