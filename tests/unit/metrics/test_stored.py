"""The database figures on /metrics: what ops would read on a dashboard after these calls."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from callproof.metrics import StoredFigures
from callproof.storage.queue_wait import ANSWERED
from tests.engines import without_check

from .conftest import T0


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def stored(db, **kw) -> tuple[StoredFigures, CollectorRegistry]:
    figures = StoredFigures(db, soon_until=lambda now: now + timedelta(days=2), clock=lambda: T0, **kw)
    registry = CollectorRegistry()
    registry.register(figures)
    return figures, registry


async def test_calls_by_final_status_and_consent_outcomes(seeded):
    figures, registry = stored(seeded)
    await figures.refresh()
    found = samples(registry)
    assert value(found, "callproof_calls_ended_total", status="completed") == 3
    assert value(found, "callproof_calls_ended_total", status="failed") == 1
    assert value(found, "callproof_calls_ended_total", status="abandoned_in_consent") == 1
    assert value(found, "callproof_calls_ended_total", status="abandoned_in_protocol") == 0
    assert value(found, "callproof_calls_active", status="recording") == 1
    assert value(found, "callproof_consent_outcomes_total", outcome="finished") == 4
    assert value(found, "callproof_consent_outcomes_total", outcome="caller_left") == 1


async def test_recordings_requests_and_retention(seeded):
    figures, registry = stored(seeded)
    await figures.refresh()
    found = samples(registry)
    assert value(found, "callproof_recordings", state="finalised") == 1
    assert value(found, "callproof_recordings", state="failed") == 1
    assert value(found, "callproof_retention_deleted_total", kind="recording") == 0
    assert value(found, "callproof_requests_open") == 2
    assert value(found, "callproof_requests_overdue") == 1  # due 10 Feb, now 2 Mar
    assert value(found, "callproof_requests_due_soon") == 0  # due 5 Mar: beyond the 2 days


async def test_a_state_a_later_version_adds_shows_up_from_the_column(seeded):
    await seeded.run_in_connection(lambda c: without_check(c, "recordings", "state"))
    await seeded.run_in_connection(lambda c: c.execute("UPDATE recordings SET state = 'empty' WHERE id = 2"))
    figures, registry = stored(seeded)
    await figures.refresh()
    found = samples(registry)
    assert value(found, "callproof_recordings", state="empty") == 1
    assert value(found, "callproof_recordings", state="failed") == 0  # a known state stays, at 0


async def test_time_to_agent_histogram_from_the_stored_times(seeded):
    for uid, seconds in (("uid-0", 12), ("uid-1", 75), ("uid-2", 400)):
        await seeded.queue_wait.mark(uid, ANSWERED, T0 + timedelta(seconds=seconds), "support")
    figures, registry = stored(seeded)
    await figures.refresh()
    found = samples(registry)
    assert value(found, "callproof_queue_outcomes_total", outcome="answered") == 3
    assert value(found, "callproof_agent_wait_seconds_count") == 3
    assert value(found, "callproof_agent_wait_seconds_bucket", le="20.0") == 1
    assert value(found, "callproof_agent_wait_seconds_bucket", le="180.0") == 2
    assert value(found, "callproof_agent_wait_seconds_bucket", le="+Inf") == 3
    assert round(value(found, "callproof_agent_wait_seconds_sum")) == 487


async def test_the_read_is_cached_and_shared(seeded):
    figures, _registry = stored(seeded, cache_seconds=60)
    await figures.refresh()
    await figures.refresh()
    assert figures.reads == 1
    figures.cache_seconds = 0
    await figures.refresh()
    assert figures.reads == 2


async def test_two_processes_on_one_database_report_the_same(seeded):
    a, ra = stored(seeded)
    b, rb = stored(seeded)
    await a.refresh()
    await b.refresh()

    def stored_figures(registry):
        return {k: v for k, v in samples(registry).items() if not k[0].startswith("callproof_metrics_figures_")}
    assert stored_figures(ra) == stored_figures(rb)


async def test_a_slow_read_serves_the_previous_snapshot_and_finishes_behind(seeded):
    import asyncio

    figures, registry = stored(seeded, cache_seconds=0)
    figures.wait_seconds = 0.01
    await figures.refresh()
    real = seeded.figures.read
    release = asyncio.Event()

    async def slow(**kw):
        await release.wait()
        return await real(**kw)

    seeded.figures.read = slow
    await seeded.queue_wait.mark("uid-0", ANSWERED, T0 + timedelta(seconds=5), "support")
    await figures.refresh()  # the read is held: the scrape does not wait for it
    assert figures.stale_serves == 1
    assert value(samples(registry), "callproof_queue_outcomes_total", outcome="answered") == 0
    release.set()
    figures.wait_seconds = 30  # the read goes on now: this scrape waits for it (10 ms was too short on a loaded host)
    await figures.refresh()  # the same read, now done
    assert value(samples(registry), "callproof_queue_outcomes_total", outcome="answered") == 1
    assert figures.reads == 2


async def test_reads_are_spaced_by_their_own_cost(seeded):
    figures, _registry = stored(seeded, cache_seconds=1)
    await figures.refresh()
    figures._read_seconds = 30.0  # as if the last read took 30 s: the next one waits 300 s
    await figures.refresh()
    assert figures.reads == 1


async def test_recordings_awaiting_the_shared_store_and_their_move_errors_by_node(seeded):
    def rows(conn):
        for call_id, node, state, store_path, error in (
                (1, "a", "finalised", None, None), (2, "a", "finalised", None, "the store is not mounted here"),
                (3, "b", "finalised", "2026/03/02/x-9.wav", None), (3, "b", "empty", None, None),
                (3, "b", "recording", None, None)):
            conn.execute("INSERT INTO recordings (call_id, path, started_at, state, node, store_path, move_error)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (call_id, f"/r/{node}-{state}-{call_id}.wav", T0.isoformat(), state, node, store_path,
                          error))
    await seeded.run_in_connection(rows)
    figures, registry = stored(seeded, store_backlog=True)
    await figures.refresh()
    found = samples(registry)
    assert value(found, "callproof_recordings_awaiting_move", node="a") == 2
    assert value(found, "callproof_recordings_move_errors", node="a") == 1
    assert value(found, "callproof_recordings_awaiting_move", node="b") == 1  # the moved and the live one: not
    assert value(found, "callproof_recordings_move_errors", node="b") == 0
    figures, registry = stored(seeded)  # no [recording] store: nothing is to move, no such series
    await figures.refresh()
    assert not any(name.startswith("callproof_recordings_awaiting") for name, _ in samples(registry))


async def test_the_oldest_recording_awaiting_the_store_by_node_and_when_it_is_late(seeded):
    """A node whose mover stopped shows no move error: the age of its oldest finished recording
    still local grows, and is compared with 10 x move_interval_seconds (doctor's threshold)."""
    from callproof.storage.timefmt import to_db_time

    def rows(conn):
        for node, finalised_ago, store_path, state in (
                ("a", timedelta(minutes=20), None, "finalised"), ("a", timedelta(minutes=1), None, "finalised"),
                ("a", timedelta(hours=2), "2026/03/02/x-1.wav", "finalised"),  # moved: not waiting
                ("b", timedelta(seconds=30), None, "empty"),
                ("c", timedelta(hours=3), None, "recording")):  # still recording: not finished
            conn.execute("INSERT INTO recordings (call_id, path, started_at, finalised_at, state, node, store_path)"
                         " VALUES (1, ?, ?, ?, ?, ?, ?)",
                         (f"/r/{node}-{finalised_ago.seconds}.wav", to_db_time(T0 - finalised_ago - timedelta(1)),
                          to_db_time(T0 - finalised_ago) if state != "recording" else None, state, node, store_path))
    await seeded.run_in_connection(rows)
    figures, registry = stored(seeded, store_backlog=True, move_late_seconds=300.0)
    await figures.refresh()
    found = samples(registry)
    assert value(found, "callproof_recordings_oldest_awaiting_move_seconds", node="a") == 20 * 60
    assert value(found, "callproof_recordings_oldest_awaiting_move_seconds", node="b") == 30
    assert ("callproof_recordings_oldest_awaiting_move_seconds", (("node", "c"),)) not in found
    assert value(found, "callproof_recordings_awaiting_move", node="a") == 2
    assert value(found, "callproof_recordings_move_late_seconds") == 300
    figures, registry = stored(seeded, move_late_seconds=300.0)  # no [recording] store: no such series
    await figures.refresh()
    assert not any(name.startswith(("callproof_recordings_oldest", "callproof_recordings_move_late"))
                   for name, _ in samples(registry))


def test_doctor_and_metrics_share_the_lateness_rule():
    import dataclasses

    from callproof.config import Config
    from callproof.store import late_after_seconds

    config = Config()
    config = dataclasses.replace(config, recording=dataclasses.replace(config.recording, move_interval_seconds=45.0))
    assert late_after_seconds(config) == 450.0
