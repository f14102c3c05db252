"""The single-run lock the retention sweep and ``recording encrypt`` share: a second run is
refused naming the holder and the lock file; a holder that died (SIGKILL) leaves nothing in
the way; the lock file is never readable by others."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from callproof.encryption.migration import MigrationLocked, migration_lock
from callproof.retention import SweepLocked, sweep_lock
from callproof.single_run import AlreadyRunning, single_run_lock

HOLD = """
import sys, time
from pathlib import Path
from callproof.single_run import single_run_lock
with single_run_lock(Path(sys.argv[1]), "test run"):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_run_is_refused_naming_the_holder_and_the_file(tmp_path: Path) -> None:
    lock = tmp_path / "run.lock"
    with single_run_lock(lock, "nightly job"):
        with pytest.raises(AlreadyRunning) as refused, single_run_lock(lock, "nightly job"):
            pass
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    text = str(refused.value)
    assert text.startswith("another nightly job is running (pid ") and f"pid {os.getpid()} on " in text
    assert text.endswith(f"lock file {lock}")
    with single_run_lock(lock, "nightly job"):  # released: the next run takes it
        pass


def test_the_sweep_and_the_migration_keep_their_own_errors_and_wording(tmp_path: Path) -> None:
    with sweep_lock(tmp_path / "s.lock"), pytest.raises(SweepLocked, match="another retention sweep is running"), \
            sweep_lock(tmp_path / "s.lock"):
        pass
    with migration_lock(tmp_path / "m.lock"), \
            pytest.raises(MigrationLocked, match="another 'recording encrypt' is running"), \
            migration_lock(tmp_path / "m.lock"):
        pass


def test_a_killed_holder_leaves_nothing_in_the_way(tmp_path: Path) -> None:
    lock = tmp_path / "run.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(AlreadyRunning, match=f"pid {holder.pid} on "), single_run_lock(lock, "test run"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with single_run_lock(lock, "test run"):
        assert lock.read_text().startswith(f"pid {os.getpid()} on ")
