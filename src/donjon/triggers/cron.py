"""Cron schedules: five fields (minute hour day-of-month month day-of-week) or a macro.

croniter reads the expression (numbers, ranges, steps, lists, month and day
names) and finds when it next fires; what Donjon adds is a narrower grammar
(exactly five fields, no seconds or years, no `L`/`#`/`H` extensions, no
ranges that run backwards) and, at deploy, a refusal of schedules that can
never fire (`0 0 30 2 *`). Matching a minute is a set lookup on the fields
croniter expanded, so the scheduler's once-a-minute pass stays cheap with many
functions.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from croniter import CroniterBadDateError, CroniterError, croniter

__all__ = ["MACROS", "CronError", "CronExpression"]

#: The macros cron implementations share; `@reboot` has no meaning for a node.
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_FIELDS = ("minute", "hour", "day of month", "month", "day of week")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NAMES: tuple[dict[str, int], ...] = (
    {},
    {},
    {},
    {m: i + 1 for i, m in enumerate(_MONTHS)},
    {d: i for i, d in enumerate(_DAYS)},
)
#: Digits, `*`, names, and the `,` `-` `/` that join them: nothing else in a field.
_FIELD = re.compile(r"[0-9a-z*,/-]+")
#: The longest number a field may hold (leading zeros included): values are at most 59.
_MAX_DIGITS = 4
#: The most items a field's list may hold: a minute field's 60 values, each written once
#: (croniter took 0.2 s to read 20,000, at every deploy and node start).
_MAX_ITEMS = 60
#: Since any schedule that can fire does so within a 28-year calendar cycle (leap
#: days and weekdays repeat), a search from a fixed start that finds nothing within
#: that span proves it never will.
_CYCLE_YEARS = 28
_EPOCH = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)


class CronError(ValueError):
    """A cron expression that does not parse, or (at deploy) can never fire."""


def _check_ranges(field: str, index: int) -> None:
    """Refuse `a-b` with a > b: croniter would wrap it around, cron refuses it."""
    for part in field.split(","):
        body = part.partition("/")[0]
        if "-" not in body:
            continue
        low, _, high = body.partition("-")
        values = [_NAMES[index].get(v, int(v) if v.isdigit() else -1) for v in (low, high)]
        if -1 not in values and values[0] > values[1]:
            raise CronError(f"the range {body!r} in the {_FIELDS[index]} field runs backwards")


def _check_parts(field: str, index: int) -> None:
    """Refuse a step that is not a whole number from 1 (`5-5/0`, `5-5/-`: a one-value range
    drops its step, which croniter then never read), a number too long to be a value, and
    a list longer than a field has values."""
    if field.count(",") >= _MAX_ITEMS:
        raise CronError(
            f"the {_FIELDS[index]} field lists {field.count(',') + 1} items; a field lists "
            f"at most {_MAX_ITEMS} (use ranges and steps: '0-30/5')"
        )
    for number in re.findall("[0-9]+", field):
        if len(number) > _MAX_DIGITS:
            raise CronError(
                f"a number in the {_FIELDS[index]} field has {len(number)} digits; "
                f"a value or step has at most {_MAX_DIGITS}"
            )
    for part in field.split(","):
        _, slash, step = part.partition("/")
        if slash and not (step.isdigit() and int(step) > 0):
            raise CronError(
                f"bad step {step!r} in the {_FIELDS[index]} field: a step is a whole number "
                "from 1 (`*/15`, `0-30/5`)"
            )


def _number(value: str, index: int) -> int | None:
    """The number a field's value names (`wed` is 3, `05` is 5); None for anything else."""
    if value in _NAMES[index]:
        return _NAMES[index][value]
    return int(value) if value.isdigit() else None


