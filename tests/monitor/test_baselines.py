"""The learned baselines on a fake clock: call rate, error rate, duration, cost."""

from __future__ import annotations

import random
import statistics
from typing import Any

import pytest

from baseline_support import Records, feed
from donjon.monitor.baselines import DurationDetector, ErrorRateDetector
from donjon.monitor.findings import Finding, Subject
from donjon.monitor.rates import RateDetector, call_rate, cost
from donjon.monitor.robust import (
    Band,
    BaselineError,
    Bounded,
    RobustWindow,
    _median_deviation,
    _middle,
)

T0 = 1_700_000_000.0
FN = Subject("function", "f@1")
KEY = Subject("principal", "key:k1")


def _steady(detector: RateDetector, records: Records, minutes: int, per_minute: int) -> float:
    """`per_minute` calls a minute for `minutes` minutes; returns the time after."""
    now = T0
    for _ in range(minutes):
        for i in range(per_minute):
            assert feed(detector, records.call(now + i)) == []
        now += 60
    return now


def test_median_deviation_is_the_median_of_the_sorted_deviations() -> None:
    """The MAD found by one bisection of the two runs of deviations is exactly
    `statistics.median` of every deviation sorted: odd and even windows, ties, values on
    the median, one side empty (the band's every refresh uses it)."""
    rng = random.Random(3)  # noqa: S311 - a seeded test, not a secret
    for _ in range(20_000):
        n = rng.randint(1, 210)
        shape = rng.random()
        if shape < 0.3:  # ties, and values equal to the median
            values = [float(rng.randint(0, 4)) for _ in range(n)]
        elif shape < 0.6:
            values = [rng.random() * 100 for _ in range(n)]
        else:  # skewed: most deviations on one side
            values = [rng.expovariate(1.0) * rng.choice((1.0, 10.0, 1000.0)) for _ in range(n)]
        ordered = sorted(values)
        median = _middle(ordered)
        expected = statistics.median(sorted(abs(v - median) for v in ordered))
        assert _median_deviation(ordered, median) == expected, ordered
    assert _median_deviation([], 0.0) == 0.0
    assert _median_deviation([5.0, 5.0], 5.0) == 0.0
    assert _median_deviation([1.0, 2.0, 9.0, 10.0], 5.5) == 4.0  # (3.5 and 4.5)


def test_median_and_mad_ignore_outliers() -> None:
    """The centre and spread of a window stay put when a few values are wild."""
    window = RobustWindow(Band(k=3, size=10, min_history=3))
    for value in (10, 11, 9, 10, 12, 8, 10, 1000, 10_000, 10):
        window.push(value)
    median, sigma = window.stats()
    assert median == 10
    assert sigma == pytest.approx(1.4826 * 1)
    assert window.upper() == pytest.approx(10 + 3 * 1.4826)


def test_window_is_bounded() -> None:
    """A series keeps only its last `size` values."""
    window = RobustWindow(Band(k=3, size=5, min_history=5))
    window.push_many(1.0, 1000)
    for _ in range(100):
        window.push(7.0)
    assert len(window) == 5 and window.stats() == (7.0, 0.0)


def test_a_window_judges_from_its_min_history_on() -> None:
    """A series learns until `min_history` values (pushed one by one or as quiet windows),
    never flags a value meanwhile, then flags one above its band."""
    window = RobustWindow(Band(k=3, abs_min=1, size=10, min_history=4))
    for value in (5.0, 5.0, 5.0):
        window.push(value)
        assert not window.learned and not window.is_anomalous(1e9)
    window.push(5.0)
    assert window.learned and window.is_anomalous(7.0) and not window.is_anomalous(5.5)
    quiet = RobustWindow(Band(k=3, abs_min=1, size=10, min_history=4))
    quiet.push_many(0.0, 3)
    assert not quiet.learned
    quiet.push_many(0.0, 1)
    assert quiet.learned and quiet.is_anomalous(2.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"k": -1}, {"k": float("nan")}, {"size": 5, "min_history": 6}, {"min_history": 0}, {"k": 0}],
)
def test_bad_band_is_refused(kwargs: dict[str, Any]) -> None:
    """A band that cannot work is an error naming the setting."""
    with pytest.raises(BaselineError, match="baseline"):
        Band(**kwargs)


