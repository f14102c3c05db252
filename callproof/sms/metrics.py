"""The SMS counters as Prometheus metric families (prometheus-client).

The figures are read from the database (``db.outbox.counters()``), not kept
in process memory, so every sender process and every restart adds to the
same monotonic counters, and the CLI can print them without the sender.
The same families are part of the ``/metrics`` endpoint of ``callproof run``
and ``callproof fastagi`` (callproof/metrics/stored.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: Outbox states exported even when no row has them (a state a later version adds comes from the rows).
#: ('logged': the development log backend wrote the message to the log; nothing was sent.)
OUTBOX_STATES = ("pending", "sending", "sent", "logged", "failed", "dead", "not_sendable")
FAILED_OUTCOMES = ("transient", "unknown", "rejected")



def sms_families(counters: Mapping[str, Mapping[str, int]]) -> Iterator[Metric]:
    """The families of ``db.outbox.counters()``."""
    attempts = counters.get("attempts", {})
    sent = CounterMetricFamily("callproof_sms_sent", "Messages the gateway accepted.")
    sent.add_metric([], attempts.get("accepted", 0))
    yield sent
    logged = CounterMetricFamily("callproof_sms_logged", "Messages the development log backend wrote to the log"
                                 " (nothing sent).")
    logged.add_metric([], attempts.get("logged", 0))
    yield logged
    failed = CounterMetricFamily("callproof_sms_failed", "Attempts that failed, by outcome (transient, unknown, "
                                 "rejected).", labels=["outcome"])
    for outcome in FAILED_OUTCOMES:
        failed.add_metric([outcome], attempts.get(outcome, 0))
    yield failed
    retried = CounterMetricFamily("callproof_sms_retried", "Attempts after the first one for the same message.")
    retried.add_metric([], counters.get("retried", {}).get("", 0))
    yield retried
    throttled = CounterMetricFamily("callproof_sms_throttled", "Throttling answers (SMPP ESME_RTHROTTLED, HTTP 429).")
    throttled.add_metric([], counters.get("throttled", {}).get("", 0))
    yield throttled
    dlrs = counters.get("dlrs", {})
    dlr = CounterMetricFamily("callproof_sms_dlr", "Delivery receipts received, by status.", labels=["status"])
    for status, n in sorted(dlrs.items()):
        dlr.add_metric([status], n)
    yield dlr
    delivered = CounterMetricFamily("callproof_sms_dlr_delivered", "Delivery receipts saying DELIVRD.")
    delivered.add_metric([], dlrs.get("DELIVRD", 0))
    yield delivered
    outbox = GaugeMetricFamily("callproof_sms_outbox", "Outbox rows by state.", labels=["state"])
    for state, n in sorted({**dict.fromkeys(OUTBOX_STATES, 0), **counters.get("states", {})}.items()):
        outbox.add_metric([state], n)
    yield outbox


class _Snapshot(Collector):
    def __init__(self, counters: Mapping[str, Mapping[str, int]]) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        return sms_families(self.counters)


def exposition(counters: Mapping[str, Mapping[str, int]]) -> str:
    """Prometheus text format (version 0.0.4) for ``db.outbox.counters()``."""
    registry = CollectorRegistry()
    registry.register(_Snapshot(counters))
    return generate_latest(registry).decode("utf-8")
