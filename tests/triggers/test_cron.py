"""Cron expressions and the scheduler's choice of what is due."""

from __future__ import annotations

import datetime as dt

import pytest

from donjon.triggers import CronError, CronExpression, Scheduler

T = dt.datetime(2026, 11, 22, 8, 15, tzinfo=dt.UTC)  # a Sunday


@pytest.mark.parametrize(
    ("expr", "fires"),
    [
        ("* * * * *", True),
        ("*/5 * * * *", True),
        ("*/7 * * * *", False),
        ("15 8 * * *", True),
        ("15 9 * * *", False),
        ("0-20/15 8 * * *", True),
        ("15 8 22 11 *", True),
        ("15 8 * * 0", True),
        ("15 8 * * 7", True),
        ("15 8 * * 1-5", False),
        ("15 8 1 * 0", True),  # day-of-month or day-of-week when both are set
        ("15 8 1 * 1", False),
        ("10,15,20 * * * *", True),
    ],
)
def test_matches(expr: str, fires: bool) -> None:
    """Each field form matches the minutes cron would fire."""
    assert CronExpression.parse(expr).matches(T) is fires


@pytest.mark.parametrize(
    "expr",
    [
        "* * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "a * * * *",
        "5-1 * * * *",
        "",
    ],
)
def test_rejects(expr: str) -> None:
    """Malformed or out-of-range expressions are errors."""
    with pytest.raises(CronError):
        CronExpression.parse(expr)


def test_scheduler_lists_due_jobs() -> None:
    """The scheduler fires exactly the jobs whose expression matches the minute."""
    jobs = [("a", CronExpression.parse("*/5 * * * *")), ("b", CronExpression.parse("0 0 * * *"))]

    async def fire(name: str, text: str, minute: dt.datetime) -> None:
        raise AssertionError("not called by due()")

    assert Scheduler(lambda: jobs, fire).due(T) == [("a", "*/5 * * * *")]
