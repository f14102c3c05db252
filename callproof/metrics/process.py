"""The metrics one process measures itself: call-step latencies, the wait to an agent,
storage latency, and the state of its ARI and AMI links.

One :class:`ProcessMetrics` per process (``callproof run``, ``callproof fastagi``), each with
its own :class:`~prometheus_client.CollectorRegistry` rather than prometheus-client's global
default one: two applications in one process (the tests run several) do not share figures,
and nothing a library registers globally leaks into our endpoint.

These figures start from zero when the process starts (Prometheus' ``rate()`` and
``increase()`` handle the reset); what must survive a restart is read from the database at
scrape time (:mod:`.stored`).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from callproof.callflow.timings import CallTimings

#: A caller's waits inside the flow (seconds): well under a second is the aim, seconds are trouble.
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
#: The wait for an agent (seconds): thresholds that rules name (60 s, 180 s) are bucket bounds.
AGENT_BUCKETS = (5.0, 10.0, 20.0, 30.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1200.0)
#: One storage call (seconds).
STORAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0)

#: (histogram name, help, start mark, end mark) of the call-step latencies, from CallTimings.
STEPS = (
    ("callproof_stasis_to_consent_seconds",
     "From the call reaching callproof (StasisStart, or the AGI request) to the announcement starting.",
     ("stasis_start", "agi_start"), "consent_playback_started"),
    ("callproof_consent_to_protocol_seconds",
     "From the end of the announcement to the protocol number's reading starting.",
     ("consent_playback_finished",), "protocol_playback_started"),
    ("callproof_protocol_to_recording_seconds",
     "From the end of the last protocol reading to the recording (MixMonitor) starting.",
     ("protocol_read",), "recording_started"),
)


#: The outcomes of a mover's pass counted by ``callproof_recordings_moves_total``.
MOVE_OUTCOMES = ("moved", "adopted", "failed", "refused")


class ProcessMetrics:
    """The registry of one process and the in-process metrics in it."""

    def __init__(self, process: str) -> None:
        self.process = process
        self.registry = CollectorRegistry()
        self.steps = {name: Histogram(name, help_text, registry=self.registry, buckets=STEP_BUCKETS)
                      for name, help_text, _start, _end in STEPS}
        self.handoff_to_agent = Histogram(
            "callproof_handoff_to_agent_seconds",
            "From the hand-off to the agents' context to an agent answering (outcome=answered) or the "
            "caller hanging up while waiting (outcome=abandoned); seen by this process's AMI link.",
            ["outcome"], registry=self.registry, buckets=AGENT_BUCKETS)
        for outcome in ("answered", "abandoned"):
            self.handoff_to_agent.labels(outcome)
        self.storage = Histogram(
            "callproof_storage_seconds", "Time of one storage call (a repository function), by function.",
            ["operation"], registry=self.registry, buckets=STORAGE_BUCKETS)
        self.store_moves = Counter(
            "callproof_recordings_moves", "Recordings this process's mover handled, by outcome: moved to the shared "
            "store (moved, adopted: found complete there after a crash), failed (retried), refused (sha256).",
            ["outcome"], registry=self.registry)
        for outcome in MOVE_OUTCOMES:
            self.store_moves.labels(outcome)
        self.links = Gauge("callproof_link_up", "1 while this process's link to Asterisk is up, else 0.",
                           ["link"], registry=self.registry)

    def observe_call(self, timings: CallTimings) -> None:
        """A call's flow is over: the step latencies its marks give (a step it did not
        reach, or reached before a resume, is not counted)."""
        marks = timings.marks
        for name, _help, starts, end in STEPS:
            start = next((marks[s] for s in starts if s in marks), None)
            if start is not None and end in marks and marks[end] >= start:
                self.steps[name].observe(marks[end] - start)

    def observe_agent(self, outcome: str, seconds: float) -> None:
        self.handoff_to_agent.labels(outcome).observe(max(0.0, seconds))

    def observe_storage(self, operation: str, seconds: float) -> None:
        self.storage.labels(operation).observe(seconds)

    def observe_moves(self, counts: dict[str, int]) -> None:
        """One pass of the in-process mover (``MoveSummary.as_dict()``)."""
        for outcome in MOVE_OUTCOMES:
            if counts.get(outcome):
                self.store_moves.labels(outcome).inc(counts[outcome])

    def link(self, name: str, is_up: Callable[[], bool]) -> None:
        """``callproof_link_up{link=name}``, read from ``is_up()`` at each scrape."""
        self.links.labels(name).set_function(lambda: 1.0 if is_up() else 0.0)
