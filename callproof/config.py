"""One TOML configuration file, environment overrides, validated at start-up.

Every key has a type and (where sensible) a default.  Anything missing or
invalid raises :class:`ConfigError` naming the key, e.g. ``ari.password``, so an
administrator knows exactly what to fix before a single call is taken.

Environment overrides: ``CALLPROOF_<SECTION>_<KEY>`` (upper case, dots as
underscores), e.g. ``CALLPROOF_ARI_PASSWORD`` overrides ``[ari] password``.
The config file path comes from ``--config`` or ``CALLPROOF_CONFIG``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENV_PREFIX = "CALLPROOF_"
CONFIG_ENV = "CALLPROOF_CONFIG"

# Passwords that appear in Asterisk samples, tutorials and our own docs.
WELL_KNOWN_PASSWORDS = frozenset(
    {
        "", "asterisk", "password", "secret", "admin", "changeme", "change-me",
        "callproof", "1234", "12345", "123456", "mysecret", "amp111", "passw0rd",
        "ari", "ami", "test", "default", "letmein",
    }
)
MIN_PASSWORD_LENGTH = 12


class ConfigError(ValueError):
    """Invalid or missing configuration; the message names the key."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"config key {key!r}: {problem}")
        self.key = key


@dataclass(frozen=True)
class GeneralConfig:
    timezone: str = "America/Sao_Paulo"
    default_language: str = "pt_BR"
    languages: tuple[str, ...] = ("pt_BR", "es", "en")
    company_name: str = "Atendimento"
    phone_region: str = "BR"
    use_channel_language: bool = False

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class StorageConfig:
    database: Path = Path("/var/lib/callproof/callproof.db")
    busy_timeout_ms: int = 5000


@dataclass(frozen=True)
class AriConfig:
    url: str = "http://127.0.0.1:8088/"
    username: str = "callproof"
    password: str = ""
    app: str = "callproof"
    reconnect_max_seconds: float = 30.0


@dataclass(frozen=True)
class AmiConfig:
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "callproof"
    password: str = ""


@dataclass(frozen=True)
class PromptsConfig:
    directory: Path = Path("/var/lib/callproof/prompts")
    custom_directory: Path | None = None
    pause_ms: int = 400


@dataclass(frozen=True)
class ProtocolReadingConfig:
    repeat: int = 1
    groups: tuple[int, ...] = (4, 4, 4, 5)
    replay_key: str = "*"
    replay_window_ms: int = 1500
    max_replays: int = 3


@dataclass(frozen=True)
class RecordingConfig:
    root: Path = Path("/var/spool/asterisk/callproof")
    mixmonitor_options: str = ""
    finalise_grace_seconds: float = 10.0


@dataclass(frozen=True)
class HandoffConfig:
    context: str = "callproof-handoff"
    extension: str = "s"
    priority: int = 1


@dataclass(frozen=True)
class SmppConfig:
    """[sms.smpp]: an SMPP 3.4 SMSC (aggregator)."""
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    bind_mode: str = "transceiver"
    source_addr: str = ""
    source_ton: int = 5
    source_npi: int = 0
    enquire_link_seconds: float = 30.0
    submit_timeout_seconds: float = 10.0
    request_dlr: bool = True


