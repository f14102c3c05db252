"""What one process measures: the caller's waits, the wait for an agent, storage, links."""

from __future__ import annotations

import aiohttp
import pytest

from callproof.callflow.timings import CallTimings
from callproof.config import Config, ConfigError, validate
from callproof.metrics import ProcessMetrics, start_metrics
from callproof.storage import Database

from .test_stored import samples, value


def timings(**marks: float) -> CallTimings:
    t = CallTimings()
    t.marks.update(marks)
    return t


def test_call_steps_from_the_flow_marks():
    m = ProcessMetrics("run")
    m.observe_call(timings(stasis_start=10.0, consent_playback_started=10.2, consent_playback_finished=16.0,
                           protocol_playback_started=16.4, protocol_read=30.0, recording_started=30.04))
    found = samples(m.registry)
    assert value(found, "callproof_stasis_to_consent_seconds_count") == 1
    assert value(found, "callproof_stasis_to_consent_seconds_bucket", le="0.25") == 1
    assert value(found, "callproof_stasis_to_consent_seconds_bucket", le="0.1") == 0
    assert round(value(found, "callproof_consent_to_protocol_seconds_sum"), 3) == 0.4
    assert value(found, "callproof_protocol_to_recording_seconds_bucket", le="0.05") == 1


def test_an_agi_call_starts_at_its_request_and_an_unreached_step_is_not_counted():
    m = ProcessMetrics("fastagi")
    m.observe_call(timings(agi_start=1.0, consent_playback_started=1.5))  # hung up in the announcement
    found = samples(m.registry)
    assert value(found, "callproof_stasis_to_consent_seconds_count") == 1
    assert value(found, "callproof_consent_to_protocol_seconds_count") == 0
    assert value(found, "callproof_protocol_to_recording_seconds_count") == 0


def test_time_to_agent_and_links_and_separate_registries():
    a, b = ProcessMetrics("run"), ProcessMetrics("run")
    a.observe_agent("answered", 42.0)
    a.observe_agent("abandoned", 200.0)
    up = {"ari": True}
    a.link("ari", lambda: up["ari"])
    found = samples(a.registry)
    assert value(found, "callproof_handoff_to_agent_seconds_bucket", outcome="answered", le="60.0") == 1
    assert value(found, "callproof_handoff_to_agent_seconds_bucket", outcome="answered", le="30.0") == 0
    assert value(found, "callproof_handoff_to_agent_seconds_count", outcome="abandoned") == 1
    assert value(found, "callproof_link_up", link="ari") == 1
    up["ari"] = False
    assert value(samples(a.registry), "callproof_link_up", link="ari") == 0
    assert value(samples(b.registry), "callproof_handoff_to_agent_seconds_count", outcome="answered") == 0


async def test_endpoint_on_loopback_with_storage_latency(tmp_path):
    async with Database.open(tmp_path / "e.db") as db:
        service = await start_metrics(Config(), db, "run", "127.0.0.1:0", "metrics.listen")
        try:
            assert service.address is not None
            host, port = service.address
            assert host == "127.0.0.1"
            await db.calls.get(1)
            async with aiohttp.ClientSession() as s:
                async with s.get(f"http://{host}:{port}/metrics") as r:
                    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                    text = await r.text()
                async with s.get(f"http://{host}:{port}/other") as r:
                    assert r.status == 404
            assert 'callproof_calls_ended_total{status="completed"} 0.0' in text
            assert 'callproof_storage_seconds_count{operation="get_sync"} 1.0' in text
        finally:
            await service.close()


async def test_storage_down_still_serves_the_process_figures(tmp_path):
    async with Database.open(tmp_path / "d.db") as db:
        service = await start_metrics(Config(), db, "run", "127.0.0.1:0", "metrics.listen")

        async def broken(**_kw):
            raise OSError("disk gone")
        db.figures.read = broken
        try:
            host, port = service.address or ("", 0)
            async with aiohttp.ClientSession() as s, s.get(f"http://{host}:{port}/metrics") as r:
                assert r.status == 200
                assert "callproof_handoff_to_agent_seconds" in await r.text()
        finally:
            await service.close()


async def test_not_served_when_listen_is_empty(tmp_path):
    async with Database.open(tmp_path / "n.db") as db:
        service = await start_metrics(Config(), db, "run", "", "metrics.listen")
        assert service.address is None


@pytest.mark.parametrize(("listen", "key"), [("9464", "metrics.listen"), ("127.0.0.1:99999", "metrics.listen"),
                                             ("127.0.0.1:x", "metrics.listen"), ("/tmp/s:1", "metrics.listen")])
def test_invalid_listen_fails_at_start_up_naming_the_key(listen, key):
    from dataclasses import replace
    cfg = Config()
    cfg = replace(cfg, metrics=replace(cfg.metrics, listen=listen))
    with pytest.raises(ConfigError) as err:
        validate(cfg, require_asterisk_apis=False)
    assert err.value.key == key


def test_the_two_processes_cannot_share_a_port():
    from dataclasses import replace
    cfg = Config()
    cfg = replace(cfg, metrics=replace(cfg.metrics, listen="127.0.0.1:9464", fastagi_listen="127.0.0.1:9464"))
    with pytest.raises(ConfigError) as err:
        validate(cfg, require_asterisk_apis=False)
    assert err.value.key == "metrics.fastagi_listen"


def test_the_in_process_mover_counts_its_moves():
    metrics = ProcessMetrics("run")
    assert value(samples(metrics.registry), "callproof_recordings_moves_total", outcome="refused") == 0
    metrics.observe_moves({"moved": 3, "adopted": 1, "failed": 2, "refused": 1, "skipped": 5,
                           "leftovers_removed": 1})
    metrics.observe_moves({"moved": 2})
    found = samples(metrics.registry)
    assert [value(found, "callproof_recordings_moves_total", outcome=o)
            for o in ("moved", "adopted", "failed", "refused")] == [5, 1, 2, 1]
