"""Checking a loaded configuration: ranges, formats, cross-field rules and secrets.

Every failure raises :class:`ConfigError` naming the key (``ari.password``,
``sms.templates.es``, ...), so an administrator knows what to fix before a call is taken.
"""

from __future__ import annotations

import ipaddress
import os
import re
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .checks import check_numbers, check_template
from .errors import ConfigError
from .jurisdictions import PROFILES
from .language_rules import validate_languages
from .sections import (
    AriConfig,
    AuditConfig,
    CallbackConfig,
    ComplianceConfig,
    Config,
    EncryptionConfig,
    EvidenceConfig,
    MetricsConfig,
    RecordingConfig,
    RetentionConfig,
    RightsConfig,
    SmsConfig,
    WebConfig,
)
from .strength import (
    MIN_PASSWORD_LENGTH,
    MIN_SECRET_LENGTH,
    WELL_KNOWN_PASSWORDS,
    check_password,
    check_secret,
)

__all__ = ["EXPORT_FORMATS", "MIN_PASSWORD_LENGTH", "MIN_SECRET_LENGTH", "SMS_BACKENDS",
           "WELL_KNOWN_PASSWORDS", "validate"]

EXPORT_FORMATS = ("mp3", "ogg", "wav")
# the ops web page's languages (callproof/web/i18n.py LOCALES; a unit test keeps them equal)
WEB_LOCALES = ("en", "pt_BR", "es")
SMS_BACKENDS = ("log", "smpp", "http", "sip")
#: ``[sms] instance``: also part of a lock file's name (callproof.sms.identity)
SENDER_INSTANCE = re.compile(r"[A-Za-z0-9_.-]{1,40}")
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: the longest ``[recording] finalise_grace_seconds`` (a recording waits this long for its file)
MAX_FINALISE_GRACE_SECONDS = 600.0
_SMS_FIELDS = {"company": "X", "protocol": "2026" + "0" * 13, "date": "01/01/2026", "time": "00:00"}
_LINK_FIELDS = {"company": "X", "protocol": "2026" + "0" * 13, "url": "https://x/d/t", "expires": "01/01/2026 00:00"}


def _check_password(key: str, password: str, *, username: str = "") -> None:
    check_password(key, password, username=username)


def _check_identifier(key: str, value: str) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+.")
    if not value or any(c not in allowed for c in value):
        raise ConfigError(key, f"{value!r} must be non-empty letters, digits, _ - + .")


def _check_instances(ari: AriConfig) -> None:
    """``[ari] instance`` and its lease (docs/scale-out.md): the instance becomes part of an ARI
    application name and of the dialplan's StasisBroadcast() filter, so letters and digits only;
    the lease must outlast several heartbeats, or a slow but live instance would be robbed."""
    if ari.instance and not (ari.instance.isascii() and ari.instance.isalnum()):
        raise ConfigError("ari.instance", f"{ari.instance!r} must be letters and digits only (or empty)")
    if ari.instance and not all(c.isascii() and (c.isalnum() or c == "_") for c in ari.app):
        raise ConfigError("ari.app", f"{ari.app!r}: with [ari] instance set, letters, digits and _ only")
    if ari.heartbeat_seconds <= 0:
        raise ConfigError("ari.heartbeat_seconds", "must be positive")
    if ari.lease_seconds < 3 * ari.heartbeat_seconds:
        raise ConfigError("ari.lease_seconds", f"must be at least 3 heartbeats ({3 * ari.heartbeat_seconds:g} s):"
                          " a live instance one late heartbeat behind would lose its calls")


def _check_store(rec: RecordingConfig) -> None:
    """``[recording] store`` / ``node`` / ``move_interval_seconds`` (docs/scale-out.md)."""
    if rec.node and not _NODE_NAME.fullmatch(rec.node):
        raise ConfigError("recording.node", "letters, digits, '.', '_' and '-' only, at most 64")
    if rec.store is None:
        return
    if not rec.store.is_absolute():
        raise ConfigError("recording.store", "must be an absolute path")
    store, root = os.path.normpath(rec.store), os.path.normpath(rec.root)
    if store == root or store.startswith(root + "/") or root.startswith(store + "/"):
        raise ConfigError("recording.store", "must be outside recording.root (and not contain it)")
    if not 1 <= rec.move_interval_seconds <= 86400:
        raise ConfigError("recording.move_interval_seconds", "must be between 1 and 86400")


