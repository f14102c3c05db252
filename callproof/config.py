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
class SmtpConfig:
    """[rights.smtp]: the mail server that delivers recording links by e-mail."""
    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    tls: bool = False  # implicit TLS (port 465)
    username: str = ""
    password: str = ""
    sender: str = ""
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class RightsConfig:
    """[rights]: customer requests, lookups, exports and download links (docs/customer-rights.md)."""
    identity_key: str = ""  # HMAC key for CPF / customer-code hashes; secret, >= 32 chars
    request_due_days: int = 10
    history_due_days: int = 5
    due_soon_days: int = 2
    export_dir: Path = Path("/var/lib/callproof/exports")
    export_format: str = "mp3"
    history_dir: Path = Path("/var/lib/callproof/history")
    link_secret: str = ""  # HMAC key for download tokens; secret, >= 32 chars
    link_lifetime_hours: int = 72
    link_max_downloads: int = 5
    public_base_url: str = "http://127.0.0.1:8089/"
    sms_link_templates: Mapping[str, str] = field(
        default_factory=lambda: {
            "pt_BR": "{company}: gravacao do protocolo {protocol}: {url} (valido ate {expires}).",
            "es": "{company}: grabacion del protocolo {protocol}: {url} (valido hasta {expires}).",
            "en": "{company}: recording of protocol {protocol}: {url} (valid until {expires}).",
        }
    )
    smtp: SmtpConfig = field(default_factory=SmtpConfig)


@dataclass(frozen=True)
class WebConfig:
    """[web]: the ops web page (``callproof web``); loopback by default, TLS at a reverse proxy."""
    host: str = "127.0.0.1"
    port: int = 8089
    session_minutes: int = 480
    secure_cookies: bool = False  # set true behind the TLS reverse proxy
    login_max_failures: int = 5
    login_window_seconds: int = 900
    api_token: str = ""  # bearer token for the HTTP request-intake API; empty = API off


@dataclass(frozen=True)
class CallbackConfig:
    """[callback]: calling back customers whose call dropped after the protocol was given."""
    enabled: bool = False
    endpoint_template: str = "PJSIP/{number}@trunk"  # {number}: E.164 without '+', {e164}: with
    caller_id: str = ""
    first_delay_seconds: int = 30
    retry_delay_seconds: int = 300
    max_attempts: int = 3
    ring_timeout_seconds: int = 30
    # Hang-up causes (Q.850) that mean the network dropped the call, not the caller.
    drop_causes: tuple[int, ...] = (27, 34, 38, 41, 42, 44, 47, 102)


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
    rights: RightsConfig = field(default_factory=RightsConfig)
    web: WebConfig = field(default_factory=WebConfig)
    callback: CallbackConfig = field(default_factory=CallbackConfig)


_SECTION_CLASSES = {
    "general": GeneralConfig, "storage": StorageConfig, "ari": AriConfig, "ami": AmiConfig,
    "prompts": PromptsConfig, "protocol_reading": ProtocolReadingConfig,
    "recording": RecordingConfig, "handoff": HandoffConfig, "sms": SmsConfig,
    "logging": LoggingConfig, "fastagi": FastAgiConfig, "retention": RetentionConfig,
    "rights": RightsConfig, "web": WebConfig, "callback": CallbackConfig,
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
                       "SmsSipConfig": SmsSipConfig, "SmtpConfig": SmtpConfig}


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
    _validate_rights(config.rights, g.languages)
    _validate_web(config.web)
    _validate_callback(config.callback)
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


MIN_SECRET_LENGTH = 32
EXPORT_FORMATS = ("mp3", "ogg", "wav")


def _check_secret(key: str, value: str) -> None:
    """A set secret must be long and not a well-known word; empty means 'feature off'."""
    if value and (value.strip().lower() in WELL_KNOWN_PASSWORDS or len(value) < MIN_SECRET_LENGTH):
        raise ConfigError(key, f"must be a random secret of at least {MIN_SECRET_LENGTH} characters")


def require_secret(config: Config, key: str) -> str:
    """The secret at dotted ``key`` (e.g. ``rights.identity_key``); ConfigError if unset.

    Commands that need a secret call this at start-up, so a missing one is named
    before any work is done."""
    section, _, name = key.partition(".")
    value = getattr(getattr(config, section), name)
    if not value:
        env = f"{ENV_PREFIX}{key}".upper().replace(".", "_")
        raise ConfigError(key, f"required for this command (set it in the config file or {env})")
    return value