def test_bounded_drops_least_recently_used() -> None:
    """The subject table keeps its cap, evicting the one used longest ago."""
    table: Bounded[str, int] = Bounded(2)
    table.setdefault("a", lambda: 1)
    table.setdefault("b", lambda: 2)
    table.get("a")
    table.setdefault("c", lambda: 3)
    assert table.keys() == ["a", "c"] and table.evicted == 1


def test_call_rate_learns_then_flags_a_burst_at_the_crossing_call() -> None:
    """After 30 quiet minutes at 5 calls a minute, the call that takes a minute past
    the band raises one finding per subject, resting on that minute's calls."""
    detector, records = call_rate(), Records()
    now = _steady(detector, records, 40, 5)
    found: list[Finding] = []
    burst = [records.call(now + i * 0.5) for i in range(40)]
    for record in burst:
        found += feed(detector, record)
    assert {f.subject for f in found} == {FN, KEY}
    finding = found[0]
    assert finding.kind == "baseline.call_rate" and finding.detector == "call_rate"
    assert finding.detail["amount"] == 16  # 5 + max(6 sigma, 3 sqrt(5), 5, 10) = 15 < 16
    assert finding.evidence == tuple(r.seq for r in burst[:16])


def test_call_rate_does_not_learn_a_flagged_window() -> None:
    """A burst does not become the norm: the next burst is flagged at the same count."""
    detector, records = call_rate(), Records()
    now = _steady(detector, records, 40, 5)
    counts = []
    for _ in range(30):  # half an hour of bursts: each minute flagged, none learned
        for i in range(40):
            counts += [i + 1 for _ in feed(detector, records.call(now + i))]
        now += 60
    assert counts == [16] * 60  # per minute: the function's series and the key's


def test_call_rate_counts_quiet_minutes() -> None:
    """Minutes without calls are learned as zeros, so a usually idle key bursting is found."""
    detector, records = call_rate(), Records()
    now = T0
    for minute in range(60):
        if minute % 10 == 0:
            assert feed(detector, records.call(now)) == []
        now += 60
    found = [f for i in range(12) for f in feed(detector, records.call(now + i))]
    assert {f.subject for f in found} == {FN, KEY}
    assert found[0].detail["median"] == 0 and found[0].detail["calls"] == 11


def test_learning_raises_nothing() -> None:
    """A series with fewer than min_history windows judges nothing, however wild."""
    detector, records = call_rate(), Records()
    now = _steady(detector, records, 20, 5)
    assert all(feed(detector, records.call(now + i / 10)) == [] for i in range(500))


def test_deploy_resets_the_version_but_not_the_principal() -> None:
    """After a deploy the new version learns from scratch; the key's baseline still judges."""
    detector, records = call_rate(), Records()
    now = _steady(detector, records, 40, 5)
    feed(detector, records.event(now, "function.deploy", "f@2"))
    assert Subject("function", "f@1") not in detector.series
    found = [f for i in range(40) for f in feed(detector, records.call(now + i, "f@2"))]
    assert {f.subject for f in found} == {KEY}


def test_a_rejected_deploy_resets_nothing() -> None:
    """Only a deploy that took effect changes what the function's series are."""
    detector, records = call_rate(), Records()
    now = _steady(detector, records, 40, 5)
    feed(detector, records.event(now, "function.deploy", "-", "rejected"))
    feed(detector, records.event(now, "function.deploy", "f@1", "unchanged"))
    assert FN in detector.series


def test_removal_drops_every_version() -> None:
    """`function.delete` forgets the function's series."""
    detector, records = call_rate(), Records()
    now = _steady(detector, records, 2, 5)
    feed(detector, records.event(now, "function.delete", "f"))
    assert FN not in detector.series and KEY in detector.series


def test_subjects_are_capped() -> None:
    """However many principals call, the detector keeps at most `max_subjects` series."""
    detector, records = call_rate(max_subjects=50), Records()
    for i in range(1000):
        feed(detector, records.call(T0 + i, actor=f"key:k{i}"))
    assert len(detector.series) == 50 and detector.series.evicted == 951


def test_silent_subjects_are_forgotten() -> None:
    """A subject silent for longer than its history is dropped at the next tick."""
    detector, records = call_rate(), Records()
    _steady(detector, records, 3, 1)
    assert detector.tick(T0 + 60 * 200) == [] and len(detector.series) == 0