@dataclass(frozen=True)
class SmsHttpConfig:
    """[sms.http]: an HTTP SMS gateway described without code."""
    url: str = ""
    method: str = "POST"
    auth_header: str = ""  # e.g. "Bearer xyz"; sent as Authorization
    body_format: str = "json"  # json or form
    body_template: Mapping[str, str] = field(default_factory=lambda: {
        "to": "{destination}", "text": "{body}", "reference": "{idempotency_key}"})
    idempotency_header: str = "Idempotency-Key"
    success_statuses: tuple[int, ...] = (200, 201, 202)
    message_id_field: str = "id"  # dotted path in the JSON answer
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class SmsSipConfig:
    """[sms.sip]: SIP MESSAGE through ARI endpoints/sendMessage (uses [ari] credentials)."""
    to_template: str = "pjsip:sms-trunk/sip:{number}@sms.invalid"  # {number}: E.164 without '+'
    from_uri: str = ""
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class SmsConfig:
    backend: str = "log"
    poll_interval_seconds: float = 1.0
    batch_size: int = 50
    lease_seconds: int = 60
    max_attempts: int = 10
    max_age_seconds: float = 86400.0
    window: int = 10
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 3600.0
    throttle_seconds: float = 1.0
    smpp: SmppConfig = field(default_factory=SmppConfig)
    http: SmsHttpConfig = field(default_factory=SmsHttpConfig)
    sip: SmsSipConfig = field(default_factory=SmsSipConfig)
    templates: Mapping[str, str] = field(
        default_factory=lambda: {
            "pt_BR": "{company}: protocolo de atendimento {protocol} em {date} {time}.",
            "es": "{company}: protocolo de atencion {protocol} el {date} {time}.",
            "en": "{company}: service protocol {protocol} on {date} {time}.",
        }
    )


@dataclass(frozen=True)
class RetentionConfig:
    """Retention of recordings and call records (see README, Retention)."""
    classes: Mapping[str, int] = field(
        default_factory=lambda: {"consumer_service": 90, "mobile_telecom": 180})
    default_class: str = "consumer_service"
    did_classes: Mapping[str, str] = field(default_factory=dict)
    context_classes: Mapping[str, str] = field(default_factory=dict)
    call_record_days: int = 730
    request_grace_days: int = 30
    batch_size: int = 500
    quarantine_dir: Path | None = None
    lock_file: Path | None = None
    sweep_in_run: bool = False
    sweep_interval_seconds: float = 3600.0


@dataclass(frozen=True)
class FastAgiConfig:
    """The FastAGI server (``callproof fastagi``): loopback unless you say otherwise."""
    host: str = "127.0.0.1"
    port: int = 4573


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"
    format: str = "json"


