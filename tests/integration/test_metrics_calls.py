"""/metrics of a real application during and after sandbox calls, and the wait for an agent
through a real app_queue ``Queue()``: answered by an agent, and abandoned by the caller.

An application of its own (Stasis app ``cpmetrics``, its own database, 40 ms prompts) serves
``/metrics`` on a loopback port of its own ([metrics] listen = 127.0.0.1:0); the values are
scraped over HTTP the way Prometheus does and compared with what the calls did.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from callproof.callflow.queue_wait import agent_wait
from callproof.config import Config
from callproof.demo import load_sandbox_config, write_config
from callproof.metrics import start_metrics
from callproof.sandbox import Sandbox, ari_request, originate_call

from .harness import ObservedApplication, running
from .test_call_state import short_prompts

pytestmark = pytest.mark.integration

APP = "cpmetrics"


@pytest.fixture(scope="module")
async def metrics_app(sandbox: Sandbox, app_config: Config):
    run_dir = sandbox.run_dir / f"metrics-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir()
    path = write_config(sandbox, run_dir, app_config.prompts.directory, ari={"app": APP},
                        prompts={"custom_directory": str(short_prompts(run_dir / "short"))},
                        protocol_reading={"repeat": 0, "replay_window_ms": 0},
                        metrics={"listen": "127.0.0.1:0"})
    application = ObservedApplication(load_sandbox_config(path))
    async with running(application):
        yield application, path


async def scrape(app: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert app.metrics is not None and app.metrics.address is not None
    host, port = app.metrics.address
    assert host == "127.0.0.1"  # loopback
    async with aiohttp.ClientSession() as session, session.get(f"http://{host}:{port}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def place(sandbox: Sandbox, caller: str, **variables: str) -> dict[str, Any]:
    return await asyncio.to_thread(originate_call, sandbox, caller, max_seconds=90,
                                   variables={"CALLPROOF_APP": APP, **variables})


async def row_when(app: Any, caller: str, ready: Any, timeout: float = 60) -> dict[str, Any]:
    """The call row of ``caller`` once ``ready(row)`` holds."""
    deadline = time.monotonic() + timeout
    row: Any = None
    while time.monotonic() < deadline:
        row = await app.db.run_in_connection(lambda c: c.execute(
            "SELECT * FROM calls WHERE caller_number_raw = ? ORDER BY id DESC LIMIT 1", (caller,)).fetchone())
        if row is not None:
            row = await app.db.calls.get(row[0])
            if ready(row):
                return dict(row)
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the call of {caller} never got there: {row and dict(row)}")


async def test_calls_counted_on_metrics_over_http(metrics_app, sandbox: Sandbox):
    app, _path = metrics_app
    before = await scrape(app)
    assert value(before, "callproof_link_up", link="ari") == 1
    assert value(before, "callproof_link_up", link="ami") == 1
    callers = ["11987650101", "11987650102"]
    for caller in callers:
        await place(sandbox, caller, SANDBOX_AGENT_SECONDS="1")
    rows = [await row_when(app, c, lambda r: r["status"] == "completed") for c in callers]
    app.metrics.stored.cache_seconds = 0  # type: ignore[union-attr]  # (a scrape within 5 s reuses the read)
    after = await scrape(app)
    completed = value(after, "callproof_calls_ended_total", status="completed")
    assert completed - value(before, "callproof_calls_ended_total", status="completed") == 2
    assert value(after, "callproof_consent_outcomes_total", outcome="finished") >= 2
    for name in ("callproof_stasis_to_consent_seconds_count", "callproof_consent_to_protocol_seconds_count",
                 "callproof_protocol_to_recording_seconds_count"):
        assert value(after, name) - value(before, name) == 2, name
    # each call's SMS row, in whatever state the outbox shows it (the sandbox's log backend)
    states = {(await app.db.outbox.get_for_protocol(r["protocol"]))[0]["state"] for r in rows}
    assert sum(value(after, "callproof_sms_outbox", state=s) for s in states) >= 2
    assert value(after, "callproof_storage_seconds_count", operation="create_sync") >= 2

    # a freshly started process on the same database (a restart) reports the same stored figures
    again = await start_metrics(app.config, app.db, "run", "127.0.0.1:0", "metrics.listen")
    try:
        await again.stored.refresh()
        fresh = {(s.name, tuple(sorted(s.labels.items()))): s.value
                 for f in again.process.registry.collect() for s in f.samples}
        assert value(fresh, "callproof_calls_ended_total", status="completed") == completed
        assert value(fresh, "callproof_stasis_to_consent_seconds_count") == 0  # in-process: starts at 0
    finally:
        await again.close()


async def test_time_to_agent_answered_through_a_real_queue(metrics_app, sandbox: Sandbox, capsys):
    app, path = metrics_app
    before = await scrape(app)
    caller = "11987650201"
    await place(sandbox, caller, SANDBOX_QUEUE="sandbox-answer", SANDBOX_AGENT_SECONDS="1")
    row = await row_when(app, caller, lambda r: r["agent_answered_at"] is not None and r["status"] == "completed")
    assert row["queue_name"] == "sandbox-answer"
    assert row["handed_off_at"] <= row["queue_joined_at"] < row["agent_answered_at"]
    assert row["queue_abandoned_at"] is None
    wait = agent_wait(row)
    assert wait is not None and wait["outcome"] == "answered" and wait["waited_seconds"] >= 1.0  # it rang 1 s
    app.metrics.stored.cache_seconds = 0  # type: ignore[union-attr]
    after = await scrape(app)
    assert value(after, "callproof_handoff_to_agent_seconds_count", outcome="answered") \
        - value(before, "callproof_handoff_to_agent_seconds_count", outcome="answered") == 1
    assert value(after, "callproof_queue_outcomes_total", outcome="answered") \
        - value(before, "callproof_queue_outcomes_total", outcome="answered") == 1
    assert value(after, "callproof_agent_wait_seconds_count") >= 1

    # what ops read in a lookup
    from callproof.cli import main
    assert await asyncio.to_thread(main, ["--config", str(path), "lookup", "--protocol", row["protocol"]]) == 0
    out = capsys.readouterr().out
    assert "to queue sandbox-answer, agent answered after" in out


async def test_time_to_agent_abandoned_by_the_caller(metrics_app, sandbox: Sandbox):
    app, _path = metrics_app
    before = await scrape(app)
    caller = "11987650301"
    customer = await place(sandbox, caller, SANDBOX_QUEUE="sandbox-noanswer")
    joined = await row_when(app, caller, lambda r: r["queue_joined_at"] is not None)
    assert joined["queue_name"] == "sandbox-noanswer" and joined["agent_answered_at"] is None
    await asyncio.to_thread(ari_request, sandbox, "DELETE", f"channels/{customer['id']}")  # the caller gives up
    row = await row_when(app, caller, lambda r: r["queue_abandoned_at"] is not None and r["ended_at"] is not None)
    assert row["agent_answered_at"] is None
    assert row["queue_joined_at"] <= row["queue_abandoned_at"]
    wait = agent_wait(row)
    assert wait is not None and wait["outcome"] == "abandoned"
    app.metrics.stored.cache_seconds = 0  # type: ignore[union-attr]
    after = await scrape(app)
    assert value(after, "callproof_handoff_to_agent_seconds_count", outcome="abandoned") \
        - value(before, "callproof_handoff_to_agent_seconds_count", outcome="abandoned") == 1
    assert value(after, "callproof_queue_outcomes_total", outcome="abandoned") \
        - value(before, "callproof_queue_outcomes_total", outcome="abandoned") == 1


@pytest.fixture(scope="module")
async def fastagi_server(sandbox: Sandbox, app_config: Config):
    """A FastAGI server of its own (own database), with [ami] (the sandbox's) and /metrics."""
    from callproof.agi_scripts.fastagi import FastAgiServer

    run_dir = sandbox.run_dir / f"metrics-fastagi-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir()
    path = write_config(sandbox, run_dir, app_config.prompts.directory, ari={"app": "cpmetrics_fastagi"},
                        prompts={"custom_directory": str(short_prompts(run_dir / "short"))},
                        protocol_reading={"repeat": 0, "replay_window_ms": 0},
                        metrics={"fastagi_listen": "127.0.0.1:0"})
    server = await FastAgiServer(load_sandbox_config(path)).start(port=0)
    try:
        yield server
    finally:
        await server.stop()


async def test_time_to_agent_of_a_fastagi_call_through_the_same_queue(fastagi_server, sandbox: Sandbox):
    """The same measurement for a call served over FastAGI (one compliance flow, any transport)."""
    server = fastagi_server
    deadline = time.monotonic() + 30
    while not value(await scrape(server), "callproof_link_up", link="ami") and time.monotonic() < deadline:
        await asyncio.sleep(0.2)  # panoramisk logs in in the background
    caller = "11987650401"
    await asyncio.to_thread(originate_call, sandbox, caller, entry_context="callproof-fastagi-entry", max_seconds=90,
                            variables={"CALLPROOF_FASTAGI": f"agi://127.0.0.1:{server.port}/callproof",
                                       "SANDBOX_QUEUE": "sandbox-answer", "SANDBOX_AGENT_SECONDS": "1"})
    row = await row_when(server, caller, lambda r: r["agent_answered_at"] is not None and r["ended_at"] is not None)
    assert row["served_by"] == "fastagi" and row["queue_name"] == "sandbox-answer"
    assert row["handed_off_at"] <= row["queue_joined_at"] < row["agent_answered_at"]
    server.metrics.stored.cache_seconds = 0
    found = await scrape(server)
    assert value(found, "callproof_link_up", link="ami") == 1
    assert value(found, "callproof_handoff_to_agent_seconds_count", outcome="answered") == 1
    assert value(found, "callproof_stasis_to_consent_seconds_count") == 1  # from the AGI request
    assert value(found, "callproof_queue_outcomes_total", outcome="answered") == 1
    assert value(found, "callproof_calls_ended_total", status="completed") == 1


def test_the_alert_rules_pass_promtool():
    """promtool (Debian's prometheus package, scripts/setup) accepts the shipped rules."""
    import subprocess

    promtool = promtool_or_skip()
    rules = Path(__file__).resolve().parents[2] / "deploy" / "prometheus-alerts.yml"
    result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout


def promtool_or_skip() -> str:
    """Debian's promtool (the prometheus package, scripts/setup); a failure under CI, else a skip."""
    import shutil

    from .conftest import in_ci

    promtool = shutil.which("promtool")
    if promtool is None:
        if in_ci():
            pytest.fail("promtool is required under CI (scripts/setup installs Debian's prometheus)")
        pytest.skip("promtool not installed")
    return promtool


def test_the_store_lateness_alert_fires_for_the_node_whose_mover_stopped(tmp_path):
    """promtool's rule test on CallproofRecordingsNotMoving: node a's oldest recording ages past
    10 x move_interval_seconds (the exported threshold) with no move error; node b's mover runs."""
    import subprocess

    import yaml

    promtool = promtool_or_skip()
    rules_file = Path(__file__).resolve().parents[2] / "deploy" / "prometheus-alerts.yml"
    rule = next(r for r in yaml.safe_load(rules_file.read_text())["groups"][0]["rules"]
                if r["alert"] == "CallproofRecordingsNotMoving")
    series = "callproof_recordings_oldest_awaiting_move_seconds"
    spec = {"rule_files": [str(rules_file)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            {"series": f'{series}{{instance="n1",node="a"}}', "values": "200+60x20"},  # stopped: grows
            {"series": f'{series}{{instance="n1",node="b"}}', "values": "40x20"},  # moved every pass
            {"series": 'callproof_recordings_move_late_seconds{instance="n1"}', "values": "300x20"}],
        "alert_rule_test": [
            {"eval_time": "3m", "alertname": "CallproofRecordingsNotMoving", "exp_alerts": []},  # 380 s: not 5m yet
            {"eval_time": "8m", "alertname": "CallproofRecordingsNotMoving", "exp_alerts": [{
                "exp_labels": {"node": "a", "severity": "warning"},
                "exp_annotations": {k: v.replace("{{ $labels.node }}", "a") for k, v in rule["annotations"].items()},
            }]}]}]}
    test_file = tmp_path / "rules-test.yml"
    test_file.write_text(yaml.safe_dump(spec))
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