def test_cost_is_duration_times_memory() -> None:
    """GB-seconds per minute: the same call rate at 1 GB and 2 s each is a cost burst."""
    detector, records = cost(), Records()
    now = T0
    for _ in range(40):
        for i in range(5):
            assert feed(detector, records.call(now + i, duration_ms=100.0)) == []
        now += 60
    found = [
        f
        for i in range(5)
        for f in feed(detector, records.call(now + i, duration_ms=2000.0, memory_mb=1024))
    ]
    assert {f.kind for f in found} == {"baseline.cost"}
    assert found[0].detail["unit"] == "GB-s" and found[0].detail["amount"] == pytest.approx(2.0)


def _errors(
    detector: ErrorRateDetector, records: Records, n: int, every: int, target: str
) -> list[Finding]:
    return [
        f
        for i in range(n)
        for f in feed(
            detector,
            records.call(T0 + i, target, outcome="FunctionFailed" if i % every == 0 else "ok"),
        )
    ]


def test_error_rate_flags_a_jump_and_names_the_failures() -> None:
    """At a usual 5% failure share, the sixth failure in a block of 20 is a finding
    (the band: 5% + 20 points, i.e. more than 5 of 20)."""
    detector, records = ErrorRateDetector(), Records()
    assert _errors(detector, records, 400, 20, "f@1") == []
    found = _errors(detector, records, 20, 2, "f@1")
    assert {f.subject for f in found} == {FN, KEY} and len(found) == 2
    assert found[0].detail["errors"] == 6 and len(found[0].evidence) == 6
    assert found[0].detail["reference"] is False


def test_error_rate_after_a_deploy_is_judged_against_the_predecessor() -> None:
    """A new version that starts failing is found at once, before it learned its own rate."""
    detector, records = ErrorRateDetector(), Records()
    _errors(detector, records, 400, 1000, "f@1")
    feed(detector, records.event(T0, "function.deploy", "f@2"))
    found = [f for f in _errors(detector, records, 20, 2, "f@2") if f.subject.kind == "function"]
    assert len(found) == 1 and found[0].subject == Subject("function", "f@2")
    assert found[0].detail["reference"] is True


def test_error_rate_keeps_flagged_blocks_out() -> None:
    """A version failing half its calls for ever never learns that as normal."""
    detector, records = ErrorRateDetector(), Records()
    _errors(detector, records, 200, 1000, "f@1")
    found = _errors(detector, records, 2000, 2, "f@1")
    assert len([f for f in found if f.subject == FN]) == 100  # every block of 20


def test_one_slow_call_is_not_a_finding_but_a_streak_is() -> None:
    """A cold start is one outlier; three slow calls among the last ten are a finding."""
    detector, records = DurationDetector(), Records()
    for i in range(100):
        assert feed(detector, records.call(T0 + i, duration_ms=50.0 + i % 7)) == []
    assert feed(detector, records.call(T0 + 100, duration_ms=900.0)) == []
    for i in range(10):  # the cold start leaves the last ten
        assert feed(detector, records.call(T0 + 101 + i, duration_ms=52.0)) == []
    slow = [records.call(T0 + 110 + i, duration_ms=400.0) for i in range(2)]
    assert all(feed(detector, r) == [] for r in slow)
    third = records.call(T0 + 120, duration_ms=400.0)
    found = feed(detector, third)
    assert {f.subject for f in found} == {FN, KEY}
    assert found[0].evidence[-1] == third.seq and len(found[0].evidence) == 3
    series = detector.series.get(FN)
    assert series is not None
    median, _ = series.window.stats()
    assert median < 60  # the slow calls were not learned


def test_replayed_records_fall_in_their_own_minutes() -> None:
    """Records examined late (replayed at a node's start) count in the minutes they were
    committed in, not all in the minute they are examined."""
    detector, records = call_rate(), Records()
    late = T0 + 10 * 3600
    now = T0
    for _ in range(40):
        for i in range(5):
            assert detector.observe(records.call(now + i), late) == []
        now += 60
    found = [f for i in range(20) for f in detector.observe(records.call(now + i / 2), late)]
    assert {f.subject for f in found} == {FN, KEY}
