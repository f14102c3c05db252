"""Several ``callproof run`` instances on one Asterisk: claiming new calls, and taking over
the calls of an instance that died (docs/scale-out.md#two-applications-per-node).

The design, and why:

* **One ARI application per instance** (``<[ari] app>_<[ari] instance>``).  Asterisk lets one
  WebSocket hold an application name: a second one with the same name *replaces* the first
  (``ApplicationReplaced``), it does not share it; so two live instances need two names.
* **New calls: StasisBroadcast() with claims** (Asterisk 20.17 / 22.7 / 23.1).  The dialplan
  offers each call to every application matching ``^<app>_[a-zA-Z0-9]+$`` (a CallBroadcast
  event); each live instance claims it (``POST /events/claim``) and Asterisk gives it to the
  first claim, exactly as ``Stasis(winner)`` would.  A dead instance simply does not claim:
  there is nothing to detect before new calls go to the survivor, so failover of new calls
  takes one claim round trip, not a lease expiry.  Nobody claiming within the timeout
  (every instance down) sends the call to the AGI fallback, as ``Stasis()`` failing did.
  (The alternative, a dialplan list of application names tried in turn, needs the list kept
  in step with the instances and spreads nothing; asking AMI/``ari show apps`` which one is
  up adds a round trip and a race.)
* **Calls in flight on a dead instance.**  Asterisk keeps them in Stasis of its (now
  inactive) application, the current playback going on.  Each instance holds a lease on its
  application in storage (``ari_leases``), renewed every ``[ari] heartbeat_seconds``.  When
  a lease is not renewed for ``[ari] lease_seconds`` a survivor takes it over with one
  conditional UPDATE (exactly one of several survivors wins it), moves each of the dead
  application's channels into its own (``POST /channels/{id}/move``: Asterisk moves it once
  its current playback has finished, and the survivor's StasisStart resumes the call from its
  stored step, exactly as after a reconnect: callproof/callflow/resume.py), records each move
  (``ari_takeovers``, ``calls.ari_app``), takes over the watch of the dead instance's handed-off
  calls (their hang-up completes them, their recording is finalised), and releases the lease.
  Re-registering the dead application's name instead would make it "live" again and make the
  restarted instance fight the survivor for it (ApplicationReplaced both ways).
* **Not robbing a slow instance.**  The lease outlasts several heartbeats (validated: at least
  3; default 2 s / 10 s): an instance is taken over only after ~5 missed beats, i.e. its event
  loop or its storage stalled for 10 s.  An instance that finds, at its next beat, that its
  lease was taken over stops its flows at once (as after an ARI drop) and registers again
  once the survivor has released the lease.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from callproof.callflow.decisions import iso
from callproof.config import Config
from callproof.logs import event
from callproof.store import node_name

from .ari import AriError, AriSession, ChannelGone

log = logging.getLogger("callproof.app")


class Instances:
    """This instance's lease, its heartbeat, and the takeover of dead instances' calls."""

    def __init__(self, config: Config, db: Any, clock: Callable[[], datetime], *,
                 session: Callable[[], AriSession | None], connected: asyncio.Event,
                 on_lost: Callable[[], Awaitable[None]],
                 on_taken_over: Callable[[str, set[str]], Awaitable[None]]):
        ari = config.ari
        self.db, self.clock = db, clock
        self.app = ari.registered_app  # our application, and our name as a lease holder
        self.node = node_name(config)  # we take over only our node's instances: they drive our Asterisk
        self.heartbeat_seconds, self.lease_seconds = ari.heartbeat_seconds, ari.lease_seconds
        self._group = re.compile(rf"{re.escape(ari.app)}_[A-Za-z0-9]+")  # as the dialplan's filter
        self._session, self._connected = session, connected
        self._on_lost, self._on_taken_over = on_lost, on_taken_over
        self.owned = False
        self.claims: dict[str, int] = {"won": 0, "lost": 0}

    def _now_until(self) -> tuple[str, str]:
        now = self.clock()
        return iso(now), iso(now + timedelta(seconds=self.lease_seconds))

    # ------------------------------------------------------------- own lease
    async def acquire_own(self) -> None:
        """Hold our application's lease before registering it: at once, unless a survivor is
        still moving our calls (after we were taken over): then on a later heartbeat."""
        waiting = False
        while not self.owned:
            now, until = self._now_until()
            lease = await self.db.ari_leases.acquire_own(self.app, self.app, now, until, self.node)
            if lease is not None:
                self.owned = True
                event(log, "ari.lease_acquired", app=self.app, generation=lease.generation)
                return
            if not waiting:
                held = await self.db.ari_leases.get(self.app)
                event(log, "ari.lease_wait", logging.WARNING, app=self.app,
                      holder=held.holder if held is not None else None)
                waiting = True
            await asyncio.sleep(self.heartbeat_seconds)

    async def run(self) -> None:
        """The heartbeat: renew our leases, notice we lost ours, take over dead instances."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # storage or ARI away: the next beat tries again
                event(log, "ari.heartbeat_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}"[:300])

    async def beat(self) -> None:
        now, until = self._now_until()
        held = await self.db.ari_leases.renew(self.app, now, until)
        if self.owned and self.app not in held:
            self.owned = False
            event(log, "ari.lease_lost", logging.ERROR, app=self.app,
                  hint="this instance did not renew its lease in time; a survivor took its calls over")
            await self._on_lost()
        if not self.owned or not self._connected.is_set():
            return  # never take over calls we could not drive
        for lease in await self.db.ari_leases.expired(now, self.node):
            if lease.app == self.app or not self._group.fullmatch(lease.app):
                continue
            if await self.db.ari_leases.take_over(lease, self.app, now, until):
                await self.take_over(lease.app, lease.holder)

    async def give_up(self) -> None:
        """A clean stop: our lease ends now, so a survivor takes over our calls at its next
        heartbeat instead of after a whole lease."""
        if self.owned:
            self.owned = False
            await self.db.ari_leases.expire(self.app, self.app, iso(self.clock() - timedelta(seconds=1)))

    # ------------------------------------------------------------- takeover
    async def take_over(self, dead_app: str, holder: str) -> None:
        """We won the expired lease of ``dead_app``: move its calls into our application."""
        session = self._session()
        assert session is not None
        channel_ids = await session.application_channel_ids(dead_app)
        event(log, "ari.takeover", logging.WARNING, app=self.app, dead_app=dead_app, holder=holder,
              channels=len(channel_ids))
        moved: set[str] = set()
        try:
            for channel_id in channel_ids:
                outcome, detail = "moved", None
                try:
                    await session.move(channel_id, self.app)
                    moved.add(channel_id)
                except ChannelGone as exc:  # hung up meanwhile: the settle below ends its row
                    outcome, detail = "gone", str(exc)[:200]
                except AriError as exc:
                    outcome, detail = "failed", str(exc)[:200]
                await self.db.ari_leases.record_takeover(channel_id, dead_app, self.app, iso(self.clock()),
                                                         outcome, detail)
                event(log, "call.taken_over", channel=channel_id, dead_app=dead_app, outcome=outcome)
            await self._on_taken_over(dead_app, set(channel_ids))  # (one not moved stays as it is)
        finally:
            await self.db.ari_leases.release(dead_app, self.app, iso(self.clock()))

    # ------------------------------------------------------------- claims
    async def claim(self, session: AriSession, channel_id: str) -> None:
        """A CallBroadcast: claim the call (the first instance to claim it gets it)."""
        try:
            won = await session.claim(channel_id)
        except Exception as exc:  # link lost: another instance claims it, or the fallback runs
            event(log, "call.claim_failed", logging.WARNING, channel=channel_id, error=type(exc).__name__)
            return
        self.claims["won" if won else "lost"] += 1
