"""The configuration the call-flow unit tests share: a database and recording
root under the test's tmp_path, strong test passwords, no replay window (the
scripted channels answer at once).  ``extra`` is appended TOML (more sections)."""

from __future__ import annotations

from pathlib import Path

from callproof.config import Config, load_config


def write_flow_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "callproof.toml"
    path.write_text(f"""
[storage]
database = "{tmp_path / 'cp.db'}"
[ari]
password = "unit-test-ari-password"
[ami]
password = "unit-test-ami-password"
[recording]
root = "{tmp_path / 'rec'}"
[protocol_reading]
replay_window_ms = 0
{extra}""")
    path.chmod(0o600)  # it holds secrets: a world-readable file is refused
    return path


def flow_config(tmp_path: Path, extra: str = "") -> Config:
    return load_config(write_flow_config(tmp_path, extra), env={})