def _single_ranges(field: str, index: int) -> str:
    """`field` with each one-value range (`5-5`, `wed-wed`, `3-wed`, `jan-1`, `5-5/2`)
    written as its value: croniter reads `a-a` as `*` (so `5-5 * * * *` would fire every
    minute, and `0 0 * jan-1 *` every month), cron as `a`."""
    parts = []
    for part in field.split(","):
        body = part.partition("/")[0]
        low, dash, high = body.partition("-")
        one = dash and _number(low, index) is not None
        parts.append(low if one and _number(low, index) == _number(high, index) else part)
    return ",".join(parts)


def _values(expanded: Sequence[object], index: int) -> frozenset[int]:
    low, high = _RANGES[index]
    if expanded == ["*"]:
        return frozenset(range(low, high + 1))
    values = {int(str(v)) for v in expanded}
    if index == 4 and 7 in values:  # 7 is Sunday too
        values = (values - {7}) | {0}
    return frozenset(values)


@dataclass(frozen=True)
class CronExpression:
    #: The schedule as written in the manifest (a macro stays a macro).
    text: str
    #: The five fields this schedule stands for, as croniter reads them (a macro
    #: expanded, lower case, one-value ranges as their value).
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    #: A minute's day fires on either day field (neither starts with `*`), else on both.
    days_either: bool

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        """Read a five-field expression or a macro; `CronError` says what is wrong."""
        written = text.strip()
        if written.startswith("@"):
            if written.lower() not in MACROS:
                raise CronError(f"unknown macro {written!r}; use one of {', '.join(MACROS)}")
            written = MACROS[written.lower()]
        shown = written.split()
        fields = written.lower().split()
        if len(fields) != 5:
            raise CronError(
                f"a schedule has 5 fields (minute hour day month weekday) or is a macro "
                f"such as @daily, got {len(fields)} fields in {text!r}"
            )
        for index, field in enumerate(fields):
            names = set(re.findall("[a-z]+", field))
            if not _FIELD.fullmatch(field) or not names <= _NAMES[index].keys():
                raise CronError(f"bad value {shown[index]!r} in the {_FIELDS[index]} field")
            _check_parts(field, index)
            _check_ranges(field, index)
        # As cron (Vixie, cronie) decides it: a day field starting with `*` (`*/2` too)
        # leaves the other one alone to decide; croniter took `*/2` for a restriction,
        # and `0 9 */2 * mon-fri` fired on every weekday and on every odd day.
        days_either = not (fields[2].startswith("*") or fields[4].startswith("*"))
        fields = [_single_ranges(field, index) for index, field in enumerate(fields)]
        try:
            expanded = croniter(" ".join(fields)).expanded
        except CroniterError as e:
            raise CronError(f"{text!r} is not a cron schedule: {e}") from e
        minutes, hours, days, months, weekdays = (_values(expanded[i], i) for i in range(5))
        return cls(
            text,
            " ".join(fields),
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_either=days_either,
        )

    def next_after(self, when: dt.datetime) -> dt.datetime:
        """The first minute after `when` that fires; `CronError` if none ever does."""
        try:
            found = croniter(
                self.expression,
                when,
                ret_type=dt.datetime,
                day_or=self.days_either,
                max_years_between_matches=_CYCLE_YEARS,
            ).get_next(dt.datetime)
        except CroniterBadDateError as e:
            raise CronError(
                f"the schedule {self.text!r} can never fire: no month it names has such a day"
            ) from e
        if not isinstance(found, dt.datetime):  # pragma: no cover - ret_type says datetime
            raise CronError(f"the schedule {self.text!r} gave no date")
        return found

    def check_fires(self) -> None:
        """Refuse a schedule that names no date that exists (checked at deploy)."""
        self.next_after(_EPOCH)

    def matches(self, when: dt.datetime) -> bool:
        """Does minute `when` fire? Day fields combine as cron does: either, when neither
        starts with `*`; else both (a `*` field holds every day)."""
        if when.minute not in self.minutes or when.hour not in self.hours:
            return False
        if when.month not in self.months:
            return False
        day_ok = when.day in self.days
        weekday_ok = (when.isoweekday() % 7) in self.weekdays
        if self.days_either:
            return day_ok or weekday_ok
        return day_ok and weekday_ok
