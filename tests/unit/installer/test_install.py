"""`callproof install` into a folder: what an admin's machine ends up with, and that a
second run (an upgrade) changes nothing and reloads nothing."""

from __future__ import annotations

import getpass
import shutil
import stat
from pathlib import Path

import pytest

from callproof.config import ConfigError, load_config
from callproof.installer import Layout, install
from callproof.installer.asterisk_conf import MARKER
from callproof.installer.secrets_file import read_values

REPO = Path(__file__).resolve().parents[3]

STOCK = {  # shaped like Debian's: HTTP and the manager off, a [general] in each
    "http.conf": "[general]\n;enabled=yes\nservername=Asterisk\n",
    "ari.conf": "[general]\nenabled = yes\npretty = yes\n",
    "manager.conf": "[general]\nenabled = no\nport = 5038\nbindaddr = 0.0.0.0\n",
    "extensions.conf": "[general]\nstatic=yes\n\n[default]\nexten => 100,1,Playback(hello-world)\n",
}


class FakeAsterisk:
    def __init__(self, running: bool = True):
        self.running = running
        self.commands: list[str] = []

    def __call__(self, command: str) -> tuple[int, str]:
        if not self.running:
            return 1, "Unable to connect to remote asterisk"
        if command != "core show version":
            self.commands.append(command)
        return 0, "ok"


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    layout = Layout(root=tmp_path, user=getpass.getuser())
    layout.share.mkdir(parents=True)
    shutil.copyfile(REPO / "deploy" / "callproof.toml.example", layout.config_template)
    shutil.copytree(REPO / "dialplan", layout.shipped_dialplan, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    layout.asterisk_etc.mkdir(parents=True)
    for name, text in STOCK.items():
        (layout.asterisk_etc / name).write_text(text)
    return layout


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generated_secrets_are_strong_and_the_services_accept_them(layout: Layout) -> None:
    install(layout, rx=FakeAsterisk(running=False), prompts=False)
    values = read_values(layout.secrets)
    assert set(values) == {"CALLPROOF_ARI_PASSWORD", "CALLPROOF_AMI_PASSWORD",
                           "CALLPROOF_RIGHTS_IDENTITY_KEY", "CALLPROOF_RIGHTS_LINK_SECRET"}
    assert len(set(values.values())) == 4
    assert stat.S_IMODE(layout.secrets.stat().st_mode) == 0o640
    assert stat.S_IMODE(layout.config.stat().st_mode) == 0o640
    config = load_config(layout.config, env=values, require_asterisk_apis=True)  # what `callproof run` checks
    assert config.ari.password == values["CALLPROOF_ARI_PASSWORD"]
    assert config.rights.identity_key == values["CALLPROOF_RIGHTS_IDENTITY_KEY"]
    assert str(config.evidence.signing_key) == "/etc/callproof/evidence/signing.pem"
    assert stat.S_IMODE(layout.signing_key.stat().st_mode) == 0o600
    ari = (layout.asterisk_snippets / "ari.conf").read_text()
    assert f"password = {values['CALLPROOF_ARI_PASSWORD']}" in ari
    assert f"secret = {values['CALLPROOF_AMI_PASSWORD']}" in (layout.asterisk_snippets / "manager.conf").read_text()
    assert stat.S_IMODE((layout.asterisk_snippets / "ari.conf").stat().st_mode) == 0o640


def test_the_admins_files_only_gain_include_lines(layout: Layout) -> None:
    install(layout, rx=FakeAsterisk(running=False), prompts=False)
    for name, stock in STOCK.items():
        text = (layout.asterisk_etc / name).read_text()
        assert text.startswith(stock), name
        assert text[len(stock):].splitlines()[0] == MARKER
    assert (layout.asterisk_etc / "http.conf").read_text().endswith('#tryinclude "callproof/http.conf"\n')
    extensions = (layout.asterisk_etc / "extensions.conf").read_text()
    assert '#tryinclude "/usr/share/callproof/dialplan/callproof.conf"' in extensions
    assert '#tryinclude "callproof/extensions.conf"' in extensions
    # the admin's [general] is added to, not replaced
    assert (layout.asterisk_snippets / "http.conf").read_text().count("[general](+)\nenabled = yes\n") == 1
    assert "[general](+)\nenabled = yes\nport = 5038\nbindaddr = 127.0.0.1" in \
        (layout.asterisk_snippets / "manager.conf").read_text()
    site = (layout.asterisk_snippets / "extensions.conf").read_text()
    assert "[callproof-agents]" in site and "[callproof-first-call]" in site


def test_a_second_run_changes_nothing_and_reloads_nothing(layout: Layout) -> None:
    asterisk = FakeAsterisk()
    first = install(layout, rx=asterisk, prompts=False)
    assert sorted(first.reloaded) == ["dialplan reload", "module reload http", "module reload manager",
                                      "module reload res_ari.so"]
    before = _snapshot(layout.root)
    asterisk.commands.clear()
    second = install(layout, rx=asterisk, prompts=False)
    assert _snapshot(layout.root) == before
    assert asterisk.commands == [] and second.reloaded == []
    assert "nothing to reload" in " ".join(second.notes)


def test_only_what_changed_is_reloaded(layout: Layout) -> None:
    asterisk = FakeAsterisk()
    install(layout, rx=asterisk, prompts=False)
    config_before = layout.config.read_bytes()
    text = layout.secrets.read_text()
    old = read_values(layout.secrets)["CALLPROOF_AMI_PASSWORD"]
    layout.secrets.write_text(text.replace(old, "Zr8-kQ2vWx5mLp9t"))  # the admin's own password
    asterisk.commands.clear()
    report = install(layout, rx=asterisk, prompts=False)
    assert asterisk.commands == ["module reload manager"] and report.reloaded == ["module reload manager"]
    assert "secret = Zr8-kQ2vWx5mLp9t" in (layout.asterisk_snippets / "manager.conf").read_text()
    assert layout.config.read_bytes() == config_before


def test_a_new_shipped_dialplan_is_reloaded(layout: Layout) -> None:
    asterisk = FakeAsterisk()
    install(layout, rx=asterisk, prompts=False)
    (layout.shipped_dialplan / "callproof.conf").write_text("; a newer release\n")
    asterisk.commands.clear()
    install(layout, rx=asterisk, prompts=False)
    assert asterisk.commands == ["dialplan reload"]


def test_asterisk_not_running_is_said_not_failed(layout: Layout) -> None:
    report = install(layout, rx=FakeAsterisk(running=False), prompts=False)
    assert report.reloaded == []
    assert any("Asterisk is not running" in note for note in report.notes)


def test_an_http_server_the_admin_enabled_is_kept_and_used(layout: Layout) -> None:
    (layout.asterisk_etc / "http.conf").write_text("[general]\nenabled=yes\nbindaddr=0.0.0.0\nbindport=8080\n")
    (layout.asterisk_etc / "manager.conf").write_text("[general]\nenabled = yes\nport = 5039\n")
    install(layout, rx=FakeAsterisk(running=False), prompts=False)
    assert "enabled" not in (layout.asterisk_snippets / "http.conf").read_text().split("\n", 1)[1]
    assert "[general]" not in (layout.asterisk_snippets / "manager.conf").read_text()
    values = read_values(layout.secrets)
    config = load_config(layout.config, env=values)
    assert config.ari.url == "http://127.0.0.1:8080/" and config.ami.port == 5039


def test_a_file_without_general_gets_a_plain_section(layout: Layout) -> None:
    (layout.asterisk_etc / "ari.conf").unlink()
    install(layout, rx=FakeAsterisk(running=False), prompts=False)
    assert (layout.asterisk_snippets / "ari.conf").read_text().splitlines()[1] == "[general]"
    assert (layout.asterisk_etc / "ari.conf").read_text().endswith('#tryinclude "callproof/ari.conf"\n')


def test_the_admins_config_and_site_dialplan_are_never_rewritten(layout: Layout) -> None:
    install(layout, rx=FakeAsterisk(running=False), prompts=False)
    layout.config.write_text(layout.config.read_text() + "\n# mine\n")
    site = layout.asterisk_snippets / "extensions.conf"
    site.write_text("[callproof-agents]\nexten => s,1,Queue(support)\n")
    install(layout, rx=FakeAsterisk(running=False), prompts=False)
    assert layout.config.read_text().endswith("# mine\n")
    assert site.read_text() == "[callproof-agents]\nexten => s,1,Queue(support)\n"


def test_a_weak_password_already_in_the_secrets_file_stops_the_install(layout: Layout) -> None:
    layout.etc.mkdir(parents=True)
    layout.secrets.write_text("CALLPROOF_ARI_PASSWORD=asterisk\n")
    with pytest.raises(ConfigError, match=r"ari\.password"):
        install(layout, rx=FakeAsterisk(running=False), prompts=False)


def test_the_agi_wrapper_names_the_installed_python_and_config(layout: Layout) -> None:
    install(layout, rx=FakeAsterisk(running=False), prompts=False)
    wrapper = (layout.agi_bin / "callproof-agi").read_text()
    assert "exec /opt/callproof/bin/python -m callproof.agi_scripts.callproof_agi" in wrapper
    assert "--config /etc/callproof/callproof.toml" in wrapper


def test_an_unknown_service_user_is_a_clear_error(tmp_path: Path) -> None:
    from callproof.installer.steps import InstallError
    with pytest.raises(InstallError, match="apt install asterisk"):
        install(Layout(root=tmp_path, user="no-such-user-callproof"), rx=None, prompts=False)


def test_an_admins_file_that_is_a_link_stays_a_link(layout: Layout) -> None:
    real = layout.root / "srv" / "asterisk-config" / "manager.conf"
    real.parent.mkdir(parents=True)
    (layout.asterisk_etc / "manager.conf").rename(real)
    (layout.asterisk_etc / "manager.conf").symlink_to(real)
    install(layout, rx=FakeAsterisk(running=False), prompts=False)
    assert (layout.asterisk_etc / "manager.conf").is_symlink()
    assert real.read_text().endswith('#tryinclude "callproof/manager.conf"\n')


def test_the_command_refuses_to_install_on_this_machine_without_root(monkeypatch, capsys) -> None:
    from callproof.cli import main
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert main(["install"]) == 1
    assert "run it as root" in capsys.readouterr().err
