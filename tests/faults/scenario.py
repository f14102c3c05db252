"""Calls through the sandbox Asterisk while a link of the application is cut at random.

:func:`run_cuts` runs a callproof application (in this event loop) whose ARI or AMI
connection goes through a :class:`~.tcp_proxy.TcpProxy`, places calls spread over a few
seconds, cuts the link several times at seeded random moments, waits for every call to
end, and reports per call what the caller heard (Asterisk's own verbose log: every file
it played on the call's channel) next to what the rows say.  It uses only what the
application has had from the start (rows, recordings, the console log), so
bench/bench_faults.py can measure the code before a change with it too.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from callproof.ari_app.app import Application
from callproof.demo import load_sandbox_config, write_config
from callproof.sandbox import SandboxError, ari_request, originate_call

from .tcp_proxy import TcpProxy

FINAL = {"completed", "abandoned_in_consent", "abandoned_in_protocol", "failed"}
_PLAYING = re.compile(r"<(?P<chan>[^>]+)> Playing '(?P<file>[^']+)'")
# Flow log events that say a playback was requested again (its first request unacknowledged).
RESTART_EVENTS = {"consent.restarted", "protocol.reading_restarted"}


class _Events(logging.Handler):
    """Keeps the flow's named log events with their channel."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[tuple[str, str]] = []
        self.trails: dict[str, list[str]] = {}  # channel -> its events with their fields, in order

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", None) or {}
        channel = str(fields.get("channel", ""))
        self.seen.append((record.getMessage(), channel))
        if channel:
            detail = " ".join(f"{k}={v}" for k, v in fields.items() if k != "channel")
            self.trails.setdefault(channel, []).append(f"{record.getMessage()} {detail}".strip())


