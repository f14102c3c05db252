"""``callproof keys …``: what an operator runs and sees, and the audit entries each writes."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from callproof.cli import main
from callproof.encryption.keyring import PrivateKeyring, PublicKeyring
from callproof.storage import connect_sync


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "callproof.toml"
    path.write_text(f"""
[storage]
database = "{tmp_path / 'cp.db'}"
[recording]
root = "{tmp_path / 'rec'}"
[encryption]
enabled = true
public_keys_dir = "{tmp_path / 'pbx' / 'public'}"
private_keys_dir = "{tmp_path / 'keys' / 'private'}"
months_ahead = 3
""")
    path.chmod(0o600)
    return path


def _run(cfg: Path, *argv: str) -> int:
    return main(["--config", str(cfg), "keys", *argv, "--by", "alice"])


def _audit(tmp_path: Path) -> list[tuple[str, str, dict]]:
    conn = connect_sync(tmp_path / "cp.db")
    rows = conn.execute("SELECT action, actor, details FROM audit_log WHERE action LIKE 'keys.%' ORDER BY id")
    found = [(a, who, json.loads(d)) for a, who, d in rows.fetchall()]
    conn.close()
    return found


def test_init_list_rotate_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    assert _run(cfg, "init") == 0
    out = capsys.readouterr().out
    assert "hold key hold-1" in out and "enabled = true" in out
    private = PrivateKeyring.from_dir(tmp_path / "keys" / "private")
    # two classes by default (consumer_service 90 days, mobile_telecom 180), 3 months ahead + 2
    assert len(private.key_ids()) == 1 + 2 * 5
    assert stat.S_IMODE((tmp_path / "keys" / "private").stat().st_mode) == 0o700
    public = PublicKeyring.from_dir(tmp_path / "pbx" / "public")
    assert public.key_ids() == private.key_ids()
    secrets = [i.secret_string() for i in private.identities()]

    assert _run(cfg, "init") == 1
    assert "keys rotate" in capsys.readouterr().err

    assert _run(cfg, "list") == 0
    listing = capsys.readouterr().out
    assert private.identity("hold-1").recipient.fingerprint in listing
    assert "active" in listing and not any(s in listing for s in secrets)

    assert _run(cfg, "rotate", "--hold") == 0
    assert "hold-2" in capsys.readouterr().out
    assert PrivateKeyring.from_dir(tmp_path / "keys" / "private").hold_key_id == "hold-2"

    elsewhere = tmp_path / "pbx2"
    assert _run(cfg, "export-public", "--to", str(elsewhere)) == 0
    assert "12 written" in capsys.readouterr().out
    assert not any("AGE-SECRET" in p.read_text() for p in elsewhere.iterdir())

    assert _run(cfg, "destroy-expired") == 0
    assert "no key is due" in capsys.readouterr().out
    assert _run(cfg, "retire-hold", "hold-2") == 1
    assert "current hold key" in capsys.readouterr().err
    assert _run(cfg, "retire-hold", "hold-1") == 0
    assert "hold-1: destroyed" in capsys.readouterr().out

    actions = _audit(tmp_path)
    assert [a for a, _, _ in actions] == ["keys.created", "keys.exported", "keys.listed", "keys.created",
                                          "keys.exported", "keys.exported", "keys.destroyed", "keys.exported"]
    assert all(who == "alice" for _, who, _ in actions)
    created = actions[0][2]["keys"]
    assert created["hold-1"] == private.identity("hold-1").recipient.fingerprint
    assert not any(s in json.dumps(actions) for s in secrets)


def test_commands_on_a_host_without_private_keys_say_what_is_missing(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    assert _run(cfg, "destroy-expired") == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "keys" / "private") in err and "does not exist" in err
    assert _run(cfg, "export-public") == 1
    assert "callproof keys init" in capsys.readouterr().err
