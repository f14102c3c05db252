"""After (re)connecting, the ARI application settles only what is its own: a call the
dialplan's AGI fallback is serving (calls.served_by) is left to its own hangup handler."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from callproof.ari_app.app import Application
from callproof.storage import NewCall
from tests.call_rows import advance

NOW = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)


class Asterisk:
    def __init__(self, live: set[str]):
        self.live = live

    async def channel_exists(self, channel_id: str) -> bool:
        return channel_id in self.live


class Recorder:
    def __init__(self) -> None:
        self.tracked: list[str] = []

    def track(self, uniqueid, recording_id, path) -> None:
        self.tracked.append(uniqueid)


async def call(db, channel: str, served_by: str | None, status: str) -> int:
    call_id = await db.calls.create(replace(NewCall(channel, channel, channel, "11987654321", "+5511987654321",
                                                    None, None, "pt_BR", NOW), served_by=served_by))
    if status != "consent_playing":
        await advance(db, call_id, status)
    return call_id


async def test_only_the_ari_calls_are_taken_over_or_settled_as_disconnected(config, db):
    app = Application(config, clock=lambda: NOW)
    app.db, app.ari, app.recorder = db, Asterisk({"ari.live", "agi.live", "old.live"}), Recorder()
    ids = {name: await call(db, name, served_by, "handed_off") for name, served_by in (
        ("ari.live", "ari"), ("agi.live", "agi_fallback"), ("old.live", None),
        ("ari.gone", "ari"), ("agi.gone", "agi_fallback"))}
    await app.settle_unfinished(kept=set())
    assert app.handed_off == {"ari.live": ids["ari.live"], "old.live": ids["old.live"]}
    rows = {name: await db.calls.get(i) for name, i in ids.items()}
    assert rows["agi.live"]["ended_at"] is None and rows["agi.live"]["status"] == "handed_off"
    assert rows["ari.gone"]["hangup_cause"] == "ended while callproof's ARI link was down"
    # Never "disconnected" for a call ARI did not serve: its AGI hangup handler did not close it.
    assert rows["agi.gone"]["hangup_cause"] == "ended; its agi_fallback hangup handler did not close the row"
    assert rows["agi.gone"]["status"] == rows["ari.gone"]["status"] == "completed"
