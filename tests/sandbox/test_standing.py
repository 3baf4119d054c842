"""A standing queue told from a burst (sandbox/standing.py), driven by an injected clock."""

from __future__ import annotations

import pytest

from donjon.config import ConfigError, load_settings
from donjon.gateway.problems import problem_from_error, status_for
from donjon.sandbox import CallShed, QueueBounds, ShedTiming
from donjon.sandbox.backlog import Backlog
from donjon.sandbox.standing import OVERFLOW_REFUSALS, OVERFLOW_S, StandingQueue

#: A function of 10 ms a call at concurrency 4; target 10 ms, interval 100 ms.
SERVICE_S = 0.010
CONCURRENCY = 4
TIMING = ShedTiming()
TARGET_S = TIMING.target(SERVICE_S)
INTERVAL_S = TIMING.interval(SERVICE_S)
#: Two rounds of calls ahead: within the hard cap (4 service times), past the target.
AHEAD = 2 * CONCURRENCY


def _admit(backlog: Backlog, queue: StandingQueue, ahead: int = AHEAD, *, now: float) -> None:
    backlog.admit("f", ahead, CONCURRENCY, SERVICE_S, queue.budget(TIMING, SERVICE_S, now))


def _overflowing(queue: StandingQueue, start: float, seconds: float) -> float:
    """Calls leave the queue every ms for `seconds`, each after waiting 3 service times,
    and one call is refused at the queue's bounds; returns the clock at the end."""
    queue.refused()
    now = start
    while now < start + seconds:
        queue.waited(3 * SERVICE_S, now, TARGET_S, INTERVAL_S)
        now += 0.001
    return now


def _backlog() -> Backlog:
    return Backlog(QueueBounds(per_function=1000, node=1000, wait_s=60.0))


def test_timing_is_derived_from_the_service_time_unless_set() -> None:
    """Target one service time, interval the larger of 100 ms and 5 service times;
    the settings replace both."""
    assert ShedTiming().target(0.002) == 0.002
    assert ShedTiming().interval(0.002) == 0.1
    assert ShedTiming().interval(0.3) == pytest.approx(1.5)
    assert ShedTiming(0.005, 0.2).target(0.3) == 0.005
    assert ShedTiming(0.005, 0.2).interval(0.3) == 0.2


def test_the_knobs_are_read_and_a_bad_one_is_refused_by_name() -> None:
    """DONJON_SHED_TARGET_MS / _INTERVAL_MS are read in ms (0, derived, by default); a
    negative one is a ConfigError naming it."""
    base = {"DONJON_DATA_DIR": "/tmp/x"}
    sandbox = load_settings(base).sandbox
    assert (sandbox.shed_target_s, sandbox.shed_interval_s) == (0.0, 0.0)
    sandbox = load_settings(
        {**base, "DONJON_SHED_TARGET_MS": "5", "DONJON_SHED_INTERVAL_MS": "250"}
    ).sandbox
    assert sandbox.shed_target_s == pytest.approx(0.005)
    assert sandbox.shed_interval_s == pytest.approx(0.25)
    for name in ("DONJON_SHED_TARGET_MS", "DONJON_SHED_INTERVAL_MS"):
        with pytest.raises(ConfigError, match=name):
            load_settings({**base, name: "-1"})


def test_a_burst_shorter_than_the_interval_is_queued() -> None:
    """A full queue whose calls all wait past the target, but for less than the
    interval before one waits less, never stands: the next call still queues."""
    queue, backlog = StandingQueue(), _backlog()
    now = _overflowing(queue, 100.0, INTERVAL_S / 2)
    queue.waited(TARGET_S / 2, now, TARGET_S, INTERVAL_S)  # the burst drained
    now = _overflowing(queue, now, INTERVAL_S / 2)
    assert not queue.standing
    _admit(backlog, queue, now=now)
    assert backlog.shed == 0


def test_a_standing_queue_is_shed_until_it_drains_then_admits_again() -> None:
    """Every call waiting past the target for a whole interval, the queue full: a call
    that would wait past the target is shed (503, Retry-After, counted), one within it
    still queues; once a call finds a slot free the queue admits as before."""
    queue, backlog = StandingQueue(), _backlog()
    _admit(backlog, queue, now=100.0)  # before: two rounds ahead may wait
    now = _overflowing(queue, 100.0, INTERVAL_S * 1.5)
    assert queue.standing
    with pytest.raises(CallShed, match="f has a standing queue") as caught:
        _admit(backlog, queue, now=now)
    assert backlog.shed == 1
    assert status_for(caught.value) == 503
    response = problem_from_error(caught.value, request_id="r")
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    _admit(backlog, queue, ahead=CONCURRENCY - 1, now=now)  # one round: within the target
    queue.waited(TARGET_S / 2, now, TARGET_S, INTERVAL_S)  # a short wait alone: still full
    with pytest.raises(CallShed):
        _admit(backlog, queue, now=now)
    queue.took_free_slot()  # drained
    _admit(backlog, queue, now=now)
    assert backlog.shed == 2


def test_a_closed_loop_queue_that_never_fills_is_not_shed() -> None:
    """Calls waiting past the target for many intervals, but none refused at the
    queue's bounds (a closed loop of clients keeps a queue of its own size): queued."""
    queue, backlog = StandingQueue(), _backlog()
    now = 100.0
    while now < 100.0 + 10 * INTERVAL_S:
        queue.waited(3 * SERVICE_S, now, TARGET_S, INTERVAL_S)
        now += 0.001
    assert not queue.standing
    _admit(backlog, queue, now=now)
    assert backlog.shed == 0


