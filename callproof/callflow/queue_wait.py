"""Time to agent: what happened after the hand-off, from Asterisk's queue events.

After the flow hands the call to the agents' context, the shipped dialplan (or the site's
own) puts it in a ``Queue()``.  Asterisk reports on AMI, for the caller's channel (its
uniqueid is ``calls.uniqueid``, whichever transport ran the flow):

* ``QueueCallerJoin``    the caller is waiting          -> ``calls.queue_joined_at``, ``queue_name``
* ``AgentConnect``       an agent answered              -> ``calls.agent_answered_at``
* ``QueueCallerAbandon`` the caller hung up waiting     -> ``calls.queue_abandoned_at``

The times are written once (storage/queue_wait.py), so the wait to an agent survives
restarts and shows on ``callproof lookup`` and the call's web page; the process whose write
recorded the answer (or abandon) also counts it in ``callproof_handoff_to_agent_seconds``.
It runs in any process holding an AMI link: ``callproof run`` always, ``callproof fastagi``
when ``[ami]`` is configured, so calls served over ARI and over AGI are measured alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from callproof.logs import event
from callproof.storage.queue_wait import ABANDONED, ANSWERED, JOINED
from callproof.storage.timefmt import parse_db_time

log = logging.getLogger("callproof.queue")

#: AMI event name -> what it means for the call.
QUEUE_EVENTS = {"QueueCallerJoin": JOINED, "AgentConnect": ANSWERED, "QueueCallerAbandon": ABANDONED}
#: The AMI class these events are in (the session's event mask must include it).
QUEUE_EVENT_CLASS = "agent"


class QueueWatch:
    """Records queue events on the calls they name; ``observe(outcome, seconds)`` is told the
    wait of each answer/abandon this process recorded first."""

    def __init__(self, db: Any, *, clock: Callable[[], datetime] | None = None,
                 observe: Callable[[str, float], None] | None = None) -> None:
        self.db = db
        self.clock = clock or (lambda: datetime.now(UTC))
        self.observe = observe
        self._tasks: set[asyncio.Task[None]] = set()

    def on_event(self, _manager: Any, message: Any) -> None:
        """The panoramisk callback: never blocks; the write runs as its own task."""
        what = QUEUE_EVENTS.get(str(message.get("Event", "")))
        uniqueid = str(message.get("Uniqueid", "") or "")
        if what is None or not uniqueid:
            return
        task = asyncio.ensure_future(self.record(uniqueid, what, str(message.get("Queue", "") or "") or None))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def record(self, uniqueid: str, what: str, queue: str | None) -> None:
        at = self.clock()
        try:
            mark = await self.db.queue_wait.mark(uniqueid, what, at, queue)
        except Exception as exc:
            event(log, "queue.event_not_recorded", logging.WARNING, uniqueid=uniqueid, what=what,
                  error=f"{type(exc).__name__}: {exc}"[:300])
            return
        if mark.call_id is None or not mark.changed:
            return
        waited = None
        if what != JOINED and mark.handed_off_at:
            waited = max(0.0, (at - parse_db_time(mark.handed_off_at)).total_seconds())
            if self.observe is not None:
                self.observe(what, waited)
        event(log, f"queue.{what}", call_id=mark.call_id, queue=queue,
              waited_s=None if waited is None else round(waited, 3))

    async def drain(self) -> None:
        """Wait for the writes under way (stopping)."""
        await asyncio.gather(*list(self._tasks), return_exceptions=True)


def connect_queue_events(host: str, port: int, username: str, password: str, watch: QueueWatch) -> Any:
    """An AMI session of its own for the queue events only (``callproof fastagi``, which has no
    other AMI link): class ``agent`` only, filtered to the three events; panoramisk reconnects.
    Returns the manager (``close()`` it when stopping); ``manager.authenticated`` says if it is up."""
    from panoramisk import Manager

    async def filters(manager: Any) -> None:
        for name in QUEUE_EVENTS:
            try:
                criteria = f"action(include),name({name}),header(Event),method(exact)"
                await manager.send_action({"Action": "Filter", "Operation": "Add", "Filter": name,
                                           "MatchCriteria": criteria})
            except Exception as exc:
                event(log, "queue.filter_failed", logging.WARNING, error=str(exc)[:200])

    def on_login(manager: Any) -> None:
        task = asyncio.ensure_future(filters(manager))
        watch._tasks.add(task)
        task.add_done_callback(watch._tasks.discard)

    manager = Manager(host=host, port=port, username=username, secret=password, events=QUEUE_EVENT_CLASS,
                      ping_delay=10, ping_interval=10, reconnect_timeout=1, on_login=on_login)
    for name in QUEUE_EVENTS:
        manager.register_event(name, watch.on_event)
    manager.connect()
    return manager


def agent_wait(call: Any) -> dict[str, Any] | None:
    """What the call page and ``callproof lookup`` show of the wait for an agent:
    ``outcome`` answered / abandoned / not_seen (handed off, no queue event recorded: no
    queue, or no process watching AMI), ``waited_seconds`` from the hand-off; None for a
    call never handed off."""
    handed_off_at = call.get("handed_off_at") if call else None
    if not handed_off_at:
        return None
    end, outcome = call.get("agent_answered_at"), "answered"
    if not end:
        end, outcome = call.get("queue_abandoned_at"), "abandoned"
    if not end:
        return {"handed_off_at": handed_off_at, "queue": call.get("queue_name"), "outcome": "not_seen",
                "waited_seconds": None}
    waited = (parse_db_time(end) - parse_db_time(handed_off_at)).total_seconds()
    return {"handed_off_at": handed_off_at, "queue": call.get("queue_name"), "outcome": outcome,
            "waited_seconds": round(max(0.0, waited), 1), "at": end}
