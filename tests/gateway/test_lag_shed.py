"""PIE's controller on the event loop's lag (gateway/lag_shed.py) and its knobs: lag
samples and the clock are injected, nothing sleeps."""

from __future__ import annotations

import asyncio

import pytest

from donjon.config import ConfigError, load_settings
from donjon.gateway.lag_shed import ARM_REFUSALS, ARM_S, SAFE_P, LagController, LagShed

TARGET = 0.010  # 10 ms
STEP = 0.015  # one update interval


def _feed(controller: LagController, lags_s: list[float], start: float = 0.0) -> float:
    """Give `controller` one lag sample per interval from `start`; the clock after."""
    now = start
    for lag in lags_s:
        now += STEP
        controller.update(lag, now)
    return now


def _overflow(controller: LagController, now: float, refusals: int = ARM_REFUSALS) -> None:
    """`refusals` calls refused at the pool's bounds at `now`."""
    for _ in range(refusals):
        controller.overflowed(now)


def _share(controller: LagController, draws: int = 1000) -> float:
    """The share of `draws` evenly spread uniform draws the controller sheds."""
    return sum(controller.sheds((i + 0.5) / draws) for i in range(draws)) / draws


def test_p_rises_while_the_loop_lags_past_the_target_under_overflow() -> None:
    """Armed by a refusal at the pool's bounds, a lag 4x the target raises p step by
    step, and about that share of calls is shed."""
    controller = LagController(TARGET)
    _overflow(controller, 0.0)
    shares = []
    now = 0.0
    for _ in range(5):
        now = _feed(controller, [0.040] * 4, now)
        shares.append(controller.p)
    assert shares == sorted(shares) and shares[0] > 0.0
    assert shares[-1] == pytest.approx(1.0) or shares[-1] > SAFE_P
    assert _share(controller) == pytest.approx(controller.p, abs=0.002)


def test_p_falls_when_the_lag_is_below_the_target_and_decays_to_zero() -> None:
    """Once the lag is back under half the target, p decays to exactly 0 and nothing
    is shed; the controller is then idle (not armed once the arming has passed)."""
    controller = LagController(TARGET)
    _overflow(controller, 0.0)
    now = _feed(controller, [0.050] * 20)
    high = controller.p
    assert high > 0.5
    now = _feed(controller, [0.002] * 3, now)
    assert 0.0 < controller.p < high
    now = _feed(controller, [0.001] * 200, now)
    assert controller.p == 0.0
    assert _share(controller) == 0.0
    assert not controller.armed(now)


def test_p_stays_zero_without_an_overflow_however_late_the_loop() -> None:
    """Ordinary load: no call refused at the pool's bounds, so even a loop 200 ms late
    (a stall of a loaded machine, a closed loop saturating it) sheds nothing."""
    controller = LagController(TARGET)
    _feed(controller, [0.200] * 100)
    assert controller.p == 0.0
    assert _share(controller) == 0.0


def test_p_stays_zero_under_an_ordinary_lag_even_when_armed() -> None:
    """A lag under the target does not raise p, whatever the overflow."""
    controller = LagController(TARGET)
    now = 0.0
    for _ in range(50):
        _overflow(controller, now)
        now = _feed(controller, [0.004, 0.009, 0.0, 0.006], now)
        assert controller.p == 0.0


def test_p_only_starts_within_the_arming_window() -> None:
    """An overflow arms the controller for ARM_S: a lag after that starts nothing."""
    controller = LagController(TARGET)
    _overflow(controller, 0.0)
    _feed(controller, [0.0] * 10)
    _feed(controller, [0.100] * 10, start=ARM_S + 0.001)
    assert controller.p == 0.0


def test_a_small_p_sheds_nothing_while_the_lag_is_short() -> None:
    """RFC 8033's safeguard: under SAFE_P, a lag below half the target sheds nothing
    (a burst drained), though p has not decayed yet."""
    controller = LagController(TARGET)
    _overflow(controller, 0.0)
    now = _feed(controller, [0.014] * 3)
    assert 0.0 < controller.p < SAFE_P
    assert _share(controller) > 0.0
    controller.update(0.001, now + STEP)
    assert 0.0 < controller.p < SAFE_P
    assert _share(controller) == 0.0


_BASE = {"DONJON_DATA_DIR": "/tmp/donjon-lag-shed-test"}


