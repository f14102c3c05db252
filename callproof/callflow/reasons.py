"""What the flow tells the dialplan: ``CALLPROOF_STATUS`` and, when not ok,
``CALLPROOF_REASON`` -- one list for both transports (dialplan/*.conf route on them).

``CALLPROOF_STATUS``: ``ok`` | ``recording_failed`` | ``failed``; the dialplan itself
sets ``app_unavailable`` (ARI application not connected) and ``failed`` with
``agi_<AGISTATUS>`` (AGI script or FastAGI server not reachable).
"""

from __future__ import annotations

from enum import StrEnum

from callproof.prompts import PromptNotFoundError
from callproof.storage import is_storage_error

STATUS_VARIABLE = "CALLPROOF_STATUS"
REASON_VARIABLE = "CALLPROOF_REASON"
PROTOCOL_VARIABLE = "CALLPROOF_PROTOCOL"
RECORDING_VARIABLE = "CALLPROOF_RECORDING"


class DialplanStatus(StrEnum):
    OK = "ok"
    RECORDING_FAILED = "recording_failed"
    FAILED = "failed"


class Reason(StrEnum):
    STORAGE_UNAVAILABLE = "storage_unavailable"      # the database could not be read or written
    PROMPT_MISSING = "prompt_missing"                # no file for a prompt (or one AGI cannot name)
    PLAYBACK_FAILED = "playback_failed"              # Asterisk could not play a prompt
    NO_CALL = "no_call"                              # a step before the one it needs (split AGI steps)
    CONSENT_REQUIRED = "consent_required"            # a protocol asked for before the consent step
    BAD_STEP = "bad_step"                            # unknown AGI step / FastAGI script name
    CONFIG_ERROR = "config_error"                    # the configuration file could not be loaded
    INTERNAL_ERROR = "internal_error"                # anything else (a bug: see the log)
    CHANNEL_ID_TAKEN = "channel_id_taken"            # another node's call has this channel id (systemname)
    RECORDING_NOT_STARTED = "recording_not_started"  # with CALLPROOF_STATUS=recording_failed


class StepFailed(Exception):
    """A step refused to run; ``reason`` is what the dialplan is told."""

    def __init__(self, reason: Reason, message: str):
        super().__init__(message)
        self.reason = reason


def reason_for(exc: BaseException) -> Reason:
    """The CALLPROOF_REASON of a flow that failed with ``exc``."""
    from .port import PlaybackFailed  # port imports Reason from here

    if isinstance(exc, StepFailed | PlaybackFailed):
        return exc.reason
    if is_storage_error(exc):
        return Reason.STORAGE_UNAVAILABLE
    if isinstance(exc, PromptNotFoundError):
        return Reason.PROMPT_MISSING
    return Reason.INTERNAL_ERROR
