"""The sandbox Asterisk itself: versions, credentials, dialplan, recorded calls, clean stop."""

from __future__ import annotations

import array
import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
import wave
from pathlib import Path

import aiohttp
import pytest
from panoramisk import Manager

from callproof.sandbox import (
    Sandbox,
    ari_request,
    originate_call,
    wait_for_hangup,
)

pytestmark = pytest.mark.integration

HOSTILE_CALLER_IDS = [
    "",
    '"Robert\'); DROP TABLE calls;--" <5511>',
    "a;b,c|d&e",
    "$(touch /tmp/callproof-pwned)`id`",
    "${EXTEN}$[1+1]${SHELL(id)}",
    "../../../etc/passwd",
    "Zoë 日本 \U0001f4de",
    "+55 (11) 99999-0000",
    "line\nbreak\r\nEvent: Fake",
    "back\\slash",
    "7" * 500,
]


def _rms(path: Path) -> float:
    """Root mean square of a 16-bit PCM WAV (0 for silence)."""
    with wave.open(str(path)) as recording:
        assert recording.getsampwidth() == 2
        samples = array.array("h", recording.readframes(recording.getnframes()))
    return (sum(s * s for s in samples) / max(len(samples), 1)) ** 0.5


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as recording:
        return recording.getnframes() / recording.getframerate()


def _host_mount_points() -> list[str]:
    return [line.split(" ")[1] for line in Path("/proc/mounts").read_text().splitlines()]