def test_no_service_time_yet_tells_nothing() -> None:
    """Before any call has finished (no service time), waits do not make a queue stand."""
    queue = StandingQueue()
    for _ in range(2 * OVERFLOW_REFUSALS):
        queue.refused()
        queue.overflowed(100.0)
    for i in range(1000):
        queue.waited(1.0, 100.0 + i, ShedTiming().target(0.0), ShedTiming().interval(0.0))
    assert not queue.standing
    assert queue.budget(TIMING, 0.0, 100.0) is None


def test_a_refusal_at_the_node_bound_tells_whether_the_function_was_past_its_own() -> None:
    """At the node's bound a call within its function's own bounds is refused as the
    node's alone (its queue is not full); one past its own budget too is not."""
    backlog = Backlog(QueueBounds(per_function=1000, node=3, wait_s=60.0))
    backlog.waiting = 3
    with pytest.raises(CallShed, match="the node has 3") as within:
        backlog.admit("f", CONCURRENCY, CONCURRENCY, SERVICE_S)
    assert within.value.node_only
    with pytest.raises(CallShed, match="the node has 3") as past:
        backlog.admit("f", 8 * CONCURRENCY, CONCURRENCY, SERVICE_S)
    assert not past.value.node_only
    with pytest.raises(CallShed, match="the node has 3") as standing:
        backlog.admit("f", CONCURRENCY, CONCURRENCY, SERVICE_S, TARGET_S)
    assert not standing.value.node_only


def test_a_queue_refused_16_times_within_a_second_overflows_whatever_a_free_slot_says() -> None:
    """The OVERFLOW_REFUSALS-th refusal within OVERFLOW_S (none served) makes the budget
    the target (two rounds ahead are shed, one still queues) for OVERFLOW_S after it, a
    slot found free meanwhile notwithstanding; each later refusal extends it; then the
    queue admits as before."""
    queue, backlog = StandingQueue(), _backlog()
    now = 100.0
    for _ in range(OVERFLOW_REFUSALS - 1):
        queue.overflowed(now)
        now += 0.01
    _admit(backlog, queue, now=now)  # one short of the count: a burst, queued
    queue.overflowed(now)
    assert queue.overflowing(now)
    queue.took_free_slot()  # a slot found free: CoDel's standing queue would end here
    with pytest.raises(CallShed, match="f has a standing queue"):
        _admit(backlog, queue, now=now + OVERFLOW_S / 2)
    _admit(backlog, queue, ahead=CONCURRENCY - 1, now=now + OVERFLOW_S / 2)  # one round
    queue.overflowed(now + OVERFLOW_S / 2)  # still refused: held on
    with pytest.raises(CallShed):
        _admit(backlog, queue, now=now + OVERFLOW_S * 1.4)
    _admit(backlog, queue, now=now + OVERFLOW_S * 1.6)  # a second after the last: over
    assert not queue.overflowing(now + OVERFLOW_S * 1.6)
    assert backlog.shed == 2


def test_refusals_thinner_than_16_a_second_never_make_a_queue_overflow() -> None:
    """A closed loop at the edge of the budget is refused now and then: a hundred
    refusals, 15 in any window, never make the queue overflow."""
    queue, backlog = StandingQueue(), _backlog()
    now = 100.0
    for _ in range(100):
        queue.overflowed(now)
        assert not queue.overflowing(now)
        _admit(backlog, queue, now=now)
        now += OVERFLOW_S / (OVERFLOW_REFUSALS - 1) + 0.001
    assert backlog.shed == 0


def test_a_queue_refused_less_often_than_it_serves_does_not_overflow() -> None:
    """Callers past twice the concurrency that wait the Retry-After: 48 refusals a
    second against 800 calls served does not make the queue overflow, nor hold an
    overflow past its second; refused as often as served, it does."""
    queue = StandingQueue()
    now = 100.0
    for _ in range(48):
        for _ in range(16):
            queue.served(now)
        queue.overflowed(now)
        now += 0.02
    assert not queue.overflowing(now)
    now += 5 * OVERFLOW_S  # long quiet: 16 refusals and fewer served arm it
    for _ in range(OVERFLOW_REFUSALS):
        queue.served(now)
        queue.overflowed(now)
    assert queue.overflowing(now)
    later = now + 0.5
    for _ in range(48):  # still overflowing, now refused far less than served
        for _ in range(16):
            queue.served(later)
        queue.overflowed(later)
    assert queue.overflowing(later)
    assert not queue.overflowing(now + OVERFLOW_S + 0.01)  # not held on by those


def test_refusals_back_together_each_second_do_not_hold_an_overflow_against_steady_service() -> (
    None
):
    """Callers refused while the queue overflowed come back together a Retry-After (a
    second) later, at the start of the next window: 48 refusals at once against 800
    calls served over every second do not hold it (helper-131's case: counted from the
    window's first refusal, they re-armed it every second)."""
    queue = StandingQueue()
    now = 100.0
    for _ in range(OVERFLOW_REFUSALS):
        queue.overflowed(now)
    assert queue.overflowing(now)
    for second in range(6):
        start = now + second * OVERFLOW_S
        for _ in range(48):
            queue.overflowed(start + 0.0005)
        if second:
            assert not queue.overflowing(start + 0.0006), second
        for i in range(800):
            queue.served(start + 0.001 + i * 0.99 * OVERFLOW_S / 800)
    assert not queue.overflowing(now + 6 * OVERFLOW_S)
