"""deploy/grafana-dashboard.json and deploy/prometheus-alerts.yml name only metrics that exist:
a rename in the code cannot silently leave a dashboard panel empty or an alert that never fires."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import yaml

from callproof.config import Config
from callproof.metrics.wiring import collectors
from callproof.storage import Database

from .conftest import new_call

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
NAME = re.compile(r"\b((?:callproof|node)_[a-z0-9_]+)")
SUFFIXES = ("_bucket", "_count", "_sum")
#: node_exporter's metrics (the disk rule and panel): not ours, named by node_exporter.
NODE_EXPORTER = {"node_filesystem_avail_bytes", "node_filesystem_size_bytes"}


async def exported_names(tmp_path) -> set[str]:
    async with Database.open(tmp_path / "names.db") as db:
        config = Config()  # with a shared recordings store, and one recording of node a not yet in it
        config = dataclasses.replace(config, recording=dataclasses.replace(config.recording, store=tmp_path))
        call_id = await new_call(db, 1)
        await db.run_in_connection(lambda c: c.execute(
            "INSERT INTO recordings (call_id, path, started_at, state, node) VALUES (?, '/r/a.wav',"
            " '2026-03-02T12:00:00.000000Z', 'finalised', 'a')", (call_id,)))
        metrics, stored = collectors(config, db, "run")
        metrics.link("ari", lambda: True)
        metrics.link("ami", lambda: True)
        metrics.observe_storage("x", 0.1)
        await stored.refresh()
        return {s.name for family in metrics.registry.collect() for s in family.samples}


def named_in(text: str) -> set[str]:
    return set(NAME.findall(text))


def check(names: set[str], exported: set[str]) -> list[str]:
    missing = []
    for name in sorted(names):
        if name in NODE_EXPORTER:
            continue
        if name not in exported and not any(name.endswith(s) and name in exported for s in SUFFIXES):
            missing.append(name)
    return missing


async def test_the_dashboard_is_valid_json_on_our_metric_names(tmp_path):
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 15 and all(p["datasource"]["type"] == "prometheus" for p in dashboard["panels"])
    names = named_in("\n".join(exprs) + json.dumps(dashboard["templating"]))
    assert check(names, await exported_names(tmp_path)) == []
    assert {"callproof_handoff_to_agent_seconds_bucket", "callproof_sms_outbox", "callproof_requests_overdue",
            "callproof_link_up", "callproof_calls_ended_total", "callproof_recordings_awaiting_move",
            "callproof_recordings_oldest_awaiting_move_seconds", "callproof_recordings_move_late_seconds"} <= names


async def test_every_alert_rule_names_exported_metrics(tmp_path):
    rules = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())["groups"][0]["rules"]
    alerts = {r["alert"]: r["expr"] for r in rules}
    assert {"CallproofApplicationDisconnected", "CallproofSmsBacklog", "CallproofRequestsOverdue",
            "CallproofRecordingFailures", "CallproofDiskFilling", "CallproofRecordingsNotReachingStore",
            "CallproofRecordingsNotMoving"} <= set(alerts)
    assert check(named_in("\n".join(alerts.values())), await exported_names(tmp_path)) == []
    assert "node_filesystem_avail_bytes" in alerts["CallproofDiskFilling"]
