"""The configuration's files: the TOML file the commands read by default, and the secrets
file beside it.

The secrets file is a systemd ``EnvironmentFile`` (``CALLPROOF_ARI_PASSWORD=…``, one a
line; ``#`` comments, an optional ``export``, optional single or double quotes): the shipped
units hand it to the service as its environment, and the commands read it themselves so
that ``callproof check-config`` or ``callproof doctor`` typed by an administrator see the
same secrets as the service.  The parser is the small subset of systemd's syntax those
files use, written here rather than adding python-dotenv, whose syntax (variable expansion,
multi-line values) is not systemd's: a file that works for one would mean something else
to the other.

Precedence: the real environment, then the secrets file, then the TOML file.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

#: What the commands read when neither ``--config`` nor ``CALLPROOF_CONFIG`` names a file.
DEFAULT_CONFIG = Path("/etc/callproof/callproof.toml")
#: The secrets file's name beside the configuration file (``[general] secrets_file`` overrides it).
SECRETS_NAME = "secrets.env"
SECRETS_ENV = "CALLPROOF_GENERAL_SECRETS_FILE"

_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


@dataclass
class Sources:
    """Which files a configuration came from (``check-config`` and ``doctor`` print them)."""
    config_file: Path | None = None
    secrets_file: Path | None = None
    secrets_read: bool = False
    secrets_note: str = ""  # why the secrets file was not read
    notes: list[str] = field(default_factory=list)
    #: the ``[general] jurisdiction`` profile applied ("" = none), and the keys it gave a value
    jurisdiction: str = ""
    from_profile: list[str] = field(default_factory=list)
    #: the CALLPROOF_* values the secrets file held (a command that drops root keeps them)
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        parts = [f"read {self.config_file}" if self.config_file else
                 "no configuration file (built-in defaults; give --config or create "
                 f"{DEFAULT_CONFIG})"]
        if self.secrets_file is not None:
            parts.append(f"read {self.secrets_file}" if self.secrets_read
                         else f"{self.secrets_file} {self.secrets_note}")
        return "; ".join(parts)

    def describe_profile(self) -> str:
        """Which jurisdiction profile applied, and the keys whose value came from it."""
        if not self.jurisdiction:
            return "no jurisdiction profile ([general] jurisdiction unset): built-in defaults"
        keys = ", ".join(self.from_profile) or "none (every key it sets is set explicitly)"
        return f"jurisdiction profile {self.jurisdiction!r}; values from it: {keys}"


def config_path(path: Path | str | None, env: Mapping[str, str], default: Path | None) -> Path | None:
    """The TOML file to read: ``path`` (``--config``), ``$CALLPROOF_CONFIG``, else ``default`` if it exists."""
    chosen = path or env.get("CALLPROOF_CONFIG")
    if chosen:
        return Path(chosen)
    return default if default is not None and default.exists() else None


def parse_env_file(path: Path, text: str) -> dict[str, str]:
    """``NAME=value`` lines; ConfigError naming the file and line (never the value)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        m = _LINE.match(line)
        if m is None:
            raise ConfigError("general.secrets_file", f"{path} line {number}: expected NAME=value")
        name, value = m.group(1), m.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def secrets_path(config_file: Path | None, data: Mapping[str, Any], env: Mapping[str, str]) -> Path | None:
    """The secrets file to read: ``$CALLPROOF_GENERAL_SECRETS_FILE``, ``[general] secrets_file``,
    else ``secrets.env`` beside the configuration file (none without one)."""
    named = env.get(SECRETS_ENV) or (data.get("general") or {}).get("secrets_file")
    if named:
        if not isinstance(named, str):
            raise ConfigError("general.secrets_file", f"expected a path, got {named!r}")
        return Path(named)
    return config_file.with_name(SECRETS_NAME) if config_file is not None else None


def read_secrets(path: Path, sources: Sources) -> dict[str, str]:
    """The secrets file's values, or {} when it is absent or this user may not read it
    (the service, not root, gets them from systemd's EnvironmentFile= instead)."""
    sources.secrets_file = path
    try:
        with path.open("rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            text = fh.read().decode("utf-8")
    except FileNotFoundError:
        sources.secrets_note = "not there (secrets only from the environment)"
        return {}
    except PermissionError:
        sources.secrets_note = "not readable by this user (secrets only from the environment)"
        return {}
    except UnicodeDecodeError:
        raise ConfigError("general.secrets_file", f"{path} is not UTF-8 text") from None
    perms = stat.S_IMODE(mode)
    if perms & (stat.S_IROTH | stat.S_IWOTH):
        raise ConfigError("general.secrets_file", f"{path} is readable or writable by every user (mode "
                                                  f"{perms:04o}); chmod 0600 {path}")
    values = parse_env_file(path, text)
    unknown = sorted(n for n in values if not n.startswith("CALLPROOF_"))
    if unknown:
        sources.notes.append(f"{path}: ignored {', '.join(unknown)} (not CALLPROOF_*)")
    sources.secrets_read = True
    sources.secret_env = {k: v for k, v in values.items() if k.startswith("CALLPROOF_")}
    return dict(sources.secret_env)
