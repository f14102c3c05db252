"""Checks on the set-up around the service: the SMS backend, the retention timer, the
secrets the web page and customer requests need."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from callproof.config import Config

from .report import Result, fail, ok, warn

RETENTION_TIMER = "callproof-retention.timer"
RETENTION_CRON = Path("/etc/cron.d/callproof-retention")
SYSTEMD_RUNNING = Path("/run/systemd/system")


def check_sms_backend(config: Config) -> Result:
    if config.sms.backend == "log":
        return warn("sms", "[sms] backend is 'log': no SMS is sent, each is only logged (state 'logged')",
                    "set [sms] backend = smpp, http or sip and its [sms.*] table (docs/sms.md)")
    return ok("sms", f"[sms] backend {config.sms.backend!r}")


def check_retention(config: Config, *, systemd: Path = SYSTEMD_RUNNING, cron: Path = RETENTION_CRON) -> Result:
    """Something deletes expired recordings: the timer, the cron file, or ``sweep_in_run``."""
    if config.retention.sweep_in_run:
        return ok("retention", "[retention] sweep_in_run: callproof run sweeps every "
                               f"{config.retention.sweep_interval_seconds:.0f} s")
    systemctl = shutil.which("systemctl")
    if systemctl and systemd.is_dir():
        state = subprocess.run([systemctl, "is-active", RETENTION_TIMER], capture_output=True, text=True,
                               timeout=30).stdout.strip() or "unknown"
        if state == "active":
            return ok("retention", f"{RETENTION_TIMER} active")
        return fail("retention", f"{RETENTION_TIMER} is {state}: expired recordings are never deleted",
                    f"systemctl enable --now {RETENTION_TIMER}")
    if cron.is_file():
        return ok("retention", f"cron file {cron}")
    return warn("retention", f"cannot tell whether the sweep runs (no systemd here, no {cron})",
                "install deploy/callproof-retention.cron as /etc/cron.d/callproof-retention, or set "
                "[retention] sweep_in_run = true")


def check_web_secrets(config: Config) -> Result:
    """The keys the web page and customer requests need ([rights] identity_key, link_secret)."""
    missing = [key for key in ("identity_key", "link_secret") if not getattr(config.rights, key)]
    if missing:
        names = ", ".join(f"CALLPROOF_RIGHTS_{k.upper()}" for k in missing)
        return warn("web-secrets", f"[rights] {', '.join(missing)} not set: the web page and customer "
                                   "requests cannot start", f"put {names} (32+ random characters: "
                                   "openssl rand -hex 32) in the secrets file")
    return ok("web-secrets", "[rights] identity_key and link_secret set")
