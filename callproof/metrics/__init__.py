"""Prometheus metrics (prometheus-client): what a process measures (:mod:`.process`), what
the database says (:mod:`.stored`), and the loopback ``/metrics`` endpoint (:mod:`.endpoint`).
:func:`start_metrics` wires them for ``callproof run`` and ``callproof fastagi``."""

from __future__ import annotations

from .process import ProcessMetrics
from .stored import StoredFigures
from .wiring import MetricsService, start_metrics

__all__ = ["MetricsService", "ProcessMetrics", "StoredFigures", "start_metrics"]
