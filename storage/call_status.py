"""The call's status: one state machine, written once, enforced by storage.

    consent_playing → protocol_reading → protocol_given → recording → handed_off → completed
    consent_playing → abandoned_in_consent       protocol_given → handed_off (unrecorded)
    protocol_reading → abandoned_in_protocol     any status that is not final → failed

A row may be written with its own status again (a hang-up during ``protocol_given`` or
``recording`` leaves the status and sets ``ended_at``). Every other change must be listed
in :data:`TRANSITIONS`; :mod:`callproof.storage.calls` refuses anything else with
:class:`IllegalTransitionError`, in the same statement that writes it, so two writers
cannot race past the check.
"""

from __future__ import annotations

from enum import StrEnum

from .errors import InvalidStateError


class CallStatus(StrEnum):
    CONSENT_PLAYING = "consent_playing"
    ABANDONED_IN_CONSENT = "abandoned_in_consent"
    PROTOCOL_READING = "protocol_reading"
    ABANDONED_IN_PROTOCOL = "abandoned_in_protocol"
    PROTOCOL_GIVEN = "protocol_given"
    RECORDING = "recording"
    HANDED_OFF = "handed_off"
    COMPLETED = "completed"
    FAILED = "failed"


S = CallStatus

#: The status a new row starts in.
INITIAL = S.CONSENT_PLAYING

#: Allowed changes (besides writing a status again).
TRANSITIONS: dict[CallStatus, frozenset[CallStatus]] = {
    S.CONSENT_PLAYING: frozenset({S.PROTOCOL_READING, S.ABANDONED_IN_CONSENT, S.FAILED}),
    S.PROTOCOL_READING: frozenset({S.PROTOCOL_GIVEN, S.ABANDONED_IN_PROTOCOL, S.FAILED}),
    S.PROTOCOL_GIVEN: frozenset({S.RECORDING, S.HANDED_OFF, S.FAILED}),
    S.RECORDING: frozenset({S.HANDED_OFF, S.FAILED}),
    S.HANDED_OFF: frozenset({S.COMPLETED, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.ABANDONED_IN_CONSENT: frozenset(),
    S.ABANDONED_IN_PROTOCOL: frozenset(),
    S.FAILED: frozenset(),
}

#: The steps of the flow, in the order a caller lives through them.
PROGRESS: tuple[CallStatus, ...] = (S.CONSENT_PLAYING, S.PROTOCOL_READING, S.PROTOCOL_GIVEN, S.RECORDING,
                                    S.HANDED_OFF)

#: What a call becomes when the caller hangs up during a step that is not over.
ABANDONED_IN: dict[CallStatus, CallStatus] = {
    S.CONSENT_PLAYING: S.ABANDONED_IN_CONSENT,
    S.PROTOCOL_READING: S.ABANDONED_IN_PROTOCOL,
}


#: Every status as stored in ``calls.status``.
STATUS_VALUES = frozenset(s.value for s in CallStatus)


class IllegalTransitionError(InvalidStateError):
    """A status change the state machine does not allow; names both statuses."""

    def __init__(self, call_id: int, current: str, wanted: str):
        allowed = ", ".join(sorted(TRANSITIONS.get(CallStatus(current), ()))) if current in STATUS_VALUES else "?"
        super().__init__(f"call {call_id}: status {current!r} cannot become {wanted!r} "
                         f"(allowed from {current!r}: {allowed or 'nothing, it is final'})")
        self.call_id, self.current, self.wanted = call_id, current, wanted


def parse(value: str) -> CallStatus:
    """The status named ``value``; ValueError listing the known ones otherwise."""
    if value not in STATUS_VALUES:
        raise ValueError(f"unknown call status {value!r} (one of {', '.join(sorted(STATUS_VALUES))})")
    return CallStatus(value)


def allowed(current: str, wanted: str) -> bool:
    return current == wanted or parse(wanted) in TRANSITIONS[parse(current)]


def predecessors(wanted: str) -> frozenset[CallStatus]:
    """Every status from which ``wanted`` may be written (itself included)."""
    target = parse(wanted)
    return frozenset({target, *(s for s, nexts in TRANSITIONS.items() if target in nexts)})


def is_final(status: str) -> bool:
    return not TRANSITIONS[parse(status)]


def step_done(current: str | None, step: CallStatus) -> bool:
    """True when the persisted status shows ``step`` is already behind the call
    (a resumed flow skips it)."""
    if current not in PROGRESS:
        return False
    return PROGRESS.index(CallStatus(current)) > PROGRESS.index(step)


def when_caller_left(current: str) -> CallStatus:
    """The status a hang-up leaves: abandoned in an unfinished step, else unchanged."""
    status = parse(current)
    return ABANDONED_IN.get(status, status)


def when_ended(current: str) -> CallStatus:
    """The status of a call whose channel is gone: a handed-off call is completed,
    one in an unfinished step abandoned, anything else unchanged."""
    status = parse(current)
    if status is S.HANDED_OFF:
        return S.COMPLETED
    return ABANDONED_IN.get(status, status)
