"""Checks on the shared recordings store (``[recording] store``, docs/scale-out.md): the folder
is the mounted store (its marker file), the service user may write it, its file system takes
hard links (the mover links a verified copy into place), and this node's recordings reach it
(how many wait, the oldest's age, the last move error)."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

from callproof.config import Config

from .access import Who
from .checks_files import _writable_folder
from .report import Result, fail, ok, warn

_INIT = "callproof recording move --init"


def check_store(config: Config, user: Who, *, now: datetime | None = None) -> list[Result]:
    """Nothing when ``[recording] store`` is not set."""
    store = config.recording.store
    if store is None:
        return []
    store = Path(store)
    if not store.is_dir():
        return [fail("store", f"recordings store {store} does not exist",
                     f"mount the shared file system at {store} (the same place on every node), then {_INIT}"
                     " once if it is new")]
    from callproof.store.mover import MARKER

    mounted = os.path.ismount(store)
    if not (store / MARKER).is_file():
        fix = (f"{_INIT} once (a new store: writes {MARKER})" if mounted else
               f"mount the shared file system at {store}; a new store: {_INIT} once (writes {MARKER})")
        return [fail("store", f"{store} has no {MARKER}: {'a mount' if mounted else 'not a mount point'} the "
                              "mover will not write to (an empty mount point, or a store never initialised)", fix)]
    where = "a mount point" if mounted else "not a mount point itself"
    results = [ok("store", f"recordings store {store} ({where}, {MARKER} in it)"),
               _writable_folder("store-write", store, user, "recordings store"), check_hard_links(store)]
    results.extend(check_backlog(config, now=now))
    return results


def check_hard_links(store: Path) -> Result:
    """Link a temporary file to a second name in the store, then remove both."""
    name = f".callproof-doctor-{secrets.token_hex(6)}"
    first, second = store / f"{name}.part", store / f"{name}.link"
    try:
        fd = os.open(first, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
    except OSError as exc:
        return fail("store-links", f"cannot create a file in {store}: {exc.strerror}",
                    "mount the store read-write (and see store-write)")
    try:
        os.link(first, second)
    except OSError as exc:
        return fail("store-links", f"the store's file system refuses hard links ({exc.strerror}): the mover links"
                    " each verified copy into place", "use a file system with hard links (NFS, CephFS, GlusterFS,"
                    " a local one), not one without (some SMB/FUSE mounts)")
    finally:
        for path in (second, first):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    return ok("store-links", "hard links work in the store")


def check_backlog(config: Config, *, now: datetime | None = None) -> list[Result]:
    """This node's finished recordings not yet in the store: how many, the oldest's age, the errors."""
    from callproof.storage import connect_sync
    from callproof.storage.pg_url import is_postgres_url
    from callproof.storage.recording_store import backlog_sync
    from callproof.storage.timefmt import parse_db_time
    from callproof.store import LATE_INTERVALS, late_after_seconds, node_name

    st = config.storage
    if not is_postgres_url(os.fspath(st.target)) and not Path(st.target).exists():
        return [ok("store-backlog", "no database yet: nothing recorded to move")]
    node = node_name(config)
    try:
        conn = connect_sync(st.target, busy_timeout_ms=st.busy_timeout_ms, password=st.password)
        try:
            backlog = backlog_sync(conn, node)
        finally:
            conn.close()
    except Exception as exc:  # the database away: say so, the other checks still count
        return [warn("store-backlog", f"cannot read the recordings of node {node}: {type(exc).__name__}: {exc}"[:300],
                     "see the database check; callproof recording move retries by itself")]
    if not backlog.count:
        return [ok("store-backlog", f"every finished recording of node {node} is in the store")]
    now = now or datetime.now(UTC)
    age = (now - parse_db_time(backlog.oldest_finalised_at)).total_seconds() if backlog.oldest_finalised_at else 0.0
    late = late_after_seconds(config)
    detail = f"{backlog.count} finished recording(s) of node {node} only on this node, the oldest {_age(age)} old"
    results = []
    if age > late:
        results.append(warn("store-backlog", f"{detail} (over {LATE_INTERVALS} x move_interval_seconds)",
                            "is callproof run / fastagi running, or the store cron (deploy/callproof-store.cron)?"
                            " callproof recording move moves them now"))
    else:
        results.append(ok("store-backlog", detail))
    if backlog.errors:
        results.append(warn("store-moves", f"{backlog.errors} recording(s) of node {node} failed to move, the last:"
                                           f" {backlog.last_error}",
                            "fix what it says (store mounted, space, rights), then callproof recording move"))
    return results


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"
