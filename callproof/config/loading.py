"""Reading the configuration: the TOML file, then the environment over it, each value
converted to its field's declared type; the result is validated before it is returned.

Environment overrides: ``CALLPROOF_<SECTION>_<KEY>`` (upper case, dots as underscores),
e.g. ``CALLPROOF_ARI_PASSWORD`` overrides ``[ari] password``.  The file's path comes from
``--config`` or ``CALLPROOF_CONFIG`` (the CLI falls back to ``/etc/callproof/callproof.toml``);
the secrets file beside it (``secrets.env``) is read too, see :mod:`.secrets_file`.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from .checks import check_file_mode
from .errors import ConfigError
from .jurisdictions import chosen_jurisdiction, profile_defaults
from .secrets_file import Sources, config_path, read_secrets, secrets_path
from .sections import SECTION_CLASSES, SUBSECTION_CLASSES, Config
from .validation import validate

ENV_PREFIX = "CALLPROOF_"
CONFIG_ENV = "CALLPROOF_CONFIG"


def _coerce(key: str, value: Any, annotation: str, *, from_env: bool = False) -> Any:
    """Convert a TOML or environment value to the declared field type.  Only an
    environment value (always a string) is parsed: in the file, ``port = "5038"`` or
    ``secure_cookies = "yes"`` is a string where a number or a boolean belongs."""
    if from_env and not isinstance(value, str):  # pragma: no cover - the environment holds strings
        raise TypeError(f"environment value for {key} is not a string")
    ann = annotation.replace(" ", "")
    try:
        if ann == "bool":
            if from_env:
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return _require(value, bool)
        if ann == "str":
            if not isinstance(value, str):
                raise TypeError
            return value
        if ann == "int":
            if isinstance(value, bool):
                raise TypeError
            return int(value) if from_env else _require(value, int)
        if ann == "float":
            if isinstance(value, bool):
                raise TypeError
            number = float(value) if from_env or isinstance(value, int) else _require(value, float)
            if not math.isfinite(number):
                raise ConfigError(key, f"must be a finite number, got {value!r}")
            return number
        if ann in ("Path", "Path|None"):
            if ann == "Path|None" and value in ("", None):
                return None
            if not isinstance(value, str) or not value:
                raise TypeError
            return Path(value)
        if ann == "tuple[str,...]":
            items = value.split(",") if from_env else _require(value, list)
            return tuple(_require(i.strip() if from_env else i, str) for i in items)
        if ann == "tuple[int,...]":
            items = value.split(",") if from_env else _require(value, list)
            return tuple(int(i) if from_env else _require(i, int) for i in items)
        if ann == "Mapping[str,str]":
            table = _require(value, dict)
            return {str(k): _require(v, str) for k, v in table.items()}
        if ann == "Mapping[str,int]":
            table = _require(value, dict)
            if any(isinstance(v, bool) for v in table.values()):
                raise TypeError
            return {str(k): _require(v, int) for k, v in table.items()}
    except ConfigError:
        raise
    except (TypeError, ValueError):
        raise ConfigError(key, f"expected {annotation}, got {value!r}") from None
    raise ConfigError(key, f"unsupported type {annotation}")  # pragma: no cover


def _require(value: Any, kind: type) -> Any:
    if not isinstance(value, kind):
        raise TypeError
    return value


def _build_section(name: str, table: Mapping[str, Any], env: Mapping[str, str],
                   cls: type[Any] | None = None, profile: Mapping[str, Any] | None = None,
                   from_profile: list[str] | None = None) -> Any:
    """One section: the environment, else the file, else the jurisdiction profile's default
    (``profile``; the keys it gave are appended to ``from_profile``), else the built-in one."""
    cls = cls or SECTION_CLASSES[name]
    profile = profile or {}
    known = {f.name: f for f in fields(cls)}
    for key in table:
        if key not in known:
            raise ConfigError(f"{name}.{key}", "unknown key (typo?)")
    values: dict[str, Any] = {}
    for fname, f in known.items():
        key = f"{name}.{fname}"
        env_name = f"{ENV_PREFIX}{name}_{fname}".upper().replace(".", "_")
        annotation = str(f.type)
        if annotation in SUBSECTION_CLASSES:  # a sub-table such as [sms.smpp]
            sub = table.get(fname, {})
            if not isinstance(sub, dict):
                raise ConfigError(key, "must be a table")
            values[fname] = _build_section(key, sub, env, SUBSECTION_CLASSES[annotation])
        elif env_name in env and not annotation.startswith("Mapping"):
            values[fname] = _coerce(key, env[env_name], annotation, from_env=True)
        elif fname in table:
            values[fname] = _coerce(key, table[fname], annotation)
        elif fname in profile:
            values[fname] = profile[fname]
            if from_profile is not None:
                from_profile.append(key)
    return cls(**values)


def load_config(path: Path | str | None = None, env: Mapping[str, str] | None = None, *,
                require_asterisk_apis: bool = True, default_path: Path | None = None) -> Config:
    """Load, override from the environment and validate.  Raises ConfigError.

    ``require_asterisk_apis=False`` is for programs that never talk to ARI/AMI
    (AGI scripts, the FastAGI server, ops commands on the database): an empty
    ARI/AMI password is then accepted, but a set one must still be strong.
    ``default_path``: the file read when neither ``path`` nor ``CALLPROOF_CONFIG`` names
    one, if it exists (the CLI passes ``/etc/callproof/callproof.toml``).
    """
    return load_config_and_sources(path, env, require_asterisk_apis=require_asterisk_apis,
                                   default_path=default_path)[0]


def load_config_and_sources(path: Path | str | None = None, env: Mapping[str, str] | None = None, *,
                            require_asterisk_apis: bool = True,
                            default_path: Path | None = None) -> tuple[Config, Sources]:
    """:func:`load_config`, and which files it read (the TOML file, the secrets file)."""
    env = os.environ if env is None else env
    path = config_path(path, env, default_path)
    data: dict[str, Any] = {}
    sources = Sources()
    if path:
        p = Path(path)
        sources.config_file = p
        try:
            with p.open("rb") as fh:
                mode = os.fstat(fh.fileno()).st_mode
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("config", f"file not found: {p}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("config", f"{p} is not valid TOML: {exc}") from None
        check_file_mode(p, mode, data)
    secrets = secrets_path(sources.config_file, data, env)
    if secrets is not None:
        env = {**read_secrets(secrets, sources), **env}  # the real environment wins
    for section in data:
        if section not in SECTION_CLASSES:
            raise ConfigError(section, "unknown section (typo?)")
        if not isinstance(data[section], dict):
            raise ConfigError(section, "must be a table")
    sources.jurisdiction = chosen_jurisdiction(data, env)
    profile = profile_defaults(sources.jurisdiction)
    sections = {name: _build_section(name, data.get(name, {}), env, profile=profile.get(name),
                                     from_profile=sources.from_profile)
                for name in SECTION_CLASSES}
    config = Config(**sections)
    validate(config, require_asterisk_apis=require_asterisk_apis)
    return config, sources


def require_secret(config: Config, key: str) -> str:
    """The secret at dotted ``key`` (e.g. ``rights.identity_key``); ConfigError if unset.

    Commands that need a secret call this at start-up, so a missing one is named
    before any work is done."""
    section, _, name = key.partition(".")
    value = getattr(getattr(config, section), name)
    if not value:
        env = f"{ENV_PREFIX}{key}".upper().replace(".", "_")
        raise ConfigError(key, f"required for this command (set it in the config file or {env})")
    if not isinstance(value, str):
        raise TypeError(f"config key {key!r} is not a secret (a string)")
    return value
