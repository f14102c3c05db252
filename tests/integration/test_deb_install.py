"""The install path, as an admin takes it: the Debian package, built by scripts/build-deb,
installed with dpkg into a fresh copy of the sandbox's Debian sid with Asterisk 22 (no
network: the rootfs carries the package's Debian dependencies), Asterisk and the shipped
units' commands started as the units say, a first call with a caller ID, then the same
package installed again (an upgrade) and a second call.  Config, secrets and data survive.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from callproof.config.strength import check_password, check_secret

from .conftest import REPO_ROOT, in_ci, sandbox_rootfs
from .target_machine import TargetMachine, parse_environment_file, parse_unit, uid_gid_names

pytestmark = pytest.mark.integration

UNITS = "/usr/lib/systemd/system"
CALLER = "11987654321"


def _tools_or_skip() -> None:
    missing = [tool for tool in ("dpkg-deb", "unshare", "nsenter", "ip", "chroot") if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        reason = f"needs root and {', '.join(missing) or 'nothing else'}"
        if in_ci():
            pytest.fail(f"the package test is required under CI: {reason}", pytrace=False)
        pytest.skip(reason)


def build_deb(out: Path) -> Path:
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "build-deb"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"scripts/build-deb failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return Path(done.stdout.strip().splitlines()[-1])


def dpkg_install(machine: TargetMachine, deb: Path) -> str:
    target = machine.merged_path("/var/cache/callproof.deb")
    shutil.copyfile(deb, target)
    done = machine.run(["dpkg", "-i", "/var/cache/callproof.deb"], timeout=600)
    return done.stdout + done.stderr


def start_asterisk(machine: TargetMachine, log: Path):
    """As Debian's asterisk.service starts it, with the UMask= of the package's drop-in once
    the package is installed."""
    dropin = machine.merged_path(f"{UNITS}/asterisk.service.d/callproof.conf")
    umask = None
    if dropin.exists():
        umask = int(next(line.split("=", 1)[1] for line in dropin.read_text().splitlines()
                         if line.startswith("UMask=")), 8)
    machine.run(["install", "-d", "-o", "asterisk", "-g", "asterisk", "/run/asterisk"])  # RuntimeDirectory=
    process = machine.start(["/usr/sbin/asterisk", "-f", "-U", "asterisk", "-G", "asterisk"], log, umask=umask)
    machine.wait_until("Asterisk fully booted", lambda: machine.run(
        ["asterisk", "-rx", "core waitfullybooted"], check=False, timeout=60).returncode == 0, timeout=120)
    return process


def rx(machine: TargetMachine, command: str) -> str:
    return machine.run(["asterisk", "-rx", command]).stdout


def query(machine: TargetMachine, sql: str, *params: object) -> list[dict]:
    """Rows of the installed database, read-only, as the asterisk user (Debian's python3)."""
    script = ("import json, sqlite3, sys\n"
              "db = sqlite3.connect('file:/var/lib/callproof/callproof.db?mode=ro', uri=True)\n"
              "db.row_factory = sqlite3.Row\n"
              "print(json.dumps([dict(r) for r in db.execute(sys.argv[1], json.loads(sys.argv[2]))]))\n")
    out = machine.run(["python3", "-c", script, sql, json.dumps(list(params))], user="asterisk").stdout
    return json.loads(out)


def start_services(machine: TargetMachine, logs: Path) -> list:
    started = [machine.start_unit(f"{UNITS}/{unit}", logs / f"{unit}.log")
               for unit in ("callproof.service", "callproof-fastagi.service", "callproof-web.service")]
    machine.wait_until("the ARI application connected", lambda: "callproof" in rx(machine, "ari show apps"))
    probe = ("import socket, sys\n"
             "for port in (4573, 8089):\n"
             "    socket.create_connection(('127.0.0.1', port), timeout=2).close()\n")
    machine.wait_until("FastAGI (4573) and the web page (8089) listening", lambda: machine.run(
        ["python3", "-c", probe], check=False).returncode == 0)
    return started


def check_doctor(machine: TargetMachine) -> None:
    """`callproof doctor` as the admin types it (root, no options) finds nothing to fix: ARI and
    AMI log in, the contexts are loaded, files and folders are right. A chroot has no systemd, so
    the retention timer cannot be told (WARN), and the package's SMS backend is `log` (WARN)."""
    done = machine.run(["callproof", "doctor"], check=False)
    report = done.stdout
    lines = {line.split()[1]: line.split()[0] for line in report.splitlines()
             if line.split() and line.split()[0] in ("OK", "WARN", "FAIL")}
    assert "FAIL" not in lines.values(), report + done.stderr
    assert done.returncode in (0, 2), report + done.stderr
    for check in ("config", "ari-login", "ami-login", "dialplan", "database", "secret-files"):
        assert lines.get(check) == "OK", f"doctor's {check}: {report}"
    assert {c for c, s in lines.items() if s == "WARN"} <= {"retention", "sms"}, report


def pg_reader(url: str):
    """``query``'s twin for the machine's database on PostgreSQL (read by the test, on the
    cluster's socket)."""
    import psycopg
    import psycopg.rows

    def read(machine: TargetMachine, sql: str, *params: object) -> list[dict]:
        with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as pg:
            return pg.execute(sql.replace("?", "%s"), params).fetchall()

    return read


def place_call(machine: TargetMachine, caller: str, query=query) -> dict:
    """A call whose caller ID is ``caller``, through the install's [callproof-first-call]
    context; the "customer" plays a long prompt into the call, so the recording (which
    starts once the protocol was read) has audio. Hung up a few seconds into the agents.
    ``query`` reads the installed database (SQLite by default)."""
    before = {row["id"] for row in query(machine, "SELECT id FROM calls")}
    rx(machine, f"channel originate Local/{caller}@callproof-first-call application "
                "Playback demo-congrats&demo-congrats&demo-congrats")

    def new_call():
        rows = [r for r in query(machine, "SELECT * FROM calls") if r["id"] not in before]
        return rows[0] if rows and rows[0]["status"] in ("handed_off", "completed", "failed") else None

    call = machine.wait_until("the call handed off to the agents", new_call, timeout=120)
    time.sleep(3)  # the agents' part: Echo() of the customer's audio, recorded
    rx(machine, "channel request hangup all")

    def settled():
        row = query(machine, "SELECT * FROM calls WHERE id = ?", call["id"])[0]
        recordings = query(machine, "SELECT * FROM recordings WHERE call_id = ?", call["id"])
        sms = query(machine, "SELECT * FROM sms_outbox WHERE call_id = ?", call["id"])
        if row["status"] in ("completed", "failed") and recordings and recordings[0]["state"] != "recording" \
                and sms and sms[0]["state"] not in ("pending", "sending"):
            return {"call": row, "recording": recordings[0], "sms": sms[0]}
        return None

    return machine.wait_until("the call, its recording and its SMS settled", settled, timeout=60)


def check_call(machine: TargetMachine, result: dict) -> str:
    call, recording, sms = result["call"], result["recording"], result["sms"]
    assert call["status"] == "completed", call
    assert call["caller_number"] == "+55" + CALLER
    protocol = call["protocol"]
    assert len(protocol) == 17 and protocol.isdigit()
    assert recording["state"] == "finalised" and recording["duration_ms"] > 1000, recording
    owner, group, mode, size = uid_gid_names(machine, recording["path"])
    assert (owner, group, mode) == ("asterisk", "asterisk", 0o640)
    assert size == recording["size_bytes"] > 10_000
    assert sms["destination"] == "+55" + CALLER and protocol in sms["body"]
    assert sms["state"] in ("sent", "logged")  # the shipped config's `log` backend
    # a bare `callproof` (/usr/bin's wrapper: the installed config and secrets), as the operator
    shown = json.loads(machine.run(["callproof", "protocol", "show", protocol], user="asterisk").stdout)
    assert shown["call"]["protocol"] == protocol and shown["recordings"][0]["sha256"] == recording["sha256"]
    verified = machine.run(["callproof", "recording", "verify", protocol], user="asterisk", check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr  # signed with the generated key
    return protocol


def serve_on_postgresql(machine: TargetMachine, logs: Path, asterisk: Any, last_protocol: str) -> tuple[str, Any]:
    """docs/scale-out.md on the installed package: a PostgreSQL server on the machine's
    loopback (port 5432, a role and a "C" database as the docs create them, the password in
    the secrets file), ``[storage] url`` set, Asterisk restarted with a ``systemname`` (a node
    of several: doctor fails without one), the SQLite database imported (``callproof storage
    import``); the units started again find the PostgreSQL schema, and the next call continues
    the SQLite phase's sequence (``last_protocol`` + 1) and leaves its rows there, read by the
    installed commands too.  Debian's python3-psycopg is what the installed environment
    imports.  Returns the call's protocol and the running Asterisk."""
    import secrets

    from callproof.storage.pg_schema import load_pg_migrations
    from tests.pg_cluster import start_cluster

    where = machine.run(["/opt/callproof/bin/python", "-c", "import psycopg; print(psycopg.__file__)"],
                        user="asterisk").stdout.strip()
    assert where == "/usr/lib/python3/dist-packages/psycopg/__init__.py", where  # not a wheel in /opt
    password = secrets.token_urlsafe(18)
    cluster = start_cluster(tcp_password=secrets.token_urlsafe(18), netns_pid=machine.pid)
    try:
        cluster.execute(f"CREATE ROLE callproof LOGIN PASSWORD '{password}'")
        cluster.execute("CREATE DATABASE callproof OWNER callproof TEMPLATE template0"
                        " ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
        conf = machine.merged_path("/etc/callproof/callproof.toml")
        conf.write_text(conf.read_text().replace(
            "[storage]\n", '[storage]\nurl = "postgresql://callproof@127.0.0.1:5432/callproof"\n', 1))
        kept = machine.merged_path("/etc/callproof/secrets.env")
        kept.write_text(kept.read_text().rstrip("\n") + f"\nCALLPROOF_STORAGE_PASSWORD={password}\n")
        machine.stop(asterisk)
        named = machine.merged_path("/etc/asterisk/asterisk.conf")
        named.write_text(named.read_text().replace("[options]\n", "[options]\nsystemname = pbx-a\n", 1))
        asterisk = start_asterisk(machine, logs / "asterisk-named.log")
        read = pg_reader(cluster.url("callproof"))
        imported = machine.run(["callproof", "storage", "import", "--from", "/var/lib/callproof/callproof.db",
                                "--by", "admin"]).stdout
        assert any(line.split() == ["protocols", "2"] for line in imported.splitlines()), imported
        services = start_services(machine, logs)
        applied = [r["version"] for r in read(machine, "SELECT version FROM schema_migrations ORDER BY version")]
        assert applied and applied[-1] == load_pg_migrations()[-1].version, applied
        check_doctor(machine)
        protocol = check_call(machine, place_call(machine, CALLER, query=read))
        # the SQLite phase's two protocols came with the import: this one is the next, no repeat, no gap
        assert int(protocol) == int(last_protocol) + 1, (protocol, last_protocol)
        assert [r["protocol"] for r in read(machine, "SELECT protocol FROM protocols ORDER BY protocol")] == [
            str(int(protocol) - 2), last_protocol, protocol]
        assert [r["action"] for r in read(machine, "SELECT action FROM audit_log WHERE action = ?",
                                          "storage.imported")] == ["storage.imported"]
        actions = {r["action"] for r in read(machine, "SELECT action FROM audit_log WHERE protocol = ?", protocol)}
        assert "recording.finalised" in actions, actions
        rows = read(machine, "SELECT channel_id, node FROM calls WHERE protocol = ?", protocol)
        assert rows[0]["channel_id"].startswith("pbx-a-"), rows  # Asterisk's ids carry the node's name
        for process in services:
            machine.stop(process)
        return protocol, asterisk
    finally:
        cluster.stop()


def test_package_installs_serves_calls_and_upgrades(tmp_path: Path) -> None:
    _tools_or_skip()
    lower = sandbox_rootfs()
    logs = tmp_path / "logs"
    logs.mkdir()
    deb = build_deb(tmp_path / "dist")

    with TargetMachine(lower, tmp_path / "machine") as machine:
        # the admin's server: Debian's Asterisk running with its stock configuration (HTTP off)
        asterisk = start_asterisk(machine, logs / "asterisk-stock.log")
        assert "Server Disabled" in rx(machine, "http show status")
        began = time.monotonic()
        out = dpkg_install(machine, deb)
        installed = time.monotonic()
        # it reloaded exactly what it touched, and the running Asterisk took it: ARI is up
        for command in ("module reload http", "module reload res_ari.so", "module reload manager",
                        "dialplan reload"):
            assert f"reloaded asterisk -rx '{command}'" in out, out
        assert "Server Enabled and Bound to 127.0.0.1:8088" in rx(machine, "http show status")
        assert "callproof" in rx(machine, "ari show users")
        assert "callproof" in rx(machine, "manager show users")
        assert "callproof-entry" in rx(machine, "dialplan show callproof-first-call")

        # what the install left: generated strong secrets, files not world-readable
        assert uid_gid_names(machine, "/etc/callproof/secrets.env")[:3] == ("root", "asterisk", 0o640)
        assert uid_gid_names(machine, "/etc/callproof/callproof.toml")[:3] == ("root", "asterisk", 0o640)
        assert uid_gid_names(machine, "/etc/asterisk/callproof/ari.conf")[:3] == ("root", "asterisk", 0o640)
        secrets = parse_environment_file(machine.merged_path("/etc/callproof/secrets.env").read_text())
        check_password("ari.password", secrets["CALLPROOF_ARI_PASSWORD"], username="callproof")
        check_password("ami.password", secrets["CALLPROOF_AMI_PASSWORD"], username="callproof")
        check_secret("rights.identity_key", secrets["CALLPROOF_RIGHTS_IDENTITY_KEY"])
        assert len(secrets["CALLPROOF_RIGHTS_LINK_SECRET"]) >= 32
        for conf in ("http", "ari", "manager"):
            text = machine.merged_path(f"/etc/asterisk/{conf}.conf").read_text()
            assert text.count(f'#tryinclude "callproof/{conf}.conf"') == 1
        assert parse_unit(machine.merged_path(f"{UNITS}/callproof.service").read_text()).user == "asterisk"
        kept = {path: machine.merged_path(path).read_bytes() for path in
                ("/etc/callproof/callproof.toml", "/etc/callproof/secrets.env", "/etc/callproof/evidence/signing.pem",
                 "/etc/asterisk/extensions.conf", "/etc/asterisk/callproof/extensions.conf")}

        # docs/install.md's next step: restart Asterisk, so it runs with the drop-in's UMask=
        machine.stop(asterisk)
        asterisk = start_asterisk(machine, logs / "asterisk.log")
        services = start_services(machine, logs)
        sweep = machine.run_unit_once(f"{UNITS}/callproof-retention.service")
        assert sweep.returncode == 0, sweep.stdout + sweep.stderr
        check_doctor(machine)

        first = check_call(machine, place_call(machine, CALLER))
        first_call_at = time.monotonic()

        # the upgrade: the same package again, with Asterisk running and the units stopped
        # (what systemd does around a package upgrade)
        for process in services:
            machine.stop(process)
        out = dpkg_install(machine, deb)
        assert "Asterisk's configuration is unchanged: nothing to reload" in out, out
        for path, content in kept.items():
            assert machine.merged_path(path).read_bytes() == content, f"the upgrade changed {path}"
        for conf in ("http", "ari", "manager"):
            text = machine.merged_path(f"/etc/asterisk/{conf}.conf").read_text()
            assert text.count(f'#tryinclude "callproof/{conf}.conf"') == 1
        services = start_services(machine, logs)

        second = check_call(machine, place_call(machine, CALLER))
        assert int(second) == int(first) + 1  # the same gap-free sequence, the first call kept
        assert query(machine, "SELECT status FROM calls WHERE protocol = ?", first)[0]["status"] == "completed"
        for process in services:
            machine.stop(process)
        recording = query(machine, "SELECT path FROM recordings WHERE protocol = ?", first)[0]["path"]
        on_postgresql = time.monotonic()
        _, asterisk = serve_on_postgresql(machine, logs, asterisk, second)
        postgresql_s = time.monotonic() - on_postgresql

        # remove keeps the configuration, the secrets, the database and the recordings ...
        machine.run(["dpkg", "--remove", "callproof"])
        for path in ("/etc/callproof/secrets.env", "/var/lib/callproof/callproof.db", recording):
            assert machine.merged_path(path).exists(), f"apt remove deleted {path}"
        assert not machine.merged_path("/opt/callproof").exists()
        assert not machine.merged_path("/usr/bin/callproof").exists()
        # ... purge removes them, and the include lines, leaving the admin's files as they were
        machine.run(["dpkg", "--purge", "callproof"])
        for path in ("/etc/callproof", "/var/lib/callproof", "/var/spool/asterisk/callproof", recording,
                     "/etc/asterisk/callproof"):
            assert not machine.merged_path(path).exists(), f"apt purge left {path}"
        for conf in ("http", "ari", "manager", "extensions"):
            # (a file without a final newline keeps the one the install added)
            after = machine.merged_path(f"/etc/asterisk/{conf}.conf").read_bytes()
            before = lower.joinpath(f"etc/asterisk/{conf}.conf").read_bytes()
            assert after.rstrip(b"\n") == before.rstrip(b"\n"), f"purge left {conf}.conf changed"
        machine.stop(asterisk)

    timings = {"install_s": round(installed - began, 1),
               "bare_to_first_recorded_call_s": round(first_call_at - began, 1),
               "postgresql_switch_and_call_s": round(postgresql_s, 1)}
    print(f"package test timings: {json.dumps(timings)}")
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()[:12]
    print(f"package {deb.name} sha256 {digest}")