def _processes_in_namespace(namespace: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/ns/mnt") == namespace:
                    found.append(int(name))
            except OSError:
                pass
    return found


def test_ari_reports_asterisk_22(sandbox: Sandbox) -> None:
    info = ari_request(sandbox, "GET", "asterisk/info")
    assert info["system"]["version"].startswith("22.")
    assert sandbox.version == info["system"]["version"]
    assert sandbox.ari_url == f"http://127.0.0.1:{sandbox.http_port}/"


def test_ari_rejects_wrong_password(sandbox: Sandbox) -> None:
    request = urllib.request.Request(sandbox.ari_url + "ari/asterisk/info")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{sandbox.ari_username}:wrong".encode()).decode())
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401


async def _ami_login(sandbox: Sandbox, secret: str) -> tuple[bool, Manager]:
    manager = Manager(
        loop=asyncio.get_running_loop(), host=sandbox.ami_host, port=sandbox.ami_port,
        username=sandbox.ami_username, secret=secret, ping_delay=3600, reconnect_timeout=3600,
    )
    await manager.connect()
    response = await asyncio.wait_for(manager.authenticated_future, 10)
    return bool(response.success), manager


async def test_ami_login_works_with_panoramisk(sandbox: Sandbox) -> None:
    ok, manager = await _ami_login(sandbox, sandbox.ami_password)
    try:
        assert ok
        settings = await asyncio.wait_for(manager.send_action({"Action": "CoreSettings"}), 10)
        assert settings.AsteriskVersion.startswith("22.")
    finally:
        manager.close()
    refused, manager = await _ami_login(sandbox, "not-the-secret")
    manager.close()
    assert not refused


REQUIRED_MODULES = [
    "res_ari.so", "res_ari_channels.so", "res_ari_bridges.so", "res_ari_events.so", "res_ari_playbacks.so",
    "res_ari_recordings.so", "res_stasis.so", "res_stasis_playback.so", "res_stasis_recording.so",
    "res_http_websocket.so", "app_stasis.so", "app_mixmonitor.so", "app_record.so", "app_playback.so",
    "app_senddtmf.so", "app_echo.so", "app_verbose.so", "app_userevent.so", "func_channel.so",
    "func_callerid.so", "pbx_config.so", "format_wav.so", "format_gsm.so", "format_pcm.so", "codec_gsm.so",
    "codec_ulaw.so", "codec_alaw.so", "codec_resample.so",
]


def test_required_modules_are_running(sandbox: Sandbox) -> None:
    running = {
        fields[0] for fields in (line.split() for line in sandbox.cli("module show").splitlines())
        if len(fields) >= 2 and "Running" in fields
    }
    assert not set(REQUIRED_MODULES) - running
    assert "chan_pjsip.so" not in running  # noload keeps start-up quiet and fast
    assert "Local" in sandbox.cli("core show channeltypes")


def test_sandbox_contexts_are_loaded(sandbox: Sandbox) -> None:
    caller = sandbox.cli("dialplan show callproof-sandbox-caller")
    assert "[ Context 'callproof-sandbox-caller' created by 'pbx_config' ]" in caller
    assert "Record(${SANDBOX_RECORD},0,${SANDBOX_MAX_SECONDS},kqx)" in caller
    agents = sandbox.cli("dialplan show callproof-sandbox-agents")
    assert "UserEvent(CallproofHandoff,Protocol: ${CALLPROOF_PROTOCOL}" in agents
    assert "'_X.' =>" in agents and "'i' =>" in agents


def test_project_dialplan_is_included(sandbox: Sandbox) -> None:
    assert sandbox.dialplan_dir == Path(__file__).resolve().parents[2] / "dialplan"
    files = sorted(sandbox.dialplan_dir.glob("*.conf"))
    if not files:
        pytest.skip("dialplan/ has no .conf file yet")
    extensions = (sandbox.etc_dir / "extensions.conf").read_text()
    for source in files:
        assert f'#include "callproof/{source.name}"' in extensions
        for context in re.findall(r"^\[([\w-]+)\]", source.read_text(), re.MULTILINE):
            shown = sandbox.cli(f"dialplan show {context}")
            assert f"[ Context '{context}' created by 'pbx_config' ]" in shown, shown


def test_call_records_what_the_caller_hears(sandbox: Sandbox) -> None:
    heard = sandbox.run_dir / "recordings" / "heard.wav"
    channel = originate_call(
        sandbox, "5511999990000", entry_context="callproof-sandbox-playback",
        record_path=str(heard), max_seconds=20,
    )
    assert channel["name"].startswith("Local/s@callproof-sandbox-entry-") and channel["name"].endswith(";1")
    wait_for_hangup(sandbox, channel["id"], timeout=30)

    assert heard.is_file()
    assert heard.stat().st_size > 44  # more than a WAV header
    assert heard.stat().st_mode & 0o007 == 0, oct(heard.stat().st_mode)  # umask 027: not world-readable
    assert 0.5 < _wav_seconds(heard) < 5  # hello-world is ~1.4 s; the entry side hung up, not max_seconds
    assert _rms(heard) > 100  # speech, not silence


@pytest.mark.parametrize("caller_id", HOSTILE_CALLER_IDS, ids=lambda c: repr(c[:24]))
def test_entry_side_sees_the_exact_caller_id(sandbox: Sandbox, caller_id: str) -> None:
    customer = originate_call(
        sandbox, caller_id, entry_context="callproof-sandbox-agents", max_seconds=10,
        variables={"SANDBOX_AGENT_SECONDS": "5"},
    )
    try:
        entry_name = customer["name"][:-1] + "2"
        deadline = time.monotonic() + 5
        entry = None
        while entry is None and time.monotonic() < deadline:
            channels = {c["name"]: c for c in ari_request(sandbox, "GET", "channels")}
            entry = channels.get(entry_name)
            if entry is None or entry["dialplan"]["context"] != "callproof-sandbox-agents":
                entry = None
                time.sleep(0.05)
        assert entry is not None, f"{entry_name} never reached callproof-sandbox-agents"
        assert entry["caller"]["number"] == caller_id
    finally:
        ari_request(sandbox, "DELETE", f"channels/{customer['id']}")
    assert not (sandbox.rootfs / "tmp" / "callproof-pwned").exists()


async def test_subscribe_all_observer_sees_playbacks_of_another_app(sandbox: Sandbox) -> None:
    """Tests observe event order through a second ARI app with subscribeAll=true."""
    events: dict[str, list[dict]] = {"owner": [], "observer": []}
    url = sandbox.ari_url.replace("http://", "ws://", 1) + "ari/events"
    key = f"{sandbox.ari_username}:{sandbox.ari_password}"

    async def owner_loop(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            event = json.loads(message.data)
            events["owner"].append(event)
            if event["type"] == "StasisStart":
                channel = event["channel"]["id"]
                await asyncio.to_thread(
                    ari_request, sandbox, "POST", f"channels/{channel}/play", {"media": "sound:beep"})
            elif event["type"] == "PlaybackFinished":
                await asyncio.to_thread(ari_request, sandbox, "DELETE", f"channels/{channel}")

    async def observer_loop(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            events["observer"].append(json.loads(message.data))

    async with aiohttp.ClientSession() as session:
        owner = await session.ws_connect(url, params={"app": "sandbox-owner", "api_key": key})
        observer = await session.ws_connect(
            url, params={"app": "sandbox-observer", "api_key": key, "subscribeAll": "true"})
        tasks = [asyncio.create_task(owner_loop(owner)), asyncio.create_task(observer_loop(observer))]
        channel = await asyncio.to_thread(
            ari_request, sandbox, "POST", "channels",
            {"endpoint": "Local/s@callproof-sandbox-agents", "app": "sandbox-owner"},
            {"variables": {"SANDBOX_AGENT_SECONDS": "10"}},
        )
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not any(
                e["type"] == "ChannelDestroyed" and e["channel"]["id"] == channel["id"] for e in events["observer"]
            ):
                await asyncio.sleep(0.05)
        finally:
            for task in tasks:
                task.cancel()

    def playback_types(name: str) -> list[str]:
        return [e["type"] for e in events[name]
                if e["type"].startswith("Playback") and e["playback"]["target_uri"] == f"channel:{channel['id']}"]

    assert playback_types("owner") == ["PlaybackStarted", "PlaybackFinished"]
    assert playback_types("observer") == ["PlaybackStarted", "PlaybackFinished"]
    # StasisStart/StasisEnd stay private to the app that owns the channel.
    assert not [e for e in events["observer"] if e["type"].startswith("Stasis")]


def test_stop_leaves_no_mount_and_survives_a_killed_run(sandbox: Sandbox, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    own = Sandbox(
        sandbox.rootfs, tmp_path / "run", dialplan_dir=None, bind_paths=[shared],
        extra_dialplan="[sandbox-selftest]\nexten => s,1,Answer()\n same => n,Playback(demo-congrats)\n"
                       " same => n,Hangup()\n",
    )
    with own:
        inside = own.mounts()
        assert {str(own.run_dir), str(shared), "/proc"} <= set(inside)
        assert not any(p.startswith(str(own.rootfs)) for p in _host_mount_points())
        # the same path on both sides: a file Asterisk writes under a bind path is the host's file
        heard = shared / "selftest.wav"
        call = originate_call(own, "1", entry_context="sandbox-selftest", record_path=str(heard), max_seconds=1)
        wait_for_hangup(own, call["id"], timeout=15)
        assert heard.stat().st_size > 44
        pid, namespace = own.pid, os.readlink(f"/proc/{own.pid}/ns/mnt")
    assert not own.running and own.mounts() == []
    assert not Path(f"/proc/{pid}").exists()
    assert _processes_in_namespace(namespace) == []  # namespace gone, and every mount with it
    assert not any(p.startswith((str(own.rootfs), str(own.run_dir))) for p in _host_mount_points())
    own.stop()  # idempotent

    # An Asterisk killed hard leaves nothing that prevents the next start on the same run_dir.
    own.start()
    os.kill(own.pid, signal.SIGKILL)
    own.stop()
    own.start()
    assert "sandbox-selftest" in own.cli("dialplan show sandbox-selftest")
    own.stop()


def test_start_removes_stale_host_mounts_under_the_rootfs(sandbox: Sandbox, tmp_path: Path) -> None:
    point = sandbox.rootfs / "mnt" / "callproof-stale-mount-test"
    point.mkdir(exist_ok=True)
    subprocess.run(["mount", "--bind", str(tmp_path), str(point)], check=True)
    try:
        assert str(point) in _host_mount_points()
        Sandbox(sandbox.rootfs, tmp_path / "run").start().stop()
        assert str(point) not in _host_mount_points()
    finally:
        subprocess.run(["umount", str(point)], capture_output=True)
        point.rmdir()
