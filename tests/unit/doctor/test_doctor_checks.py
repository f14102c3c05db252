"""The doctor's checks that need no Asterisk: what the service user may do (from modes),
secret files, prompts and digits, folders, SMS backend, retention, web secrets, and the
exit statuses (0 all OK, 1 a FAIL, 2 only WARNs)."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path, PurePosixPath

import pytest

from callproof.config import Config, RetentionConfig, RightsConfig, SmsConfig, Sources, StorageConfig
from callproof.config.sections import PromptsConfig, RecordingConfig
from callproof.doctor.access import R, W, Who, X, denied
from callproof.doctor.checks_files import check_prompts, check_secret_files, check_storage, inside
from callproof.doctor.checks_setup import check_retention, check_sms_backend, check_web_secrets
from callproof.doctor.report import Result, exit_status, fail, ok, print_report, warn


@pytest.fixture
def tmp_path():
    with tempfile.TemporaryDirectory(prefix="callproof-doctor-", dir="/var/tmp") as where:
        os.chmod(where, 0o755)
        yield Path(where)


def generate_prompts(folder: Path, language: str = "pt_BR") -> None:
    """The files the catalogue looks for (their content does not matter to the doctor)."""
    for name in ("consent", "protocol-is", *(f"digits/{d}" for d in "0123456789")):
        path = folder / language / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF")

STRANGER = Who("svc", 4242, frozenset({4242}))  # owns nothing here, in no group of ours


def test_exit_statuses():
    assert exit_status([ok("a", "")]) == 0
    assert exit_status([ok("a", ""), warn("b", "", "x")]) == 2
    assert exit_status([warn("b", "", "x"), fail("c", "", "y")]) == 1


def test_a_line_carries_its_fix(capsys):
    results = [ok("config", "valid"), fail("ari-login", "HTTP 401", "check ari.conf")]
    assert print_report(results, __import__("sys").stdout) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "OK    config         valid"
    assert out[1] == "FAIL  ari-login      HTTP 401 -- fix: check ari.conf"
    assert out[2] == "doctor: 1 OK, 0 WARN, 1 FAIL (exit 1)"
    assert Result("x", "OK", "d", "ignored").line().endswith("d")


def test_access_follows_modes_and_folders(tmp_path):
    f = tmp_path / "f"
    f.write_text("")
    f.chmod(0o640)
    assert denied(f, STRANGER, R) is not None and "may not r" in denied(f, STRANGER, R)
    f.chmod(0o644)
    assert denied(f, STRANGER, R) is None and denied(f, STRANGER, W) is not None
    mine = Who("svc", os.getuid(), frozenset({os.getgid()}))
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    (closed / "g").write_text("")
    os.chown(closed, 4343, 4343) if os.geteuid() == 0 else None
    if os.geteuid() == 0:
        assert "cannot enter" in denied(closed / "g", STRANGER, R)
    assert denied(tmp_path / "absent", mine, R).endswith("does not exist")
    assert denied(tmp_path, mine, W | X) is None


def test_inside_a_chroot_absolute_links_start_again_at_its_root(tmp_path):
    (tmp_path / "usr/share/asterisk/sounds/en_US_f_Allison/digits").mkdir(parents=True)
    (tmp_path / "etc/alternatives").mkdir(parents=True)
    os.symlink("/usr/share/asterisk/sounds/en_US_f_Allison", tmp_path / "etc/alternatives/asterisk-prompt-en")
    os.symlink("/etc/alternatives/asterisk-prompt-en", tmp_path / "usr/share/asterisk/sounds/en")
    found = inside(tmp_path, PurePosixPath("/usr/share/asterisk/sounds/en/digits"))
    assert found == tmp_path / "usr/share/asterisk/sounds/en_US_f_Allison/digits"


def _config(tmp_path: Path, **kw) -> Config:
    return dataclasses.replace(
        Config(), storage=StorageConfig(database=tmp_path / "db" / "cp.db"),
        recording=RecordingConfig(root=tmp_path / "rec"), prompts=PromptsConfig(directory=tmp_path / "prompts"),
        **kw)


def test_secret_files_readable_by_everyone_fail(tmp_path):
    secrets = tmp_path / "secrets.env"
    secrets.write_text("CALLPROOF_ARI_PASSWORD=x\n")
    secrets.chmod(0o644)
    sources = Sources(secrets_file=secrets)
    result = check_secret_files(_config(tmp_path), sources)
    assert result.status == "FAIL" and f"secrets {secrets} is mode 0644" in result.detail
    secrets.chmod(0o600)
    assert check_secret_files(_config(tmp_path), sources) == ok("secret-files", f"{secrets} 0600")


def test_prompts_missing_then_present(tmp_path):
    mine = Who("svc", os.getuid(), frozenset({os.getgid()}))
    config = _config(tmp_path, general=dataclasses.replace(Config().general, languages=("pt_BR",)))
    [missing] = check_prompts(config, mine, tmp_path)
    assert missing.status == "FAIL" and "consent.wav" in missing.detail and "prompts generate" in missing.fix
    generate_prompts(config.prompts.directory)
    [present] = check_prompts(config, mine, tmp_path)
    assert present == ok("prompts pt_BR", "2 prompts and 10 digits, readable by svc")


def test_a_jurisdictions_language_offered_where_installed_is_a_warning_not_a_failure(tmp_path):
    """Profile ``es`` offers gl where installed: doctor warns that callers are not offered it
    (the service starts without it); once named explicitly (the default language), it fails."""
    mine = Who("svc", os.getuid(), frozenset({os.getgid()}))
    config = _config(tmp_path, general=dataclasses.replace(Config().general, languages=("pt_BR", "gl")))
    generate_prompts(config.prompts.directory)
    results = {r.check: r for r in check_prompts(config, mine, tmp_path, ("ca", "eu", "gl"))}
    assert results["prompts pt_BR"].status == "OK"
    assert results["prompts gl"].status == "WARN" and "not offered to callers until installed" in \
        results["prompts gl"].detail and "custom/gl/" in results["prompts gl"].fix
    named = dataclasses.replace(config, general=dataclasses.replace(config.general, default_language="gl"))
    assert {r.check: r for r in check_prompts(named, mine, tmp_path, ("gl",))}["prompts gl"].status == "FAIL"


def test_core_digits_missing_name_the_sounds_package(tmp_path):
    mine = Who("svc", os.getuid(), frozenset({os.getgid()}))
    config = _config(tmp_path, general=dataclasses.replace(Config().general, languages=("pt_BR", "es"),
                                                           default_language="pt_BR"))
    generate_prompts(config.prompts.directory)
    generate_prompts(config.prompts.directory, "es")  # es digits come from Asterisk's sounds, not these
    results = {r.check: r for r in check_prompts(config, mine, tmp_path)}
    assert results["prompts es"].status == "FAIL"
    assert results["prompts es"].fix.startswith("apt install asterisk-core-sounds-es")
    digits = tmp_path / "usr/share/asterisk/sounds/es_MX_f_Allison/digits"
    digits.mkdir(parents=True)
    for d in "0123456789":
        (digits / f"{d}.gsm").write_bytes(b"x")
    assert {r.check: r for r in check_prompts(config, mine, tmp_path)}["prompts es"].status == "OK"


def test_storage_folders(tmp_path):
    mine = Who("svc", os.getuid(), frozenset({os.getgid()}))
    config = _config(tmp_path)
    db, rec = check_storage(config, mine)
    assert db.status == rec.status == "FAIL" and db.fix.startswith("install -d -o svc -g svc -m 0750")
    (tmp_path / "db").mkdir()
    (tmp_path / "rec").mkdir()
    assert [r.status for r in check_storage(config, mine)] == ["OK", "OK"]


@pytest.mark.skipif(os.geteuid() != 0, reason="a file owned by another user needs root")
def test_a_root_owned_lock_file_is_named(tmp_path):
    config = _config(tmp_path)
    (tmp_path / "db").mkdir()
    (tmp_path / "rec").mkdir()
    for folder in (tmp_path, tmp_path / "db", tmp_path / "rec"):
        os.chown(folder, 4242, 4242)
    lock = tmp_path / "db" / "cp.db.retention.lock"
    lock.write_text("")
    lock.chmod(0o600)
    db, _ = check_storage(config, STRANGER)
    assert db.status == "FAIL" and str(lock) in db.detail and db.fix.startswith(f"chown svc: {lock}")


def test_sms_retention_and_web_secrets(tmp_path):
    config = _config(tmp_path)
    assert check_sms_backend(config).status == "WARN"
    assert check_sms_backend(dataclasses.replace(config, sms=SmsConfig(backend="smpp"))).status == "OK"
    nowhere = tmp_path / "none"
    assert check_retention(config, systemd=nowhere, cron=nowhere).status == "WARN"
    cron = tmp_path / "cron"
    cron.write_text("")
    assert check_retention(config, systemd=nowhere, cron=cron).status == "OK"
    in_run = dataclasses.replace(config, retention=RetentionConfig(sweep_in_run=True))
    assert check_retention(in_run, systemd=nowhere, cron=nowhere).status == "OK"
    assert check_web_secrets(config).status == "WARN"
    keyed = dataclasses.replace(config, rights=RightsConfig(identity_key="k" * 40, link_secret="s" * 40))
    assert check_web_secrets(keyed).status == "OK"
