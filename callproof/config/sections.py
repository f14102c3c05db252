"""The configuration's sections: one frozen dataclass per TOML table, with its defaults.

Field annotations stay strings (``from __future__ import annotations``): the loader reads
them to convert a TOML or environment value to the declared type (:mod:`.loading`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class GeneralConfig:
    # a profile of defaults for a regulator's figures (callproof/config/jurisdictions.py); "" = none
    jurisdiction: str = ""
    timezone: str = "America/Sao_Paulo"
    default_language: str = "pt_BR"
    languages: tuple[str, ...] = ("pt_BR", "es", "en")
    company_name: str = "Atendimento"
    phone_region: str = "BR"
    use_channel_language: bool = False
    # the user the service runs as: commands started as root drop to it (docs/operations.md)
    service_user: str = "asterisk"
    # the systemd EnvironmentFile with the secrets (default: secrets.env beside the config file)
    secrets_file: Path | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class LanguagesConfig:
    """Which language a call is served in, and the menu after the announcement
    (docs/prompts.md#languages).  DIDs are written as the dialplan passes them (their
    digits); a leading ``+`` and separators in a key are ignored."""
    # DID -> language: after the dialplan's CALLPROOF_LANGUAGE, before the channel's
    by_did: Mapping[str, str] = field(default_factory=dict)
    # the languages offered after the announcement (key 1, 2, ... in this order); () = no menu
    menu: tuple[str, ...] = ()
    # DID -> "es,ca" (comma-separated; "" = no menu on that DID): wins over ``menu``
    menu_by_did: Mapping[str, str] = field(default_factory=dict)
    menu_timeout_seconds: float = 5.0
    # times the menu is offered again after no key or a wrong key (then the language stays)
    menu_repeats: int = 1


@dataclass(frozen=True)
class StorageConfig:
    database: Path = Path("/var/lib/callproof/callproof.db")
    busy_timeout_ms: int = 5000
    # how long a caller waits on storage at one step before the call goes on without it
    call_wait_seconds: float = 3.0
    # what a call could not write while storage was unavailable (default: <database>.journal)
    journal: Path | None = None
    # PostgreSQL instead of the SQLite file: "postgresql://user@host/dbname" (several nodes,
    # one database: docs/scale-out.md); the password only from the secrets file
    # (CALLPROOF_STORAGE_PASSWORD) or the service user's ~/.pgpass, never in the URL
    url: str = ""
    password: str = ""

    @property
    def target(self) -> str:
        """What storage opens: the PostgreSQL URL when set, else the SQLite file."""
        return self.url or str(self.database)

    @property
    def engine(self) -> str:
        return "postgresql" if self.url else "sqlite"

    @property
    def journal_path(self) -> Path:
        return self.journal or self.database.with_name(self.database.name + ".journal")


@dataclass(frozen=True)
class AriConfig:
    url: str = "http://127.0.0.1:8088/"
    username: str = "callproof"
    password: str = ""
    app: str = "callproof"
    reconnect_max_seconds: float = 1.0
    # refusals of the login in a row (HTTP 401) before ``callproof run`` stops (exit 3)
    max_login_failures: int = 5
    # Several ``callproof run`` on one Asterisk (docs/scale-out.md): this instance's name
    # (letters and digits); it registers the ARI application ``<app>_<instance>`` and claims
    # the calls the dialplan's StasisBroadcast() offers.  Empty: the one instance, ``<app>``.
    instance: str = ""
    # its lease on its application, renewed every heartbeat_seconds; a lease not renewed for
    # lease_seconds means the instance is dead and a survivor takes its calls over
    heartbeat_seconds: float = 2.0
    lease_seconds: float = 10.0

    @property
    def registered_app(self) -> str:
        """The ARI application this process registers: ``app``, or ``app_instance``."""
        return f"{self.app}_{self.instance}" if self.instance else self.app


@dataclass(frozen=True)
class AmiConfig:
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "callproof"
    password: str = ""
    # refusals of the login in a row before ``callproof run`` stops (exit 3)
    max_login_failures: int = 5


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
    # the shared recordings store (a folder on a file system every node mounts; docs/scale-out.md):
    # unset = recordings stay under root, on the node that made them
    store: Path | None = None
    node: str = ""  # this node's name in the recordings' rows; empty = the host name
    move_interval_seconds: float = 30.0  # how often the mover of `callproof run` / fastagi looks


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
    instance: str = "callproof"  # with the host name, the sender's lease owner (one process per name)
    receipt_hold_seconds: float = 600.0  # a receipt that found no row waits this long for its acceptance
    smpp: SmppConfig = field(default_factory=SmppConfig)
    http: SmsHttpConfig = field(default_factory=SmsHttpConfig)
    sip: SmsSipConfig = field(default_factory=SmsSipConfig)
    templates: Mapping[str, str] = field(
        default_factory=lambda: {
            "pt_BR": "{company}: protocolo de atendimento {protocol} em {date} {time}.",
            "es": "{company}: protocolo de atencion {protocol} el {date} {time}.",
            "en": "{company}: service protocol {protocol} on {date} {time}.",
            "ca": "{company}: protocol d'atencio {protocol} el {date} {time}.",
            "eu": "{company}: arreta-protokoloa {protocol}, {date} {time}.",
            "gl": "{company}: protocolo de atencion {protocol} o {date} {time}.",
        }
    )


@dataclass(frozen=True)
class RetentionConfig:
    """Retention of recordings and call records (see docs/operations.md, Retention)."""
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
            "ca": "{company}: enregistrament del protocol {protocol}: {url} (valid fins al {expires}).",
            "eu": "{company}: {protocol} protokoloaren grabazioa: {url} ({expires} arte baliozkoa).",
            "gl": "{company}: gravacion do protocolo {protocol}: {url} (valida ata o {expires}).",
        }
    )
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    # the one-time code sent by SMS to a call's number to confirm a requester (docs/requests.md)
    code_lifetime_minutes: int = 15
    code_max_attempts: int = 5


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
    # Addresses / networks of reverse proxies whose X-Forwarded-For is believed; empty = ignore the header.
    trusted_proxies: tuple[str, ...] = ()
    # Requests per minute (per client address) to the pages that need no login: /d/, POST /login, the API.
    public_rate_per_minute: int = 30
    # The page's language when neither the account nor the browser's Accept-Language names a
    # shipped one: en, pt_BR or es (callproof/web/i18n.py).
    default_locale: str = "en"


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
class MetricsConfig:
    """[metrics]: Prometheus ``/metrics`` of ``callproof run`` (listen) and ``callproof fastagi``
    (fastagi_listen), as ``host:port``; empty = not served.  Loopback unless you say otherwise."""
    listen: str = ""
    fastagi_listen: str = ""
    # how long figures read from the database are reused between scrapes
    cache_seconds: float = 5.0


@dataclass(frozen=True)
class ComplianceConfig:
    """[compliance]: the targets the compliance report measures against (``callproof report
    compliance``).  The request and history deadlines are [rights] request_due_days and
    history_due_days."""
    wait_thresholds_seconds: tuple[int, ...] = (60, 180)  # % of queued callers answered within each
    sms_within_hours: int = 24  # protocol SMS delivered within this long of the call


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"
    format: str = "json"


@dataclass(frozen=True)
class EvidenceConfig:
    """[evidence]: the key that signs each call's evidence record (docs/evidence.md)."""
    signing_key: Path | None = None  # PEM PKCS8 Ed25519 private key, mode 0600; none = records unsigned
    trusted_keys: Path | None = None  # folder of *.pem public keys of earlier (rotated) signing keys