class FaultApp(Application):
    """The real application, noting each channel's name and when resumed flows start."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.names: dict[str, str] = {}
        self.resumed_at: dict[str, list[float]] = {}

    def _start_flow(self, start_event: dict[str, Any]) -> None:
        channel = start_event["channel"]
        self.names.setdefault(channel["id"], channel.get("name", ""))
        if start_event.get("resumed") and channel["id"] not in self.tasks:
            self.resumed_at.setdefault(channel["id"], []).append(time.monotonic())
        super()._start_flow(start_event)


@dataclass
class CallReport:
    channel_id: str
    status: str | None
    consent_plays: int
    reading_plays: int
    read_count: int
    restarts: int
    recordings: int
    recordings_not_final: int
    order_ok: bool
    heard_order_ok: bool
    problems: list[str] = field(default_factory=list)
    trail: list[str] = field(default_factory=list)  # its log events, for a call with problems


@dataclass
class CutsReport:
    seed: int
    link: str
    calls: list[CallReport]
    cuts: list[tuple[float, float]]
    resume_s: list[float]

    def summary(self) -> dict[str, Any]:
        calls = self.calls
        return {
            "link": self.link, "seed": self.seed, "calls": len(calls),
            "cuts": [round(b - a, 1) for a, b in self.cuts],
            "calls_affected": sum(1 for c in calls if c.problems),
            "max_announcements_per_caller": max((c.consent_plays for c in calls), default=0),
            "callers_hearing_announcement_more_than_once": sum(1 for c in calls if c.consent_plays > 1),
            "max_readings_heard": max((c.reading_plays for c in calls), default=0),
            "readings_heard_minus_counted_max": max((c.reading_plays - c.read_count for c in calls), default=0),
            "recording_rows_not_final": sum(c.recordings_not_final for c in calls),
            "calls_with_not_one_recording": sum(1 for c in calls if c.recordings != 1),
            "failed": sum(1 for c in calls if c.status == "failed"),
            "evidence_out_of_order": sum(1 for c in calls if not c.order_ok),
            "statuses": sorted({str(c.status) for c in calls}),
            "link_back_to_resumed_s_max": round(max(self.resume_s, default=0.0), 2),
            "link_back_to_resumed_s_median": round(sorted(self.resume_s)[len(self.resume_s) // 2], 2)
            if self.resume_s else 0.0,
        }


def heard(sandbox: Any, channel_name: str) -> list[str]:
    """The prompt names Asterisk played on ``channel_name``, in order (digits as 'd', no pauses)."""
    out = []
    for line in sandbox.console_log.read_text(errors="replace").splitlines():
        m = _PLAYING.search(line)
        if m and m["chan"] == channel_name:
            name = Path(m["file"]).name.rsplit(".", 1)[0]
            if name != "pause":
                out.append("d" if name.isdigit() else name)
    return out


async def _channel_gone(sandbox: Any, channel_id: str) -> bool:
    try:
        await asyncio.to_thread(ari_request, sandbox, "GET", f"channels/{channel_id}")
    except SandboxError:
        return True
    return False


async def run_cuts(sandbox: Any, run_dir: Path, prompts_dir: Path, *, app_name: str, seed: int,
                   calls: int = 20, cuts: int = 8, cut_seconds: tuple[float, float] = (1.0, 5.0),
                   spread_seconds: float = 8.0, link: str = "ari", readings: int = 2,
                   first_cut_after: float = 0.0, log: Any = print,
                   **extra: dict[str, Any]) -> CutsReport:
    """Place ``calls`` calls over ``spread_seconds``, then cut ``link`` ('ari' or 'ami')
    ``cuts`` times, at seeded random moments, for ``cut_seconds`` each, while they run
    (their steps are staggered by the spread: the cuts meet calls in every step).
    ``first_cut_after``: seconds from the last call placed to the first cut (AMI matters
    from the recording on: ~30 s into a call).  ``extra``: more of the application's
    configuration (``storage={"url": ...}`` for PostgreSQL, ``protocol_reading``, ``prompts``)."""
    rng = random.Random(seed)
    if link == "ari":
        target = urlparse(sandbox.ari_url)
        proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 8088).start()
        sections: dict[str, dict[str, Any]] = {"ari": {"app": app_name, "url": proxy.url}}
    else:
        proxy = await TcpProxy(sandbox.ami_host, sandbox.ami_port).start()
        sections = {"ari": {"app": app_name}, "ami": {"host": proxy.host, "port": proxy.port}}
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, table in extra.items():
        sections.setdefault(name, {}).update(table)
    config = load_sandbox_config(write_config(sandbox, run_dir, prompts_dir, **sections))
    events = _Events()
    flow_log = logging.getLogger("callproof")  # the flow's and the application's events
    flow_log.addHandler(events)
    old_level = flow_log.level
    flow_log.setLevel(logging.INFO)
    app = FaultApp(config)
    await app.start()
    runner = asyncio.ensure_future(app.run())
    placed: list[dict[str, Any]] = []
    resume_s: list[float] = []
    try:
        await asyncio.wait_for(app.connected.wait(), 20)

        async def place_all() -> None:
            for i in range(calls):
                caller = f"1198765{4000 + i:04d}"
                placed.append(await asyncio.to_thread(
                    originate_call, sandbox, caller, max_seconds=150, variables={"CALLPROOF_APP": app_name}))
                await asyncio.sleep(spread_seconds / calls)

        async def cut_some() -> None:
            await asyncio.sleep(first_cut_after)
            for _ in range(cuts):
                await asyncio.sleep(rng.uniform(0.3, 3.0))
                seconds = rng.uniform(*cut_seconds)
                log(f"cut {link} for {seconds:.1f} s")
                await proxy.cut(seconds)
                back = time.monotonic()
                if link == "ari":
                    await asyncio.wait_for(app.connected.wait(), 30)
                    await asyncio.sleep(1.0)
                    for starts in app.resumed_at.values():
                        later = [t - back for t in starts if t >= back]
                        if later:
                            resume_s.append(min(later))

        # Every call is in Stasis before the first cut: a call that arrives while the
        # application is away is another fault (the dialplan's fallback), not a resume.
        await place_all()
        arrived = time.monotonic() + 15
        while len(app.names) < calls and time.monotonic() < arrived:
            await asyncio.sleep(0.1)
        await cut_some()
        deadline = time.monotonic() + 150
        for ch in placed:
            while not await _channel_gone(sandbox, ch["id"]) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
        if app.recorder is not None:
            await app.recorder.drain()
        reports = await _analyse(app, sandbox, placed, events, readings, deadline=time.monotonic() + 20)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await app.stop()
        await proxy.close()
        flow_log.removeHandler(events)
        flow_log.setLevel(old_level)
    return CutsReport(seed=seed, link=link, calls=reports, cuts=proxy.cuts, resume_s=resume_s)


async def _analyse(app: FaultApp, sandbox: Any, placed: list[dict[str, Any]], events: _Events,
                   readings: int, deadline: float) -> list[CallReport]:
    db = app.db
    by_prefix = {name.rsplit(";", 1)[0]: cid for cid, name in app.names.items()}
    reports = []
    for ch in placed:
        prefix = ch["name"].rsplit(";", 1)[0]
        channel_id = by_prefix.get(prefix)
        if channel_id is None:
            reports.append(CallReport("", None, 0, 0, 0, 0, 0, 0, False, False, ["never reached callproof"]))
            continue
        row = await db.calls.get_by_channel(channel_id)
        recs: list[Any] = []
        while row is not None:  # read at least once, even when an earlier call used up the wait
            recs = await db.recordings.for_call(row["id"])
            settled = row["status"] in FINAL and all(r["state"] != "recording" for r in recs)
            if settled or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
            row = await db.calls.get_by_channel(channel_id)
        reports.append(await _one(db, sandbox, app.names[channel_id], channel_id, row, recs, events, readings))
    return reports


async def _one(db: Any, sandbox: Any, name: str, channel_id: str, row: Any, recs: list[Any],
               events: _Events, readings: int) -> CallReport:
    plays = heard(sandbox, name)
    consent, reading = plays.count("consent"), plays.count("protocol-is")
    restarts = sum(1 for what, ch in events.seen if ch == channel_id and what in RESTART_EVENTS)
    problems: list[str] = []
    if row is None:
        return CallReport(channel_id, None, consent, reading, 0, restarts, 0, 0, False, False, ["no call row"])
    status, count = row["status"], row["protocol_read_count"]
    allocated = None
    if row["protocol"]:
        allocated = (await db.protocols.get(row["protocol"]) or {}).get("allocated_at")
    times = [row["consent_started_at"], row["consent_finished_at"], allocated,
             row["protocol_read_finished_at"], row["recording_started_at"]]
    present = [t for t in times if t]
    order_ok = present == sorted(present)
    first_reading = plays.index("protocol-is") if "protocol-is" in plays else len(plays)
    heard_order_ok = "consent" not in plays[first_reading:]
    not_final = sum(1 for r in recs if r["state"] == "recording")
    if status not in ("completed", "handed_off"):
        problems.append(f"status {status}")
    if consent < 1 or consent > 1 + restarts:
        problems.append(f"announcement heard {consent} times ({restarts} unacknowledged requests)")
    if count != readings:
        problems.append(f"protocol_read_count {count}, configured {readings}")
    if reading > count + restarts:
        problems.append(f"reading started {reading} times for {count} counted ({restarts} unacknowledged)")
    if len(recs) != 1:
        problems.append(f"{len(recs)} recording rows")
    if not_final or any(r["state"] != "finalised" or not r["sha256"] for r in recs):
        problems.append(f"recording not finalised: {[r['state'] for r in recs]}")
    if not order_ok:
        problems.append(f"evidence out of order: {times}")
    if not heard_order_ok:
        problems.append("announcement heard after the protocol reading began")
    return CallReport(channel_id, status, consent, reading, count, restarts, len(recs), not_final, order_ok,
                      heard_order_ok, problems, events.trails.get(channel_id, []) if problems else [])
