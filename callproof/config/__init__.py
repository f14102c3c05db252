"""One TOML configuration file, environment overrides, validated at start-up.

Every key has a type and (where sensible) a default.  Anything missing or
invalid raises :class:`ConfigError` naming the key, e.g. ``ari.password``, so an
administrator knows exactly what to fix before a single call is taken.

Environment overrides: ``CALLPROOF_<SECTION>_<KEY>`` (upper case, dots as
underscores), e.g. ``CALLPROOF_ARI_PASSWORD`` overrides ``[ari] password``.
The config file path comes from ``--config`` or ``CALLPROOF_CONFIG``.

The package is split by job: :mod:`.sections` (the dataclasses and their defaults),
:mod:`.loading` (file, environment, type conversion), :mod:`.validation` (the rules)
and :mod:`.errors`.  Import from ``callproof.config``; the sub-modules are its inside.
"""

from __future__ import annotations

from .errors import ConfigError
from .loading import CONFIG_ENV, ENV_PREFIX, load_config, load_config_and_sources, require_secret
from .secrets_file import DEFAULT_CONFIG, Sources
from .sections import (
    AmiConfig,
    AriConfig,
    AuditConfig,
    CallbackConfig,
    ComplianceConfig,
    Config,
    EncryptionConfig,
    EvidenceConfig,
    FastAgiConfig,
    GeneralConfig,
    HandoffConfig,
    LanguagesConfig,
    LoggingConfig,
    MetricsConfig,
    PromptsConfig,
    ProtocolReadingConfig,
    RecordingConfig,
    RetentionConfig,
    RightsConfig,
    SmppConfig,
    SmsConfig,
    SmsHttpConfig,
    SmsSipConfig,
    SmtpConfig,
    StorageConfig,
    WebConfig,
)
from .strength import MIN_PASSWORD_LENGTH, MIN_SECRET_LENGTH, WELL_KNOWN_PASSWORDS
from .validation import EXPORT_FORMATS, SMS_BACKENDS, _check_password, validate

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "ENV_PREFIX",
    "EXPORT_FORMATS",
    "MIN_PASSWORD_LENGTH",
    "MIN_SECRET_LENGTH",
    "SMS_BACKENDS",
    "WELL_KNOWN_PASSWORDS",
    "AmiConfig",
    "AriConfig",
    "AuditConfig",
    "CallbackConfig",
    "ComplianceConfig",
    "Config",
    "ConfigError",
    "EncryptionConfig",
    "EvidenceConfig",
    "FastAgiConfig",
    "GeneralConfig",
    "HandoffConfig",
    "LanguagesConfig",
    "LoggingConfig",
    "MetricsConfig",
    "PromptsConfig",
    "ProtocolReadingConfig",
    "RecordingConfig",
    "RetentionConfig",
    "RightsConfig",
    "SmppConfig",
    "SmsConfig",
    "SmsHttpConfig",
    "SmsSipConfig",
    "SmtpConfig",
    "Sources",
    "StorageConfig",
    "WebConfig",
    # The web account passwords follow the same rule as the ARI/AMI ones (web/passwords.py).
    "_check_password",
    "load_config",
    "load_config_and_sources",
    "require_secret",
    "validate",
]