def _check_secret(key: str, value: str) -> None:
    """A set secret must be long and random-looking; empty means 'feature off'."""
    check_secret(key, value)


def validate(config: Config, *, require_asterisk_apis: bool = True) -> None:
    """Cross-field and semantic checks; raise ConfigError naming the key."""
    check_numbers(config)
    g = config.general
    if g.jurisdiction and g.jurisdiction not in PROFILES:
        raise ConfigError("general.jurisdiction", f"unknown jurisdiction {g.jurisdiction!r} "
                                                  f"(valid: {', '.join(PROFILES)}; empty for none)")
    try:
        ZoneInfo(g.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("general.timezone", f"unknown time zone {g.timezone!r}") from None
    if g.default_language not in g.languages:
        raise ConfigError("general.default_language", f"{g.default_language!r} not in general.languages")
    if len(g.phone_region) != 2 or not g.phone_region.isalpha():
        raise ConfigError("general.phone_region", "must be a two-letter region code like BR or ES")

    st = config.storage
    if not st.database.is_absolute():
        raise ConfigError("storage.database", f"must be an absolute path, got {str(st.database)!r}")
    if not 0.2 <= st.call_wait_seconds <= 30:
        raise ConfigError("storage.call_wait_seconds", "must be between 0.2 and 30 seconds")
    if st.journal is not None and not st.journal.is_absolute():
        raise ConfigError("storage.journal", "must be an absolute path")
    if st.url:
        from callproof.storage.pg_url import check_url, masked

        problem = check_url(st.url)
        if problem is not None:
            raise ConfigError("storage.url", f"{masked(st.url)!r} {problem}")
        import importlib.util

        if importlib.util.find_spec("psycopg") is None:
            raise ConfigError("storage.url", "PostgreSQL needs psycopg 3: pip install 'callproof[postgresql]'"
                                             " or apt-get install python3-psycopg")

    url = urlparse(config.ari.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError("ari.url", f"{config.ari.url!r} is not an http(s) URL")
    _check_identifier("ari.username", config.ari.username)
    _check_identifier("ari.app", config.ari.app)
    if require_asterisk_apis or config.ari.password:
        _check_password("ari.password", config.ari.password, username=config.ari.username)
    if config.ari.reconnect_max_seconds <= 0:
        raise ConfigError("ari.reconnect_max_seconds", "must be positive")
    _check_instances(config.ari)
    for api in ("ari", "ami"):
        if getattr(config, api).max_login_failures < 1:
            raise ConfigError(f"{api}.max_login_failures", "must be at least 1")

    _check_identifier("ami.username", config.ami.username)
    if require_asterisk_apis or config.ami.password:
        _check_password("ami.password", config.ami.password, username=config.ami.username)
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
    if config.prompts.custom_directory is not None and not config.prompts.custom_directory.is_absolute():
        raise ConfigError("prompts.custom_directory", "must be an absolute path")
    _check_store(config.recording)
    if not 0 <= config.recording.finalise_grace_seconds <= MAX_FINALISE_GRACE_SECONDS:
        raise ConfigError("recording.finalise_grace_seconds", f"must be between 0 and {MAX_FINALISE_GRACE_SECONDS:g}")
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
    _validate_sms(s, sends=require_asterisk_apis)
    for lang in g.languages:
        if lang not in s.templates:
            raise ConfigError(f"sms.templates.{lang}", "missing template for a configured language")
    for lang, template in s.templates.items():
        check_template(f"sms.templates.{lang}", template, _SMS_FIELDS)
    validate_languages(config.languages, g.languages)
    _validate_retention(config.retention)
    _validate_rights(config.rights, g.languages)
    _validate_web(config.web)
    _validate_callback(config.callback)
    _validate_evidence(config.evidence, config.audit)
    _validate_metrics(config.metrics)
    _validate_encryption(config.encryption)
    _validate_compliance(config.compliance)
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


def _validate_sms(s: SmsConfig, *, sends: bool = True) -> None:
    """``sends``: the program runs the SMS sender (``callproof run``). The AGI script and the
    FastAGI server only queue outbox rows: like the ARI/AMI passwords, an SMPP password kept
    in ``callproof run``'s environment (secrets.env) is not required there, or every call the
    dialplan's AGI fallback serves would fail with config_error."""
    for key in ("poll_interval_seconds", "max_age_seconds", "backoff_base_seconds",
                "backoff_max_seconds", "throttle_seconds", "receipt_hold_seconds"):
        if getattr(s, key) <= 0:
            raise ConfigError(f"sms.{key}", "must be > 0")
    for key in ("batch_size", "lease_seconds", "max_attempts", "window"):
        if getattr(s, key) < 1:
            raise ConfigError(f"sms.{key}", "must be >= 1")
    if s.window > s.batch_size:
        raise ConfigError("sms.window", "must not exceed sms.batch_size")
    if not isinstance(s.instance, str) or not SENDER_INSTANCE.fullmatch(s.instance):
        raise ConfigError("sms.instance", "1 to 40 letters, digits, '_', '.' or '-'")
    m = s.smpp
    if s.backend == "smpp":
        if not m.system_id:
            raise ConfigError("sms.smpp.system_id", "required when sms.backend = 'smpp'")
        if not m.password and sends:
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
        check_template(f"sms.http.body_template.{k}", v, {"destination": "+1", "body": "x", "protocol": "p",
                                                          "idempotency_key": "k", "outbox_id": 1})
    if not h.success_statuses or any(not 100 <= c <= 599 for c in h.success_statuses):
        raise ConfigError("sms.http.success_statuses", "HTTP status codes 100..599")
    if not 0 < h.timeout_seconds < s.lease_seconds / 2:
        raise ConfigError("sms.http.timeout_seconds", "must be > 0 and under half of sms.lease_seconds")
    sip = s.sip
    uri = check_template("sms.sip.to_template", sip.to_template, {"destination": "+1", "number": "1"})
    if ":" not in uri or uri == sip.to_template:
        raise ConfigError("sms.sip.to_template", "a tech:URI with {number} or {destination}")
    if not 0 < sip.timeout_seconds < s.lease_seconds / 2:
        raise ConfigError("sms.sip.timeout_seconds", "must be > 0 and under half of sms.lease_seconds")


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
    if not 1 <= r.code_lifetime_minutes <= 24 * 60:
        raise ConfigError("rights.code_lifetime_minutes", "must be between 1 and 1440")
    if not 1 <= r.code_max_attempts <= 10:
        raise ConfigError("rights.code_max_attempts", "must be between 1 and 10")
    if not 1 <= r.link_max_downloads <= 100:
        raise ConfigError("rights.link_max_downloads", "must be between 1 and 100")
    url = urlparse(r.public_base_url)
    if url.scheme not in ("http", "https") or not url.hostname or not r.public_base_url.endswith("/"):
        raise ConfigError("rights.public_base_url", "an http(s) URL ending in '/'")
    for lang in languages:
        if lang not in r.sms_link_templates:
            raise ConfigError(f"rights.sms_link_templates.{lang}", "missing template for a configured language")
    for lang, template in r.sms_link_templates.items():
        check_template(f"rights.sms_link_templates.{lang}", template, _LINK_FIELDS)
    m = r.smtp
    if not 1 <= m.port <= 65535:
        raise ConfigError("rights.smtp.port", "must be 1..65535")
    if m.starttls and m.tls:
        raise ConfigError("rights.smtp.tls", "choose either tls (implicit) or starttls")
    if m.password:
        _check_password("rights.smtp.password", m.password, username=m.username)
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
    for entry in w.trusted_proxies:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError("web.trusted_proxies", f"{entry!r} is not an IP address or network") from None
    if not 1 <= w.public_rate_per_minute <= 10000:
        raise ConfigError("web.public_rate_per_minute", "must be between 1 and 10000")
    if w.default_locale not in WEB_LOCALES:
        raise ConfigError("web.default_locale",
                          f"{w.default_locale!r} is not a language the page ships: one of {', '.join(WEB_LOCALES)}")


def _validate_callback(c: CallbackConfig) -> None:
    endpoint = check_template("callback.endpoint_template", c.endpoint_template,
                              {"number": "5511999999999", "e164": "+5511999999999"})
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


def parse_listen(key: str, value: str) -> tuple[str, int] | None:
    """``host:port`` (``[::1]:port`` for IPv6) of a metrics endpoint; None when empty (off)."""
    if not value.strip():
        return None
    host, sep, port = value.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port
        raise ConfigError(key, f"{value!r} must be host:port, e.g. 127.0.0.1:9464 (empty: not served)")
    if any(c.isspace() or c in "/[]" for c in host):
        raise ConfigError(key, f"{host!r} is not an address to listen on")
    return host, int(port)


def _validate_metrics(m: MetricsConfig) -> None:
    import math

    run = parse_listen("metrics.listen", m.listen)
    fastagi = parse_listen("metrics.fastagi_listen", m.fastagi_listen)
    if run is not None and run == fastagi and run[1] != 0:
        raise ConfigError("metrics.fastagi_listen", "must differ from metrics.listen (both processes may run)")
    if not (math.isfinite(m.cache_seconds) and 0 <= m.cache_seconds <= 300):
        raise ConfigError("metrics.cache_seconds", "must be between 0 and 300")


def _validate_evidence(e: EvidenceConfig, a: AuditConfig) -> None:
    import math

    for key, path in (("evidence.signing_key", e.signing_key), ("evidence.trusted_keys", e.trusted_keys),
                      ("audit.checkpoint_file", a.checkpoint_file), ("audit.tsa_ca_file", a.tsa_ca_file)):
        if path is not None and not path.is_absolute():
            raise ConfigError(key, "must be an absolute path")
    if not (math.isfinite(a.checkpoint_interval_seconds) and 10 <= a.checkpoint_interval_seconds <= 86400):
        raise ConfigError("audit.checkpoint_interval_seconds", "must be between 10 and 86400")
    if a.checkpoint_file is not None and e.signing_key is None:
        raise ConfigError("audit.checkpoint_file", "checkpoints are signed: set evidence.signing_key too")
    if a.tsa_url:
        url = urlparse(a.tsa_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError("audit.tsa_url", f"{a.tsa_url!r} is not an http(s) URL")
        if a.tsa_ca_file is None:
            raise ConfigError("audit.tsa_ca_file", "required with audit.tsa_url (to verify its tokens)")
    if not (math.isfinite(a.tsa_timeout_seconds) and 0.5 <= a.tsa_timeout_seconds <= 120):
        raise ConfigError("audit.tsa_timeout_seconds", "must be between 0.5 and 120")


#: ``[encryption] private_keys_credential``: a systemd credential name
CREDENTIAL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _validate_encryption(e: EncryptionConfig) -> None:
    for key in ("public_keys_dir", "private_keys_dir"):
        if not getattr(e, key).is_absolute():
            raise ConfigError(f"encryption.{key}", "must be an absolute path")
    if e.public_keys_dir == e.private_keys_dir:
        raise ConfigError("encryption.public_keys_dir",
                          "must differ from encryption.private_keys_dir (a PBX host holds only public keys)")
    if e.private_keys_credential and not CREDENTIAL_NAME.fullmatch(e.private_keys_credential):
        raise ConfigError("encryption.private_keys_credential", "a systemd credential name: letters, digits, _ . -")
    if not 1 <= e.months_ahead <= 120:
        raise ConfigError("encryption.months_ahead", "must be between 1 and 120")
    if not 1 <= e.destroy_margin_days <= 365:
        raise ConfigError("encryption.destroy_margin_days", "must be between 1 and 365")


def _validate_compliance(c: ComplianceConfig) -> None:
    if not c.wait_thresholds_seconds:
        raise ConfigError("compliance.wait_thresholds_seconds", "give at least one threshold, e.g. [60, 180]")
    if any(not 1 <= t <= 3600 for t in c.wait_thresholds_seconds):
        raise ConfigError("compliance.wait_thresholds_seconds", "each threshold must be between 1 and 3600 seconds")
    if list(c.wait_thresholds_seconds) != sorted(set(c.wait_thresholds_seconds)):
        raise ConfigError("compliance.wait_thresholds_seconds", "must be increasing, without repeats")
    if not 1 <= c.sms_within_hours <= 720:
        raise ConfigError("compliance.sms_within_hours", "must be between 1 and 720")
