"""Recordings encrypted at rest on a real Asterisk 22, through all three transports.

An application of its own (Stasis app ``cpencrypted``, its own database, recordings, keys;
40 ms prompts so the calls are short), a FastAGI server and the classic AGI script (run by
Asterisk inside the sandbox's chroot on Debian's python3 and python3-cryptography, with the
bundle's ``bech32``), all on one configuration with ``[encryption] enabled`` and keys made
by ``callproof keys init``.  One call per transport: its recording ends up as
``<name>.wav.age`` (0640) with no plaintext left, and Debian's ``age -d -i`` with the period
key gives the exact sha256 the signed evidence record holds; ``recording verify`` passes
without the private key and with ``--plaintext``.  Then what reads them: the real
``callproof web`` serves Range requests of the encrypted recording (exact bytes, from the
middle), an export made from it is stored encrypted to the hold key and opens with
``age -d``, and the evidence package holds the plaintext and verifies offline.

The per-transport test runs again on PostgreSQL (``pg_calls``, as in test_evidence.py); what
reads the recordings afterwards (web, export, package) runs here on SQLite only, its storage
reads having unit tests on both engines (tests/unit/web, tests/unit/rights).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest

from callproof.agi_scripts.fastagi import FastAgiServer
from callproof.config import Config
from callproof.demo import load_sandbox_config, write_config
from callproof.rights.export import export_request_sync
from callproof.rights.requests import file_request_sync
from callproof.sandbox import Sandbox
from callproof.storage import open_sync, utc_now

from .age_tool import age_binaries
from .agi_install import classic_agi_for, install_classic_agi
from .conftest import pg_tcp_storage
from .harness import ObservedApplication, running
from .test_agi_calls import fastagi_vars, place, wait_final_recording, wait_row
from .test_call_state import short_prompts
from .web_fixtures import add_web_user, free_port, web_server, write_web_config

pytestmark = pytest.mark.integration

APP = "cpencrypted"
PASSWORD = "an encrypted-recordings passphrase 7"


@pytest.fixture(scope="module")
def run_dir(sandbox: Sandbox) -> Path:
    path = sandbox.run_dir / f"encrypted-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def encrypted_config(sandbox: Sandbox, app_config: Config, run_dir: Path, app_name: str, pg_tcp=None) -> Config:
    """This module's configuration, its keys made by ``callproof keys init``; with ``pg_tcp``,
    on a database of that cluster (over TCP: the classic AGI script in the chroot reaches it too)."""
    storage = pg_tcp_storage(pg_tcp, run_dir, "encrypted") if pg_tcp is not None else {}
    config_path = write_config(
        sandbox, run_dir, app_config.prompts.directory, ari={"app": app_name}, storage=storage,
        prompts={"custom_directory": str(short_prompts(run_dir / "short"))},
        protocol_reading={"repeat": 0, "replay_window_ms": 0},
        encryption={"enabled": True, "public_keys_dir": str(run_dir / "keys" / "public"),
                    "private_keys_dir": str(run_dir / "keys" / "private")})
    done = cli(config_path, "keys", "init", "--by", "ops")
    assert done.returncode == 0, done.stdout + done.stderr
    return load_sandbox_config(config_path)


@pytest.fixture(scope="module")
def config(sandbox: Sandbox, app_config: Config, run_dir: Path) -> Config:
    return encrypted_config(sandbox, app_config, run_dir, APP)


@pytest.fixture(scope="module")
def config_path(config: Config) -> Path:
    return Path(config.storage.database).parent / "callproof.toml"


def cli(config_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """The command an admin or auditor runs, in its own process."""
    return subprocess.run([sys.executable, "-m", "callproof.cli", "--config", str(config_path), *argv],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
async def app(config: Config):
    async with running(ObservedApplication(config)) as application:
        yield application


@pytest.fixture(scope="module")
async def fastagi(config: Config):
    server = await FastAgiServer(config).start(port=0)
    yield server
    await server.stop()


@pytest.fixture(scope="module")
def classic_agi(sandbox: Sandbox, config_path: Path):
    wrapper = install_classic_agi(sandbox, config_path)
    yield wrapper
    wrapper.unlink(missing_ok=True)  # later modules' fallback calls must not reach this database


async def one_call_per_transport(app, fastagi, sandbox: Sandbox) -> dict[str, dict]:
    """{"ari"|"fastagi"|"agi": {"row": ..., "recording": ...}}, each call finished."""
    name = app.config.ari.app
    plan = {"ari": ("11987650911", {"CALLPROOF_APP": name}),
            "fastagi": ("11987650912", {"CALLPROOF_APP": name, **fastagi_vars(fastagi)}),
            "agi": ("11987650913", {"CALLPROOF_APP": name})}
    placed = await asyncio.gather(*(place(sandbox, path, caller, variables)
                                    for path, (caller, variables) in plan.items()))
    out = {}
    for path, channel in zip(plan, placed, strict=True):
        row = await wait_row(app.db, channel["id"], {"completed"}, timeout=90)
        rec = await wait_final_recording(app.db, row["id"], timeout=60)
        out[path] = {"row": row, "recording": await app.db.recordings.get(rec["id"])}
    return out


@pytest.fixture(scope="module")
async def calls(app, fastagi, classic_agi, sandbox: Sandbox) -> dict[str, dict]:
    """One finished call per transport (see :func:`one_call_per_transport`)."""
    return await one_call_per_transport(app, fastagi, sandbox)


@pytest.fixture(scope="module")
async def pg_calls(sandbox: Sandbox, app_config: Config, pg_tcp) -> tuple[dict[str, dict], Config, Path]:
    """The three calls again, with the module's set-up on PostgreSQL: (calls, config, its path)."""
    run_dir = sandbox.run_dir / f"encrypted-pg-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir()
    config = encrypted_config(sandbox, app_config, run_dir, APP + "pg", pg_tcp)
    config_path = run_dir / "callproof.toml"
    async with running(ObservedApplication(config)) as application:
        server = await FastAgiServer(config).start(port=0)
        try:
            with classic_agi_for(sandbox, config_path):
                done = await one_call_per_transport(application, server, sandbox)
        finally:
            await server.stop()
    return done, config, config_path


