"""``callproof demo``: one real call through a sandbox Asterisk 22.

Provisions (or reuses) the sandbox, generates the prompts, writes a
callproof.toml wired to that Asterisk, starts the application in this
process, places one call from a "customer" that records what it hears, waits
for the call to complete, and prints what happened, ending with one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Config, load_config
from .dialplan import directory as dialplan_directory

DIALPLAN_DIR = dialplan_directory()

# The sandbox's stand-in for the admin's agents: callproof-handoff goes to
# [callproof-agents], which a real PBX defines as its queue.
SANDBOX_AGENTS_DIALPLAN = """
[callproof-agents]
exten => s,1,Goto(callproof-sandbox-agents,s,1)
"""


def prompts_cache_dir() -> Path:
    from .sandbox import default_cache_dir

    return default_cache_dir() / "prompts"


def write_config(sandbox: Any, run_dir: Path, prompts_dir: Path, **sections: dict[str, Any]) -> Path:
    """A callproof.toml for this sandbox (the same file an admin writes), with its own
    evidence signing key (created here, mode 0600) and audit checkpoint file."""
    from .evidence.keys import generate_key_file

    signing_key = run_dir / "evidence" / "signing.pem"
    if not signing_key.exists():
        signing_key.parent.mkdir(mode=0o700, exist_ok=True)
        generate_key_file(signing_key)
    values: dict[str, dict[str, Any]] = {
        # the sandbox's Asterisk runs as whoever started it, and so do its callproof commands
        "general": {"service_user": pwd.getpwuid(os.geteuid()).pw_name},
        "storage": {"database": str(run_dir / "callproof.db")},
        "ari": {"url": sandbox.ari_url, "username": sandbox.ari_username, "password": sandbox.ari_password},
        "ami": {"host": sandbox.ami_host, "port": sandbox.ami_port, "username": sandbox.ami_username,
                "password": sandbox.ami_password},
        "prompts": {"directory": str(prompts_dir)},
        "recording": {"root": str(run_dir / "recordings")},
        "protocol_reading": {"replay_window_ms": 0},
        "logging": {"level": "WARNING"},
        "evidence": {"signing_key": str(signing_key), "trusted_keys": str(run_dir / "evidence" / "trusted")},
        "audit": {"checkpoint_file": str(run_dir / "audit-checkpoints.jsonl")},
    }
    for name, table in sections.items():
        values.setdefault(name, {}).update(table)
    lines = []
    for name, table in values.items():
        lines.append(f"[{name}]")
        for key, value in table.items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    path = run_dir / "callproof.toml"
    path.write_text("\n".join(lines))
    path.chmod(0o600)
    return path


def load_sandbox_config(path: Path) -> Config:
    return load_config(path, env={})


@dataclass
class DemoResult:
    flow: Any
    call: dict[str, Any]
    recording: dict[str, Any] | None
    sms: dict[str, Any] | None


async def place_demo_call(config: Config, sandbox: Any, caller: str, heard_path: Path,
                          timeout: float = 90.0) -> DemoResult:
    from callproof.ari_app.app import Application

    from .sandbox import originate_call

    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def flow_done(flow: Any) -> None:
        if not done.done():
            done.set_result(flow)

    app = Application(config, on_flow_done=flow_done)
    await app.start()
    runner = asyncio.ensure_future(app.run())
    try:
        async with asyncio.timeout(15):
            await app.connected.wait()
        await asyncio.to_thread(originate_call, sandbox, caller, record_path=str(heard_path), max_seconds=60)
        async with asyncio.timeout(timeout):
            flow = await done
        deadline = time.monotonic() + timeout
        while True:  # the call completes when the agent leg hangs up and the file is final
            call = await app.db.calls.get(flow.call_id)
            sms = await app.db.outbox.get_for_protocol(flow.protocol) if flow.protocol else []
            if call["status"] in ("completed", "failed") and (not sms or sms[0]["state"] != "pending"):
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        recordings = await app.db.recordings.for_call(flow.call_id)
        return DemoResult(flow=flow, call=dict(call), recording=dict(recordings[-1]) if recordings else None,
                          sms=dict(sms[0]) if sms else None)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await app.stop()


def run_demo(keep: bool = False, caller: str = "11987654321") -> int:
    from .prompts import generate_prompts
    from .sandbox import Sandbox, provision

    print("callproof demo: provisioning the sandbox Asterisk 22 (first run takes about a minute)...")
    rootfs = provision()
    prompts_dir = prompts_cache_dir()
    generate_prompts(prompts_dir)
    run_dir = Path(tempfile.mkdtemp(prefix="callproof-demo-"))
    try:
        with Sandbox(rootfs, run_dir, DIALPLAN_DIR, extra_dialplan=SANDBOX_AGENTS_DIALPLAN,
                     bind_paths=[prompts_dir]) as sandbox:
            print(f"Asterisk {sandbox.version} up; ARI {sandbox.ari_url}")
            config = load_sandbox_config(write_config(sandbox, run_dir, prompts_dir))
            result = asyncio.run(place_demo_call(config, sandbox, caller, run_dir / "caller-heard.wav"))
    finally:
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    call, rec, sms, timings = result.call, result.recording, result.sms, result.flow.timings
    print(f"call {call['channel_id']}: status {call['status']}")
    print(f"  consent: {call['consent_prompt']} ({call['consent_language']}) {call['consent_outcome']}, "
          f"sha256 {str(call['consent_sha256'])[:16]}...")
    print(f"  protocol {call['protocol']} read {call['protocol_read_count']} time(s)")
    print(f"  SMS to {sms and sms['destination']}: {sms and sms['state']}")
    if rec:
        print(f"  recording {rec['path']}: {rec['state']}, {rec['size_bytes']} bytes, {rec['duration_ms']} ms")
    if keep:
        print(f"  run directory kept: {run_dir}")
    summary = {
        "protocol": call["protocol"],
        "caller": call["caller_number_raw"],
        "caller_e164": call["caller_number"],
        "status": call["status"],
        "recording_path": rec["path"] if rec else None,
        "recording_bytes": rec["size_bytes"] if rec else None,
        "recording_sha256": rec["sha256"] if rec else None,
        "sms_status": sms["state"] if sms else None,
        "stasis_to_consent_ms": timings.between_ms("stasis_start", "consent_playback_started"),
        "protocol_read_to_recording_ms": timings.between_ms("protocol_playback_finished", "recording_started"),
        "stasis_to_handoff_ms": timings.between_ms("stasis_start", "handed_off"),
    }
    print(json.dumps(summary))
    ok = call["status"] == "completed" and rec is not None and rec["state"] == "finalised"
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo())
