"""The daily-quota tests' guard (tests/utc_day.py) waits out only the day's last minute."""

from __future__ import annotations

import time

import pytest

import utc_day


@pytest.mark.parametrize(
    ("now", "slept"),
    [
        (86400 * 20_000 + 86400 - 30.5, 31.5),  # 30.5 s left: waits them out, and a second
        (86400 * 20_000 + 86400 - 60.5, None),  # a minute and more left: goes on at once
        (86400 * 20_000 + 5.0, None),  # just past midnight
    ],
)
def test_only_the_last_minute_is_waited_out(
    monkeypatch: pytest.MonkeyPatch, now: float, slept: float | None
) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(time, "time", lambda: now)
    monkeypatch.setattr(time, "sleep", sleeps.append)
    utc_day.clear_of_utc_midnight()
    assert sleeps == ([] if slept is None else [pytest.approx(slept)])
