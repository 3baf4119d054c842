"""Each learned detector's tables forget the subject used longest ago, as calls use them.

The baselines and `first_seen` look up every call's subjects on the hot path
without `Bounded.get` (its lookup and move to the end, inline): a subject that
calls again must count as used, or a busy node with more subjects than the
cap evicts the wrong ones (and so finds other things).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from baseline_support import Records, feed
from donjon.monitor.baselines import DurationDetector, ErrorRateDetector, SeriesDetector
from donjon.monitor.findings import Subject
from donjon.monitor.firstseen import FirstSeenDetector
from donjon.monitor.rates import call_rate, cost

T0 = 1_700_000_000.0
FN = Subject("function", "f@1")


def _key(name: str) -> Subject:
    return Subject("principal", f"key:{name}")


@pytest.mark.parametrize(
    "make",
    [
        lambda: call_rate(max_subjects=3),
        lambda: ErrorRateDetector(max_subjects=3),
        lambda: DurationDetector(max_subjects=3),
        lambda: cost(max_subjects=3),
    ],
    ids=["call_rate", "error_rate", "duration", "cost"],
)
def test_a_subject_calling_again_outlives_one_that_did_not(
    make: Callable[[], SeriesDetector[Any]],
) -> None:
    """With room for three series, a, b, a again, then c: b goes, a stays."""
    detector, records = make(), Records()
    for i in range(40):  # the function's own series learns (a principal's duration needs it)
        feed(detector, records.call(T0 + i, actor="public"))
    for i, name in enumerate(["a", "b", "a", "c"]):
        feed(detector, records.call(T0 + 40 + i, actor=f"key:{name}"))
    assert detector.series.keys() == [_key("a"), FN, _key("c")]
    assert detector.series.evicted == 1


def test_first_seen_keeps_the_principals_and_pairs_used_last() -> None:
    """Profiles, and each profile's known functions, are forgotten least recently used first."""
    detector, records = FirstSeenDetector(3600.0, max_principals=2, max_pairs=2), Records()
    for i, (name, target) in enumerate(
        [("a", "f@1"), ("b", "f@1"), ("a", "g@1"), ("a", "f@1"), ("c", "f@1"), ("a", "h@1")]
    ):
        feed(detector, records.call(T0 + i, target, actor=f"key:{name}"))
    assert detector.profiles.keys() == ["key:c", "key:a"]
    profile = detector.profiles.get("key:a")
    assert profile is not None
    assert profile.functions.known.keys() == ["f", "h"]
