"""Prometheus text exposition of the SMS counters (and the recordings by state).

The figures are read from the database (``db.outbox.counters()``), not kept
in process memory, so every sender process and every restart adds to the
same monotonic counters, and the CLI can print them without the sender.
"""

from __future__ import annotations

from collections.abc import Mapping

_HELP = {
    "callproof_sms_sent_total": ("counter", "Messages the gateway accepted."),
    "callproof_sms_logged_total": ("counter", "Messages the development log backend wrote to the log"
                                              " (nothing sent)."),
    "callproof_sms_failed_total": ("counter", "Attempts that failed, by outcome (transient, unknown, rejected)."),
    "callproof_sms_retried_total": ("counter", "Attempts after the first one for the same message."),
    "callproof_sms_throttled_total": ("counter", "Throttling answers (SMPP ESME_RTHROTTLED, HTTP 429)."),
    "callproof_sms_dlr_total": ("counter", "Delivery receipts received, by status."),
    "callproof_sms_dlr_delivered_total": ("counter", "Delivery receipts saying DELIVRD."),
    "callproof_sms_outbox": ("gauge", "Outbox rows by state."),
    "callproof_recordings": ("gauge", "Recording rows by state ('empty': a file with no audio)."),
}

#: Outbox states, as storage allows them ('logged': the log backend, nothing sent).
OUTBOX_STATES = ("pending", "sending", "sent", "logged", "failed", "dead", "not_sendable")
RECORDING_STATES = ("recording", "finalised", "empty", "failed", "missing", "deleted")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition(counters: Mapping[str, Mapping[str, int]]) -> str:
    """Prometheus text format (version 0.0.4) for ``db.outbox.counters()``."""
    attempts = counters.get("attempts", {})
    samples: dict[str, list[tuple[str, int]]] = {name: [] for name in _HELP}
    samples["callproof_sms_sent_total"].append(("", attempts.get("accepted", 0)))
    samples["callproof_sms_logged_total"].append(("", attempts.get("logged", 0)))
    for outcome in ("transient", "unknown", "rejected"):
        samples["callproof_sms_failed_total"].append((f'{{outcome="{outcome}"}}', attempts.get(outcome, 0)))
    samples["callproof_sms_retried_total"].append(("", counters.get("retried", {}).get("", 0)))
    samples["callproof_sms_throttled_total"].append(("", counters.get("throttled", {}).get("", 0)))
    dlrs = counters.get("dlrs", {})
    for status, n in sorted(dlrs.items()):
        samples["callproof_sms_dlr_total"].append((f'{{status="{_label(status)}"}}', n))
    samples["callproof_sms_dlr_delivered_total"].append(("", dlrs.get("DELIVRD", 0)))
    states = counters.get("states", {})
    for state in OUTBOX_STATES:
        samples["callproof_sms_outbox"].append((f'{{state="{state}"}}', states.get(state, 0)))
    recordings = counters.get("recordings", {})
    for state in RECORDING_STATES:
        samples["callproof_recordings"].append((f'{{state="{state}"}}', recordings.get(state, 0)))
    lines = []
    for name, (kind, help_text) in _HELP.items():
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value}" for labels, value in samples[name])
    return "\n".join(lines) + "\n"
