"""Where an installed callproof keeps its files.

Every path hangs off ``root`` ("/" on a real machine), so that the unit tests install
into a temporary folder and the integration test into a copy of a Debian root file
system.  The paths are the ones the shipped systemd units, the example configuration
and the Debian package name: change them together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Debian's Asterisk runs as this user and group; callproof's files belong to it.
SERVICE_USER = "asterisk"


@dataclass(frozen=True)
class Layout:
    root: Path = Path("/")
    user: str = SERVICE_USER

    def _at(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    # -- callproof's own ------------------------------------------------------
    @property
    def etc(self) -> Path:
        return self._at("/etc/callproof")

    @property
    def config(self) -> Path:
        return self.etc / "callproof.toml"

    @property
    def secrets(self) -> Path:
        return self.etc / "secrets.env"

    @property
    def evidence_dir(self) -> Path:
        return self.etc / "evidence"

    @property
    def signing_key(self) -> Path:
        return self.evidence_dir / "signing.pem"

    @property
    def share(self) -> Path:
        """What the package ships read-only: the example config, the dialplan, the wheels."""
        return self._at("/usr/share/callproof")

    @property
    def config_template(self) -> Path:
        return self.share / "callproof.toml.example"

    @property
    def shipped_dialplan(self) -> Path:
        return self.share / "dialplan"

    @property
    def var_lib(self) -> Path:
        return self._at("/var/lib/callproof")

    @property
    def recordings(self) -> Path:
        return self._at("/var/spool/asterisk/callproof")

    @property
    def log_dir(self) -> Path:
        return self._at("/var/log/callproof")

    @property
    def venv(self) -> Path:
        return self._at("/opt/callproof")

    # -- Asterisk's -----------------------------------------------------------
    @property
    def asterisk_etc(self) -> Path:
        return self._at("/etc/asterisk")

    @property
    def asterisk_snippets(self) -> Path:
        """callproof's own Asterisk configuration files, included from the admin's."""
        return self.asterisk_etc / "callproof"

    @property
    def agi_bin(self) -> Path:
        return self._at("/usr/share/asterisk/agi-bin")

    def inside(self, path: Path) -> str:
        """``path`` as the installed machine sees it (without the ``root`` prefix)."""
        relative = path.relative_to(self.root)
        return "/" if relative == Path(".") else f"/{relative}"
