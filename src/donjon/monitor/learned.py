"""The learned detectors, made together: what the node runs beside the rules."""

from __future__ import annotations

from donjon.monitor.baselines import DurationDetector, ErrorRateDetector
from donjon.monitor.detector import Detector
from donjon.monitor.firstseen import FirstSeenDetector
from donjon.monitor.rates import call_rate, cost

__all__ = ["LEARNED", "learned_detectors"]

#: The learned detectors' names, as DONJON_MONITOR_MODES names them.
LEARNED = ("call_rate", "error_rate", "duration", "cost", "first_seen")


def learned_detectors(learning_s: float, *, bucket_s: float = 60.0) -> list[Detector]:
    """`call_rate`, `error_rate`, `duration`, `cost` (per function version and per
    principal) and `first_seen` (pairs, after `learning_s`), with their default bands."""
    return [
        call_rate(bucket_s=bucket_s),
        ErrorRateDetector(),
        DurationDetector(),
        cost(bucket_s=bucket_s),
        FirstSeenDetector(learning_s),
    ]