def _age_decrypt_sha256(key_file: Path, sealed: Path) -> str:
    age, _ = age_binaries()
    done = subprocess.run([age, "-d", "-i", str(key_file), str(sealed)], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    return hashlib.sha256(done.stdout).hexdigest()


async def test_each_transport_leaves_an_encrypted_recording_that_age_opens(calls_on) -> None:
    """On SQLite and on PostgreSQL."""
    calls, config, config_path = calls_on
    private = config.encryption.private_keys_dir
    for path, call in calls.items():
        rec, row = call["recording"], call["row"]
        assert rec["state"] == "finalised", (path, rec)
        assert rec["encryption"] == "encrypted", (path, rec["encryption"], rec["encryption_error"])
        sealed, plain = Path(rec["age_path"]), Path(rec["path"])
        assert sealed == Path(str(plain) + ".age") and sealed.exists() and not plain.exists(), path
        assert stat.S_IMODE(sealed.stat().st_mode) == 0o640, path
        assert sealed.read_bytes().startswith(b"age-encryption.org/v1\n"), path
        with open_sync(config) as db:
            stored = db.evidence.for_recording(rec["id"])
        assert stored is not None and stored["signature"], path
        record = json.loads(stored["record"])
        assert record["call"]["served_by"] == path
        assert record["encryption"]["payload_sha256"] == rec["payload_sha256"], path
        (key_id,) = rec["key_ids"].split(",")
        assert record["encryption"]["key_ids"] == [key_id] and key_id.startswith("consumer_service-")
        # the independent implementation, with the period key: the exact signed plaintext
        assert _age_decrypt_sha256(private / f"{key_id}.key", sealed) == record["recording"]["sha256"] \
            == rec["sha256"], path
        done = cli(config_path, "recording", "verify", row["protocol"], "--by", "auditor")
        assert done.returncode == 0 and "ok 1 (signed)" in done.stdout, done.stdout + done.stderr
        done = cli(config_path, "recording", "verify", row["protocol"], "--plaintext", "-v")
        assert done.returncode == 0 and "decrypted: plaintext matches" in done.stdout, done.stdout + done.stderr


async def test_the_web_app_plays_the_encrypted_recording_by_range(calls, config: Config, run_dir: Path) -> None:
    rec, row = calls["agi"]["recording"], calls["agi"]["row"]
    age, _ = age_binaries()
    (key_id,) = rec["key_ids"].split(",")
    plain = subprocess.run([age, "-d", "-i", str(config.encryption.private_keys_dir / f"{key_id}.key"),
                            rec["age_path"]], capture_output=True, timeout=120, check=True).stdout
    port = free_port()
    web_config = write_web_config(config, run_dir, port)
    add_web_user(web_config, "vera", "viewer", PASSWORD)
    jar = aiohttp.CookieJar(unsafe=True)  # cookies of 127.0.0.1: an address, not a host name
    async with web_server(web_config, port, run_dir / "web.log") as base, aiohttp.ClientSession(cookie_jar=jar) as http:
        page = await http.get(f"{base}/login")
        html = await page.text()
        token = html.split('name="login_token" value="', 1)[1].split('"', 1)[0]
        login = await http.post(f"{base}/login", data={"username": "vera", "password": PASSWORD,
                                                       "login_token": token, "next": "/search"},
                                allow_redirects=False)
        assert login.status == 303
        url = f"{base}/calls/{row['protocol']}/audio"
        middle = len(plain) // 2
        for first, last in ((middle, middle + 999), (0, 43), (len(plain) - 10, len(plain) - 1)):
            part = await http.get(url, headers={"Range": f"bytes={first}-{last}"})
            assert part.status == 206 and part.headers["Content-Range"] == f"bytes {first}-{last}/{len(plain)}"
            assert await part.read() == plain[first:last + 1]
        whole = await http.get(url)
        assert whole.status == 200 and hashlib.sha256(await whole.read()).hexdigest() == rec["sha256"]


async def test_an_export_and_an_evidence_package_of_an_encrypted_recording(calls, config: Config,
                                                                           config_path: Path, run_dir: Path) -> None:
    rec, row = calls["fastagi"]["recording"], calls["fastagi"]["row"]
    rights = dataclasses.replace(config.rights, export_dir=run_dir / "exports")
    with open_sync(config) as db:
        request = file_request_sync(db, dataclasses.replace(config, rights=rights), call_protocol=row["protocol"],
                                    channel="cli", actor="ops", now=utc_now(), requester_number=row["caller_number"])
        export = export_request_sync(db, dataclasses.replace(config, rights=rights), request.id, actor="ops",
                                     now=utc_now(), fmt="wav")
    stored = Path(export.path)
    assert stored.name.endswith(".wav.age") and stored.read_bytes().startswith(b"age-encryption.org/v1\n")
    hold = config.encryption.private_keys_dir / "hold-1.key"
    age, _ = age_binaries()
    opened = subprocess.run([age, "-d", "-i", str(hold), str(stored)], capture_output=True, timeout=120)
    assert opened.returncode == 0 and opened.stdout[:4] == b"RIFF" and len(opened.stdout) > 1000
    out = run_dir / "evidence.zip"
    done = cli(config_path, "evidence", "export", row["protocol"], "--out", str(out), "--by", "legal")
    assert done.returncode == 0, done.stdout + done.stderr
    import zipfile
    with zipfile.ZipFile(out) as zf:
        assert hashlib.sha256(zf.read("recording.wav")).hexdigest() == rec["sha256"]
    verified = subprocess.run([sys.executable, "-m", "callproof.cli", "evidence", "verify", str(out)],
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and "evidence package VERIFIED" in verified.stdout, verified.stdout