def test_knobs_default_and_read_in_ms() -> None:
    """DONJON_LAG_TARGET_MS (10) and DONJON_LAG_INTERVAL_MS (15), read in ms."""
    limits = load_settings(_BASE).connections
    assert (limits.lag_target_s, limits.lag_interval_s) == (0.01, 0.015)
    limits = load_settings(
        {**_BASE, "DONJON_LAG_TARGET_MS": "25", "DONJON_LAG_INTERVAL_MS": "5"}
    ).connections
    assert limits.lag_target_s == pytest.approx(0.025)
    assert limits.lag_interval_s == pytest.approx(0.005)


@pytest.mark.parametrize(
    "env",
    [
        {"DONJON_LAG_TARGET_MS": "0"},
        {"DONJON_LAG_TARGET_MS": "-5"},
        {"DONJON_LAG_TARGET_MS": "nan"},
        {"DONJON_LAG_INTERVAL_MS": "0"},
        {"DONJON_LAG_INTERVAL_MS": "5000"},
        {"DONJON_LAG_TARGET_MS": "250"},  # not below DONJON_MAX_LOOP_LAG_S (0.25 s)
        {"DONJON_LAG_TARGET_MS": "100", "DONJON_MAX_LOOP_LAG_S": "0.05"},
    ],
)
def test_bad_knobs_are_a_clear_error(env: dict[str, str]) -> None:
    """0 does not switch the share off (DONJON_MAX_LOOP_LAG_S=0 does); a target at or
    above the all-or-nothing bound, and out-of-range values, stop the node at start."""
    with pytest.raises(ConfigError) as caught:
        load_settings({**_BASE, **env})
    assert "DONJON_LAG_" in str(caught.value)


def test_max_loop_lag_zero_allows_any_target() -> None:
    """With the loop's lag shedding off (DONJON_MAX_LOOP_LAG_S=0) the target is not
    compared with it."""
    settings = load_settings({**_BASE, "DONJON_MAX_LOOP_LAG_S": "0", "DONJON_LAG_TARGET_MS": "500"})
    assert settings.connections.max_loop_lag_s == 0.0


def test_a_few_refusals_do_not_arm() -> None:
    """Fewer than ARM_REFUSALS refusals within ARM_S (a closed loop at the edge of the
    queue's budget) start nothing, however late the loop; ARM_REFUSALS of them do."""
    controller = LagController(TARGET)
    now = 0.0
    for _ in range(10):
        _overflow(controller, now, ARM_REFUSALS - 1)
        now = _feed(controller, [0.100] * 80, now)  # more than ARM_S: the count restarts
        assert controller.p == 0.0
    _overflow(controller, now)
    _feed(controller, [0.100] * 4, now)
    assert controller.p > 0.0


def test_p_returns_to_zero_once_overflows_stop_though_the_loop_stays_late() -> None:
    """After an overload the pool refuses nothing more, but the loop stays a little past
    the target (another process's CPU, a stalled machine: a lag shedding cannot cure):
    p must not stay up shedding every call of a node whose pool takes them all; within
    30 s of the last refusal it is 0 and nothing is shed."""
    controller = LagController(TARGET)
    _overflow(controller, 0.0)
    now = _feed(controller, [0.040] * 20)
    assert controller.p > 0.5
    now = _feed(controller, [0.012] * round(30.0 / STEP), now)
    assert controller.p == 0.0
    assert _share(controller) == 0.0
    _overflow(controller, now)  # a new overload arms it again
    _feed(controller, [0.040] * 4, now)
    assert controller.p > 0.0


def test_p_is_held_while_the_overload_goes_on() -> None:
    """While the pool keeps refusing calls at its bounds (re-arming each second), a lag
    past the target keeps p up: HOLD_S ends the share only once the overflows stop."""
    controller = LagController(TARGET)
    now = 0.0
    for _ in range(30):
        _overflow(controller, now)
        now = _feed(controller, [0.012] * round(1.0 / STEP), now)
        assert controller.p > 0.0
    assert _share(controller) > SAFE_P


def test_only_the_overflowing_functions_calls_are_in_the_share() -> None:
    """With p at 1, a head is shed only if the pool refused a call of its function at its
    bounds lately: one tenant's full function puts no other function's calls in the share."""

    async def go() -> tuple[bool, bool]:
        shed = LagShed(TARGET, STEP)
        for _ in range(ARM_REFUSALS):
            shed.overflowed("full")
        shed.controller.update(0.050, asyncio.get_running_loop().time())
        shed.controller.p = 1.0
        try:
            return shed.sheds("full"), shed.sheds("roomy")
        finally:
            await shed.stop()

    assert asyncio.run(go()) == (True, False)
