"""Cron expressions and the scheduler's choice of what is due."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from donjon.triggers import CronError, CronExpression, Scheduler
from donjon.triggers.schedule import MAX_STEP_BACK

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
        ("15 8 * nov sun", True),
        ("15 8 * NOV Sun", True),
        ("15 8 * jan-oct *", False),
        ("15 8 * * mon-fri", False),
        ("15 8 * * sat,sun", True),
        ("@hourly", False),
        ("@daily", False),
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
        "*-* * * * *",
        "",
        "* * * * * *",
        "0 0 1 1 * 2027",
        "0 0 L * *",
        "0 0 * * 5#3",
        "H * * * *",
        "0 0 ? * *",
        "0 0 * mon *",
        "0 0 * * jan",
        "0 0 * * fri-mon",
        "@reboot",
        "@every 5m",
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


def test_a_function_is_called_once_a_minute_however_many_of_its_schedules_match() -> None:
    """A minute that matches calls the function once (docs/triggers.md): a manifest of 500
    `* * * * *` schedules called it 500 times a minute (72 ran on a live node, the rest shed
    by its concurrency), past every limit of the key that deployed it. The event names the
    first schedule that matched."""
    jobs = [
        ("a", CronExpression.parse("15 * * * *")),
        *[("a", CronExpression.parse("* * * * *")) for _ in range(500)],
        ("a", CronExpression.parse("@daily")),
        ("b", CronExpression.parse("*/5 * * * *")),
        ("b", CronExpression.parse("15 8 * * *")),
    ]

    async def fire(name: str, text: str, minute: dt.datetime) -> None:
        raise AssertionError("not called by due()")

    assert Scheduler(lambda: jobs, fire).due(T) == [("a", "15 * * * *"), ("b", "*/5 * * * *")]


@pytest.mark.parametrize(
    ("macro", "expression"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
    ],
)
def test_macros_stand_for_their_expression(macro: str, expression: str) -> None:
    """Each macro fires exactly when the five fields it stands for fire, over a whole year."""
    a, b = CronExpression.parse(macro), CronExpression.parse(expression)
    assert a.text == macro and a.expression == expression
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for hour in range(0, 366 * 24, 7):
        when = start + dt.timedelta(hours=hour)
        assert a.matches(when) is b.matches(when)


def test_names_mean_their_numbers() -> None:
    """Month and day names (any case) expand to the same sets as their numbers."""
    a = CronExpression.parse("0 9 * Jan-MAR,dec mon-fri")
    b = CronExpression.parse("0 9 * 1-3,12 1-5")
    assert (a.months, a.weekdays) == (b.months, b.weekdays)


@pytest.mark.parametrize(
    "expr", ["0 0 30 2 *", "0 0 31 feb *", "0 0 31 4,6,9,11 *", "0 0 30-31 2 *"]
)
def test_a_schedule_that_can_never_fire_is_refused(expr: str) -> None:
    """Dates that do not exist parse, but check_fires (run at deploy) refuses them."""
    cron = CronExpression.parse(expr)
    with pytest.raises(CronError, match="can never fire"):
        cron.check_fires()


@pytest.mark.parametrize(
    ("expr", "after", "first"),
    [
        ("0 0 29 2 *", dt.datetime(2097, 3, 1, tzinfo=dt.UTC), dt.datetime(2104, 2, 29)),
        ("0 0 30 2 mon", T, dt.datetime(2027, 2, 1)),
        ("@monthly", T, dt.datetime(2026, 12, 1)),
    ],
)
def test_rare_schedules_fire(expr: str, after: dt.datetime, first: dt.datetime) -> None:
    """Leap days (even across 2100) and day-or-weekday schedules are not 'never'."""
    cron = CronExpression.parse(expr)
    cron.check_fires()
    assert cron.next_after(after) == first.replace(tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("expr", "fires_at_t", "only"),
    [
        # T is 08:15 on a Sunday, the 22nd of November.
        ("5-5 * * * *", False, "5 * * * *"),
        ("15-15 * * * *", True, "15 * * * *"),
        ("15 9-9 * * *", False, "15 9 * * *"),
        ("15 8 * * 3-3", False, "15 8 * * 3"),
        ("15 8 * * wed-wed", False, "15 8 * * 3"),
        ("15 8 21-21 * *", False, "15 8 21 * *"),
        ("15 8 * dec-dec *", False, "15 8 * 12 *"),
        ("5-5/2 * * * *", False, "5 * * * *"),
        ("1,5-5 * * * *", False, "1,5 * * * *"),
        # A name and a number for the same value (croniter took these for `*` too).
        ("15 8 * * 3-wed", False, "15 8 * * 3"),
        ("15 8 * * wed-3", False, "15 8 * * 3"),
        ("15 8 * * 0-sun", True, "15 8 * * 0"),
        ("15 8 * * sun-0", True, "15 8 * * 0"),
        ("15 8 * jan-1 *", False, "15 8 * 1 *"),
        ("15 8 * 12-DEC *", False, "15 8 * 12 *"),
        ("15 8 * * 05-5", False, "15 8 * * 5"),
    ],
)
def test_a_one_value_range_is_that_value(expr: str, fires_at_t: bool, only: str) -> None:
    """`5-5` is minute 5 only, as cron reads it (croniter took it for `*`: a schedule of
    `5-5 * * * *` fired every minute, 60 times what its manifest asked, and `0 0 * * 3-3`
    every day): it fires, and next fires, where the single value would."""
    parsed, single = CronExpression.parse(expr), CronExpression.parse(only)
    assert parsed.matches(T) is fires_at_t
    for field in ("minutes", "hours", "days", "months", "weekdays"):
        assert getattr(parsed, field) == getattr(single, field), field
    assert parsed.next_after(T) == single.next_after(T)


def _fired_after_a_step_back(wrong: dt.datetime, right: dt.datetime) -> list[dt.datetime]:
    """The minutes a `* * * * *` schedule fires when the clock reads `wrong`, then `right`
    (its first fire made, the clock stepped back), within about a second."""
    readings = iter([wrong, right])
    fired: list[dt.datetime] = []

    def clock() -> dt.datetime:
        return next(readings, right.replace(microsecond=999_000))

    async def fire(name: str, text: str, minute: dt.datetime) -> None:
        fired.append(minute)

    async def run() -> None:
        scheduler = Scheduler(lambda: [("a", CronExpression.parse("* * * * *"))], fire, clock)
        scheduler.start()
        for _ in range(100):  # each wait is ~50 ms once the clock is read right
            await asyncio.sleep(0.01)
            if len(fired) > 1:
                break
        await scheduler.stop()

    asyncio.run(run())
    return fired


def test_a_minute_fires_once_though_the_wall_clock_lags_the_sleep() -> None:
    """The scheduler sleeps on the loop's monotonic clock to a wall-clock minute: a wall
    clock slewed slow (NTP, 0.05%: 30 ms a minute) or stepped back wakes it before the
    minute by its own reading. 12:00 fires once all the same (before, the next pass read
    11:59:59.990, took 12:00 for the next minute, and fired it again 10 ms later)."""
    start = dt.datetime(2026, 11, 22, 11, 59, 59, 950_000, tzinfo=dt.UTC)
    assert _fired_after_a_step_back(start, start.replace(microsecond=990_000)) == [
        dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
    ]


@pytest.mark.parametrize(
    ("expr", "fires"),
    [
        # T is Sunday 22 November: an even day.
        ("15 8 */2 * 0", False),  # odd days AND Sundays: '*/2' starts with '*'
        ("15 8 */2 * 1", False),
        ("15 8 1-31/2 * 0", True),  # odd days OR Sundays: neither field starts with '*'
        ("15 8 22 * */2", True),  # day 22 AND Sun/Tue/Thu/Sat
        ("15 8 22 * */3", True),  # day 22 AND Sun/Wed/Sat
        ("15 8 21 * */2", False),
        ("15 8 21 * 0-6", True),  # no '*': day 21 OR any weekday
    ],
)
def test_a_day_field_starting_with_a_star_makes_both_needed(expr: str, fires: bool) -> None:
    """Both day fields restricted fire on either only when neither starts with '*', as in
    cron (Vixie, cronie: `*/2` counts as '*'); croniter alone fired `0 9 */2 * mon-fri` on
    every weekday and every odd day, weekends too."""
    assert CronExpression.parse(expr).matches(T) is fires


def test_a_starred_day_field_with_a_day_that_never_comes_never_fires() -> None:
    """`0 0 30 2 */1` is the 30th of February AND any weekday: refused at deploy, as
    `0 0 30 2 *` is (croniter alone took it for every day of February)."""
    with pytest.raises(CronError, match="can never fire"):
        CronExpression.parse("0 0 30 2 */1").check_fires()


def test_a_clock_stepped_back_far_resumes_firing_on_the_corrected_time() -> None:
    """A node that booted with its clock a year ahead (a bad RTC) fires 12:00 of that year;
    then NTP steps the clock back. The scheduler waited for the minute after the one it had
    fired, a year on: no schedule fired until the node restarted. A step back of more than
    MAX_STEP_BACK is taken for a corrected clock and firing resumes on it."""
    wrong = dt.datetime(2027, 11, 22, 11, 59, 59, 950_000, tzinfo=dt.UTC)
    right = dt.datetime(2026, 11, 22, 11, 59, 59, 970_000, tzinfo=dt.UTC)
    assert _fired_after_a_step_back(wrong, right) == [
        dt.datetime(2027, 11, 22, 12, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC),
    ]


def test_a_clock_stepped_back_a_little_fires_no_minute_twice() -> None:
    """Stepped back by less than MAX_STEP_BACK, the minutes up to the one fired are not
    fired again: 11:59 and 12:00 do not come round a second time."""
    wrong = dt.datetime(2026, 11, 22, 11, 59, 59, 950_000, tzinfo=dt.UTC)
    right = wrong - MAX_STEP_BACK + dt.timedelta(minutes=1, milliseconds=20)
    assert _fired_after_a_step_back(wrong, right) == [
        dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
    ]


@pytest.mark.parametrize(
    ("expr", "said"),
    [
        ("5-5/0 * * * *", "step"),  # `5/0` and `*/0` were refused, `5-5/0` ran as minute 5
        ("5-5/- * * * *", "step"),
        ("5-5/2/3 * * * *", "step"),
        ("0 0 * * mon-mon/0", "step"),
        ("0 0 * * 1-1/sun", "step"),
        ("9" * 5000 + " * * * *", "digits"),  # was Python's int() limit, told as it is
        ("1-" + "9" * 5000 + " * * * *", "digits"),
        ("0 0 */" + "1" * 40 + " * *", "digits"),
    ],
)
def test_a_bad_step_or_number_is_refused_with_its_reason(expr: str, said: str) -> None:
    """A one-value range is read as its value (cron's `a-a`), but its step was dropped
    unread: `5-5/0` and `5-5/-` deployed as `5`. A number past a few digits got Python's
    own "Exceeds the limit (4300 digits)" message."""
    with pytest.raises(CronError, match=said):
        CronExpression.parse(expr)


def test_a_field_of_thousands_of_list_items_is_refused() -> None:
    """`1,1,1,...` 20,000 times fits in a manifest: croniter took 0.2 s of CPU to read it at
    each deploy and at each node start, for every such function (a developer's 1,000
    functions: minutes of a start). A field lists at most 60 items (a minute field's 60
    values, each written once); every minute listed once still parses."""
    every = ",".join(str(m) for m in range(60))
    assert CronExpression.parse(f"{every} * * * *").minutes == frozenset(range(60))
    with pytest.raises(CronError, match="at most 60"):
        CronExpression.parse(",".join(["1"] * 20_000) + " * * * *")
    with pytest.raises(CronError, match="at most 60"):
        CronExpression.parse("0 0 " + ",".join(["1"] * 61) + " * *")
