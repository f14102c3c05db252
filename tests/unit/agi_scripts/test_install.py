"""The agi-bin installer: the wrapper it writes and what it says the script will use
(the dialplan's fallback must write to callproof run's database)."""

from __future__ import annotations

import sys

from callproof.agi_scripts.install import WRAPPER_NAME, main


def test_install_writes_the_wrapper_and_names_the_database(tmp_path, capsys):
    config = tmp_path / "callproof.toml"
    config.write_text(f'[storage]\ndatabase = "{tmp_path}/cp.db"\n[recording]\nroot = "{tmp_path}/rec"\n')
    assert main(["--agi-bin", str(tmp_path / "agi-bin"), "--config", str(config)]) == 0
    wrapper = tmp_path / "agi-bin" / WRAPPER_NAME
    text = wrapper.read_text()
    assert wrapper.stat().st_mode & 0o777 == 0o750
    assert sys.executable in text and f"--config {config}" in text
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(wrapper)
    assert f"database {tmp_path}/cp.db" in out and f"recordings {tmp_path}/rec" in out


def test_a_config_that_does_not_load_is_a_warning(tmp_path, capsys):
    config = tmp_path / "callproof.toml"
    config.write_text("[storage]\nno_such_key = 1\n")
    assert main(["--agi-bin", str(tmp_path / "agi-bin"), "--config", str(config)]) == 0
    err = capsys.readouterr().err
    assert "does not load here" in err and "config_error" in err


def test_the_bundle_never_carries_a_compiled_cryptography(tmp_path):
    """The classic script signs with the cryptography of the Python that runs it (a chroot's:
    Debian's python3-cryptography); a copy of this virtualenv's build, compiled for another
    Python, would shadow it and leave every record unsigned."""
    from callproof.agi_scripts.install import bundle

    dest = bundle(tmp_path / "lib")
    top = {p.name for p in dest.iterdir()}
    assert "callproof" in top and not {"cryptography", "_cffi_backend", "cffi"} & top
    assert not list(dest.rglob("*.so")), "compiled modules in the bundle would be for this Python only"
    assert (dest / "callproof" / "evidence" / "records.py").is_file()
