"""The sweeper's scans: live rows whose file is gone (flagged 'missing',
audited) and files with no live row (orphans: reported, optionally moved to
the quarantine folder, never deleted).  Symlinks are reported, not followed."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from callproof.storage.retention import LiveRecording

from .files import SafeTree, UnsafePath
from .summary import SweepSummary

if TYPE_CHECKING:
    from .sweeper import Sweeper


def scan_missing(sw: Sweeper, tree: SafeTree, s: SweepSummary, dry_run: bool) -> None:
    """Live rows ('finalised') whose file is gone: flag 'missing', audited."""
    last = 0
    while True:
        rows = sw.store.live(last, sw.batch_size)
        if not rows or sw.stop.is_set():
            return
        last = rows[-1].id
        gone: list[LiveRecording] = []
        for row in rows:
            try:
                tree.lstat(row.path)
            except FileNotFoundError:
                gone.append(row)
            except (UnsafePath, OSError):
                continue  # reported by the sweep when it expires
        if not gone:
            continue
        for row in gone:
            sw.report({"action": "missing", "id": row.id, "protocol": row.protocol, "path": row.path})
        if dry_run:
            s.missing += len(gone)
            continue
        at = sw.clock()
        with sw.store.write() as tx:
            for row in gone:
                if tx.set_not_found(row.id):
                    tx.audit("recording.missing", sw.actor, at, protocol=row.protocol,
                             subject=f"recording:{row.id}",
                             details={"path": row.path, "sha256": row.sha256, "policy": row.retention_class,
                                      "retention_until": row.retention_until, "run": s.run_id})
                    s.missing += 1


def scan_orphans(sw: Sweeper, tree: SafeTree, s: SweepSummary, dry_run: bool) -> None:
    """Files under the root with no live row: reported (optionally moved to
    the quarantine folder), never deleted.  Symlinks are reported, not followed."""
    root = tree.root
    quarantine = os.path.realpath(sw.quarantine_dir) if sw.quarantine_dir else None
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        if sw.stop.is_set():
            return
        if quarantine and (dirpath == quarantine or dirpath.startswith(quarantine + "/")):
            dirnames[:] = []
            continue
        for name in list(dirnames):
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                s.symlinks += 1
                sw.report({"action": "symlink", "path": full})
        for name in filenames:
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                s.symlinks += 1
                sw.report({"action": "symlink", "path": full})
                continue
            state = sw.store.state_of_path(full)
            if state is not None and state != "deleted":
                continue
            s.orphans += 1
            if quarantine and not dry_run and stat.S_ISREG(st.st_mode):
                dest = os.path.join(quarantine, os.path.relpath(full, root))
                try:
                    os.makedirs(os.path.dirname(dest), mode=0o750, exist_ok=True)
                    os.rename(full, dest)  # same file system expected (documented)
                except OSError as e:
                    s.error(f"orphan {full}: cannot quarantine: {e}")
                    continue
                with sw.store.write() as tx:
                    tx.audit("recording.orphan_quarantined", sw.actor, sw.clock(), subject=full,
                             details={"to": dest, "size_bytes": st.st_size, "run": s.run_id})
                s.quarantined += 1
                sw.report({"action": "quarantined", "path": full, "to": dest})
            else:
                sw.report({"action": "orphan", "path": full, "size_bytes": st.st_size})