@dataclass(frozen=True)
class Config:
    general: GeneralConfig = field(default_factory=GeneralConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    ari: AriConfig = field(default_factory=AriConfig)
    ami: AmiConfig = field(default_factory=AmiConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    protocol_reading: ProtocolReadingConfig = field(default_factory=ProtocolReadingConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    handoff: HandoffConfig = field(default_factory=HandoffConfig)
    sms: SmsConfig = field(default_factory=SmsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    fastagi: FastAgiConfig = field(default_factory=FastAgiConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)


_SECTION_CLASSES = {
    "general": GeneralConfig, "storage": StorageConfig, "ari": AriConfig, "ami": AmiConfig,
    "prompts": PromptsConfig, "protocol_reading": ProtocolReadingConfig,
    "recording": RecordingConfig, "handoff": HandoffConfig, "sms": SmsConfig,
    "logging": LoggingConfig, "fastagi": FastAgiConfig, "retention": RetentionConfig,
}


def _coerce(key: str, value: Any, annotation: str) -> Any:
    """Convert a TOML or environment value to the declared field type."""
    from_env = isinstance(value, str)
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
        if ann in ("str",):
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
            return float(value) if from_env or isinstance(value, int) else _require(value, float)
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
    except (TypeError, ValueError):
        raise ConfigError(key, f"expected {annotation}, got {value!r}") from None
    raise ConfigError(key, f"unsupported type {annotation}")  # pragma: no cover


def _require(value: Any, kind: type) -> Any:
    if not isinstance(value, kind):
        raise TypeError
    return value


_SUBSECTION_CLASSES = {"SmppConfig": SmppConfig, "SmsHttpConfig": SmsHttpConfig,
                       "SmsSipConfig": SmsSipConfig}


SMS_BACKENDS = ("log", "smpp", "http", "sip")


def _validate_sms(s: SmsConfig) -> None:
    for key in ("poll_interval_seconds", "max_age_seconds", "backoff_base_seconds",
                "backoff_max_seconds", "throttle_seconds"):
        if getattr(s, key) <= 0:
            raise ConfigError(f"sms.{key}", "must be > 0")
    for key in ("batch_size", "lease_seconds", "max_attempts", "window"):
        if getattr(s, key) < 1:
            raise ConfigError(f"sms.{key}", "must be >= 1")
    if s.window > s.batch_size:
        raise ConfigError("sms.window", "must not exceed sms.batch_size")
    m = s.smpp
    if s.backend == "smpp":
        if not m.system_id:
            raise ConfigError("sms.smpp.system_id", "required when sms.backend = 'smpp'")
        if not m.password:
            raise ConfigError("sms.smpp.password", "required when sms.backend = 'smpp' (no default password)")
    if len(m.system_id) > 15:
        raise ConfigError("sms.smpp.system_id", "at most 15 characters (SMPP 3.4)")
    if len(m.password) > 8:
        raise ConfigError("sms.smpp.password", "at most 8 characters (SMPP 3.4)")
    if not 1 <= m.port <= 65535:
        raise ConfigError("sms.smpp.port", "must be 1..65535")
    if m.bind_mode not in ("transceiver", "transmitter"):
        raise ConfigError("sms.smpp.bind_mode", "transceiver or transmitter")
    if not 0 <= m.source_ton <= 6 or m.source_npi not in (0, 1, 3, 4, 6, 8, 9, 10, 14, 18):
        raise ConfigError("sms.smpp.source_ton", "TON 0..6 and a valid NPI")
    if len(m.source_addr) > 20:
        raise ConfigError("sms.smpp.source_addr", "at most 20 characters")
    if m.enquire_link_seconds <= 0:
        raise ConfigError("sms.smpp.enquire_link_seconds", "must be > 0")
    if not 0 < m.submit_timeout_seconds < s.lease_seconds / 2:
        raise ConfigError("sms.smpp.submit_timeout_seconds", "must be > 0 and under half of sms.lease_seconds")
    h = s.http
    if s.backend == "http" and not h.url.startswith(("http://", "https://")):
        raise ConfigError("sms.http.url", "an http:// or https:// URL is required when sms.backend = 'http'")
    if h.method.upper() not in ("POST", "PUT", "GET"):
        raise ConfigError("sms.http.method", "POST, PUT or GET")
    if h.body_format not in ("json", "form"):
        raise ConfigError("sms.http.body_format", "json or form")
    for k, v in h.body_template.items():
        try:
            v.format(destination="+1", body="x", protocol="p", idempotency_key="k", outbox_id=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"sms.http.body_template.{k}", f"cannot render: {exc!r}") from None
    if not h.success_statuses or any(not 100 <= c <= 599 for c in h.success_statuses):
        raise ConfigError("sms.http.success_statuses", "HTTP status codes 100..599")
    if not 0 < h.timeout_seconds < s.lease_seconds / 2:
        raise ConfigError("sms.http.timeout_seconds", "must be > 0 and under half of sms.lease_seconds")
    sip = s.sip
    try:
        uri = sip.to_template.format(destination="+1", number="1")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError("sms.sip.to_template", f"cannot render: {exc!r}") from None
    if ":" not in uri or uri == sip.to_template:
        raise ConfigError("sms.sip.to_template", "a tech:URI with {number} or {destination}")
    if not 0 < sip.timeout_seconds < s.lease_seconds / 2:
        raise ConfigError("sms.sip.timeout_seconds", "must be > 0 and under half of sms.lease_seconds")


def _build_section(name: str, table: Mapping[str, Any], env: Mapping[str, str],
                   cls: type | None = None) -> Any:
    cls = cls or _SECTION_CLASSES[name]
    known = {f.name: f for f in fields(cls)}
    for key in table:
        if key not in known:
            raise ConfigError(f"{name}.{key}", "unknown key (typo?)")
    values: dict[str, Any] = {}
    for fname, f in known.items():
        key = f"{name}.{fname}"
        env_name = f"{ENV_PREFIX}{name}_{fname}".upper().replace(".", "_")
        if str(f.type) in _SUBSECTION_CLASSES:  # a sub-table such as [sms.smpp]
            sub = table.get(fname, {})
            if not isinstance(sub, dict):
                raise ConfigError(key, "must be a table")
            values[fname] = _build_section(key, sub, env, _SUBSECTION_CLASSES[str(f.type)])
        elif env_name in env and not str(f.type).startswith("Mapping"):
            values[fname] = _coerce(key, env[env_name], str(f.type))
        elif fname in table:
            values[fname] = _coerce(key, table[fname], str(f.type))
    return cls(**values)


def load_config(path: Path | str | None = None, env: Mapping[str, str] | None = None, *,
                require_asterisk_apis: bool = True) -> Config:
    """Load, override from the environment and validate.  Raises ConfigError.

    ``require_asterisk_apis=False`` is for programs that never talk to ARI/AMI
    (AGI scripts, the FastAGI server, ops commands on the database): an empty
    ARI/AMI password is then accepted, but a set one must still be strong.
    """
    env = os.environ if env is None else env
    path = path or env.get(CONFIG_ENV)
    data: dict[str, Any] = {}
    if path:
        p = Path(path)
        try:
            with p.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("config", f"file not found: {p}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("config", f"{p} is not valid TOML: {exc}") from None
    for section in data:
        if section not in _SECTION_CLASSES:
            raise ConfigError(section, "unknown section (typo?)")
        if not isinstance(data[section], dict):
            raise ConfigError(section, "must be a table")
    sections = {name: _build_section(name, data.get(name, {}), env) for name in _SECTION_CLASSES}
    config = Config(**sections)
    validate(config, require_asterisk_apis=require_asterisk_apis)
    return config


def _check_password(key: str, password: str) -> None:
    if password.strip().lower() in WELL_KNOWN_PASSWORDS:
        raise ConfigError(key, "empty or well-known password refused; set a strong secret")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(key, f"password shorter than {MIN_PASSWORD_LENGTH} characters refused")


def _check_identifier(key: str, value: str) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+.")
    if not value or any(c not in allowed for c in value):
        raise ConfigError(key, f"{value!r} must be non-empty letters, digits, _ - + .")


def validate(config: Config, *, require_asterisk_apis: bool = True) -> None:
    """Cross-field and semantic checks; raise ConfigError naming the key."""
    g = config.general
    try:
        ZoneInfo(g.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("general.timezone", f"unknown time zone {g.timezone!r}") from None
    if g.default_language not in g.languages:
        raise ConfigError("general.default_language", f"{g.default_language!r} not in general.languages")
    if len(g.phone_region) != 2 or not g.phone_region.isalpha():
        raise ConfigError("general.phone_region", "must be a two-letter region code like BR or ES")

    url = urlparse(config.ari.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError("ari.url", f"{config.ari.url!r} is not an http(s) URL")
    _check_identifier("ari.username", config.ari.username)
    _check_identifier("ari.app", config.ari.app)
    if require_asterisk_apis or config.ari.password:
        _check_password("ari.password", config.ari.password)
    if config.ari.reconnect_max_seconds <= 0:
        raise ConfigError("ari.reconnect_max_seconds", "must be positive")

    _check_identifier("ami.username", config.ami.username)
    if require_asterisk_apis or config.ami.password:
        _check_password("ami.password", config.ami.password)
    if not 0 < config.ami.port < 65536:
        raise ConfigError("ami.port", "must be a TCP port number")

    r = config.protocol_reading
    if sum(r.groups) != 17 or any(n <= 0 for n in r.groups):
        raise ConfigError("protocol_reading.groups", "positive group sizes must add up to 17 digits")
    if not 0 <= r.repeat <= 5:
        raise ConfigError("protocol_reading.repeat", "must be between 0 and 5")
    if r.replay_key and (len(r.replay_key) != 1 or r.replay_key not in "0123456789*#"):
        raise ConfigError("protocol_reading.replay_key", "must be one DTMF key (0-9 * #) or empty")
    if not 0 <= r.replay_window_ms <= 10000:
        raise ConfigError("protocol_reading.replay_window_ms", "must be between 0 and 10000")
    if not 0 <= r.max_replays <= 10:
        raise ConfigError("protocol_reading.max_replays", "must be between 0 and 10")

    if not config.fastagi.host.strip():
        raise ConfigError("fastagi.host", "must be an address to listen on (127.0.0.1 by default)")
    if not 0 < config.fastagi.port < 65536:
        raise ConfigError("fastagi.port", "must be a TCP port number")

    if not config.recording.root.is_absolute():
        raise ConfigError("recording.root", "must be an absolute path")
    if any(c in config.recording.mixmonitor_options for c in ",()|\n"):
        raise ConfigError("recording.mixmonitor_options", "option letters only (no , ( ) |)")
    if not config.prompts.directory.is_absolute():
        raise ConfigError("prompts.directory", "must be an absolute path")
    if not 0 <= config.prompts.pause_ms <= 3000:
        raise ConfigError("prompts.pause_ms", "must be between 0 and 3000")

    h = config.handoff
    _check_identifier("handoff.context", h.context)
    _check_identifier("handoff.extension", h.extension)
    if h.priority < 1:
        raise ConfigError("handoff.priority", "must be >= 1")

    s = config.sms
    if s.backend not in SMS_BACKENDS:
        raise ConfigError("sms.backend", f"unknown backend {s.backend!r} (available: {', '.join(SMS_BACKENDS)})")
    _validate_sms(s)
    for lang in g.languages:
        if lang not in s.templates:
            raise ConfigError(f"sms.templates.{lang}", "missing template for a configured language")
    for lang, template in s.templates.items():
        try:
            template.format(company="X", protocol="2026" + "0" * 13, date="01/01/2026", time="00:00")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"sms.templates.{lang}", f"cannot render: {exc!r}") from None
    _validate_retention(config.retention)
    if config.logging.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("logging.level", "one of DEBUG, INFO, WARNING, ERROR")
    if config.logging.format not in ("json", "text"):
        raise ConfigError("logging.format", "json or text")


def _validate_retention(rt: RetentionConfig) -> None:
    if not rt.classes:
        raise ConfigError("retention.classes", "define at least one retention class")
    for name, days in rt.classes.items():
        _check_identifier(f"retention.classes.{name}", name)
        if isinstance(days, bool) or not 1 <= days <= 36500:
            raise ConfigError(f"retention.classes.{name}", "days must be between 1 and 36500")
    if rt.default_class not in rt.classes:
        raise ConfigError("retention.default_class", f"{rt.default_class!r} is not in retention.classes")
    for section, table in (("did_classes", rt.did_classes), ("context_classes", rt.context_classes)):
        for match, cls in table.items():
            if cls not in rt.classes:
                raise ConfigError(f"retention.{section}.{match}", f"{cls!r} is not in retention.classes")
    if not 1 <= rt.call_record_days <= 36500:
        raise ConfigError("retention.call_record_days", "must be between 1 and 36500")
    if not 0 <= rt.request_grace_days <= 3650:
        raise ConfigError("retention.request_grace_days", "must be between 0 and 3650")
    # One batch's ids are bound as SQL parameters: SQLite allows at most 32,766.
    if not 1 <= rt.batch_size <= 30000:
        raise ConfigError("retention.batch_size", "must be between 1 and 30000")
    for key in ("quarantine_dir", "lock_file"):
        value = getattr(rt, key)
        if value is not None and not value.is_absolute():
            raise ConfigError(f"retention.{key}", "must be an absolute path")
    if rt.sweep_interval_seconds < 60:
        raise ConfigError("retention.sweep_interval_seconds", "must be at least 60")