def _validate_rights(r: RightsConfig, languages: tuple[str, ...]) -> None:
    _check_secret("rights.identity_key", r.identity_key)
    _check_secret("rights.link_secret", r.link_secret)
    if r.identity_key and r.identity_key == r.link_secret:
        raise ConfigError("rights.link_secret", "must differ from rights.identity_key")
    for key in ("request_due_days", "history_due_days"):
        if not 1 <= getattr(r, key) <= 365:
            raise ConfigError(f"rights.{key}", "must be between 1 and 365")
    if not 0 <= r.due_soon_days <= 30:
        raise ConfigError("rights.due_soon_days", "must be between 0 and 30")
    for key in ("export_dir", "history_dir"):
        if not getattr(r, key).is_absolute():
            raise ConfigError(f"rights.{key}", "must be an absolute path")
    if r.export_format not in EXPORT_FORMATS:
        raise ConfigError("rights.export_format", f"one of {', '.join(EXPORT_FORMATS)}")
    if not 1 <= r.link_lifetime_hours <= 24 * 30:
        raise ConfigError("rights.link_lifetime_hours", "must be between 1 and 720")
    if not 1 <= r.link_max_downloads <= 100:
        raise ConfigError("rights.link_max_downloads", "must be between 1 and 100")
    url = urlparse(r.public_base_url)
    if url.scheme not in ("http", "https") or not url.hostname or not r.public_base_url.endswith("/"):
        raise ConfigError("rights.public_base_url", "an http(s) URL ending in '/'")
    for lang in languages:
        if lang not in r.sms_link_templates:
            raise ConfigError(f"rights.sms_link_templates.{lang}", "missing template for a configured language")
    for lang, template in r.sms_link_templates.items():
        try:
            template.format(company="X", protocol="2026" + "0" * 13, url="https://x/d/t", expires="01/01/2026 00:00")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"rights.sms_link_templates.{lang}", f"cannot render: {exc!r}") from None
    m = r.smtp
    if not 1 <= m.port <= 65535:
        raise ConfigError("rights.smtp.port", "must be 1..65535")
    if m.starttls and m.tls:
        raise ConfigError("rights.smtp.tls", "choose either tls (implicit) or starttls")
    if m.password:
        _check_password("rights.smtp.password", m.password)
    if m.sender and "@" not in m.sender:
        raise ConfigError("rights.smtp.sender", "an e-mail address")
    if m.timeout_seconds <= 0:
        raise ConfigError("rights.smtp.timeout_seconds", "must be > 0")


def _validate_web(w: WebConfig) -> None:
    if not w.host.strip():
        raise ConfigError("web.host", "an address to listen on (127.0.0.1 by default)")
    if not 0 < w.port < 65536:
        raise ConfigError("web.port", "must be a TCP port number")
    if not 5 <= w.session_minutes <= 24 * 60:
        raise ConfigError("web.session_minutes", "must be between 5 and 1440")
    if not 1 <= w.login_max_failures <= 100:
        raise ConfigError("web.login_max_failures", "must be between 1 and 100")
    if not 10 <= w.login_window_seconds <= 86400:
        raise ConfigError("web.login_window_seconds", "must be between 10 and 86400")
    _check_secret("web.api_token", w.api_token)


def _validate_callback(c: CallbackConfig) -> None:
    try:
        endpoint = c.endpoint_template.format(number="5511999999999", e164="+5511999999999")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError("callback.endpoint_template", f"cannot render: {exc!r}") from None
    if "/" not in endpoint or endpoint == c.endpoint_template:
        raise ConfigError("callback.endpoint_template", "a Tech/resource with {number} or {e164}")
    for key in ("first_delay_seconds", "retry_delay_seconds"):
        if not 0 <= getattr(c, key) <= 86400:
            raise ConfigError(f"callback.{key}", "must be between 0 and 86400")
    if not 1 <= c.max_attempts <= 10:
        raise ConfigError("callback.max_attempts", "must be between 1 and 10")
    if not 5 <= c.ring_timeout_seconds <= 120:
        raise ConfigError("callback.ring_timeout_seconds", "must be between 5 and 120")
    if any(not 1 <= cause <= 127 for cause in c.drop_causes):
        raise ConfigError("callback.drop_causes", "Q.850 cause codes 1..127")