@dataclass(frozen=True)
class AuditConfig:
    """[audit]: signed checkpoints of the audit chain's head, kept outside the database."""
    checkpoint_file: Path | None = None  # append-only JSON lines; none = no checkpoints
    checkpoint_interval_seconds: float = 3600.0
    syslog: bool = False  # also send each checkpoint to syslog (LOG_AUTH)
    tsa_url: str = ""  # RFC 3161 time-stamping authority; empty = no timestamp tokens
    tsa_ca_file: Path | None = None  # the TSA's CA certificate(s), to verify its tokens
    tsa_timeout_seconds: float = 10.0


@dataclass(frozen=True)
class EncryptionConfig:
    """[encryption]: recordings encrypted at rest to per-period age keys (docs/keys.md)."""
    enabled: bool = False  # off until 'callproof keys init' has made the keys
    # age1... recipients, one <key id>.pub per key: all the PBX side (run, AGI, FastAGI) needs
    public_keys_dir: Path = Path("/etc/callproof/keys/public")
    # AGE-SECRET-KEY-1... identities, one <key id>.key (0600) per key, dir 0700: web, export, migrate
    private_keys_dir: Path = Path("/etc/callproof/keys/private")
    # systemd credential name (LoadCredential=NAME:<private_keys_dir>): read-only processes then
    # take the private keys from $CREDENTIALS_DIRECTORY instead of private_keys_dir
    private_keys_credential: str = ""
    months_ahead: int = 24  # period keys kept ready per retention class (init, rotate, retention run)
    # a period key is destroyed this many days after its expiry month is over (docs/keys.md)
    destroy_margin_days: int = 7


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
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)
    encryption: EncryptionConfig = field(default_factory=EncryptionConfig)
    languages: LanguagesConfig = field(default_factory=LanguagesConfig)


#: TOML table name -> its section class, in the order of :class:`Config`'s fields.
SECTION_CLASSES: dict[str, type[Any]] = {
    "general": GeneralConfig, "storage": StorageConfig, "ari": AriConfig, "ami": AmiConfig,
    "prompts": PromptsConfig, "protocol_reading": ProtocolReadingConfig,
    "recording": RecordingConfig, "handoff": HandoffConfig, "sms": SmsConfig,
    "logging": LoggingConfig, "fastagi": FastAgiConfig, "retention": RetentionConfig,
    "rights": RightsConfig, "web": WebConfig, "callback": CallbackConfig,
    "evidence": EvidenceConfig, "audit": AuditConfig, "metrics": MetricsConfig,
    "compliance": ComplianceConfig,
    "encryption": EncryptionConfig, "languages": LanguagesConfig,
}

#: Annotation -> class of the sub-tables (``[sms.smpp]``, ``[rights.smtp]``, ...).
SUBSECTION_CLASSES: dict[str, type[Any]] = {
    "SmppConfig": SmppConfig, "SmsHttpConfig": SmsHttpConfig,
    "SmsSipConfig": SmsSipConfig, "SmtpConfig": SmtpConfig,
}
