"""Retention: the policy (:mod:`.policy`: which class a recording gets, until
when), the sweeper that enforces it (:mod:`.sweeper`, with its scans and
record passes), its file-system side (:mod:`.files`: safe unlinks, the lock)
and the glue for the CLI and ``callproof run`` (:mod:`.run`, :mod:`.summary`).
The sweeper's SQL is :mod:`callproof.storage.retention`."""

from .files import SafeTree, SweepLocked, SweepLockLost, UnsafePath, sweep_lock
from .policy import RetentionChoice, add_calendar_days, choose_class, retention_until
from .run import lock_path, periodic_sweep, run_sweep
from .summary import SweepSummary, json_line, print_summary
from .sweeper import ACTOR, EXIT_LOCKED, UNLINK_THREADS, Sweeper

__all__ = [
    "ACTOR",
    "EXIT_LOCKED",
    "UNLINK_THREADS",
    "RetentionChoice",
    "SafeTree",
    "SweepLockLost",
    "SweepLocked",
    "SweepSummary",
    "Sweeper",
    "UnsafePath",
    "add_calendar_days",
    "choose_class",
    "json_line",
    "lock_path",
    "periodic_sweep",
    "print_summary",
    "retention_until",
    "run_sweep",
    "sweep_lock",
]
