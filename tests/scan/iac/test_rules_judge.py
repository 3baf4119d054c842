"""How every non-IAM DJ-IAC rule reads a value: sure, "may", unresolved, or fine."""

from __future__ import annotations

from donjon.scan.iac.judge import read, read_missing
from donjon.scan.iac.model import Unresolved, Val
from donjon.scan.model import Confidence


def _bad(value: str) -> bool:
    return value == "bad"


def _good(value: str) -> bool:
    return value == "good"


UNKNOWN = Unresolved("!Ref P", "parameter without default")


def test_read_a_known_bad_value_is_sure() -> None:
    """One known bad value, no condition: high, no "may"."""
    reading = read(Val.of("bad", 3), _bad)
    assert reading is not None
    assert (reading.confidence, reading.may, reading.verb) == (Confidence.HIGH, "", "is")


def test_read_a_bad_branch_or_a_partly_unknown_value_is_may() -> None:
    """A bad value under a condition, among others, or beside an unresolved part: medium."""
    for val in (
        Val.of("bad", 3, conditional=True),
        Val(("good", "bad"), (), 3),
        Val(("bad",), (UNKNOWN,), 3),
    ):
        reading = read(val, _bad)
        assert reading is not None
        assert (reading.confidence, reading.may, reading.verb) == (
            Confidence.MEDIUM,
            "may ",
            "may be",
        )


def test_read_unresolved_is_low_and_named_and_good_or_absent_is_none() -> None:
    """Nothing known bad but something unresolved: low, naming it; good or absent: None."""
    reading = read(Val[str]((), (UNKNOWN,), 3), _bad)
    assert reading is not None
    assert reading.confidence is Confidence.LOW
    assert "!Ref P" in reading.note()
    assert read(Val.of("good", 3), _bad) is None
    assert read(Val[str](), _bad) is None


def test_read_missing_absent_or_bad_is_sure() -> None:
    """A setting absent, or set to a bad value, is a sure finding."""
    absent = read_missing(Val[str](), _good)
    bad = read_missing(Val.of("off", 3), _good)
    assert absent is not None and absent.confidence is Confidence.HIGH
    assert bad is not None and bad.confidence is Confidence.HIGH and bad.value == "off"


def test_read_missing_set_under_a_condition_is_may() -> None:
    """Good in one branch and absent (AWS::NoValue) in the other, or good and bad: medium."""
    for val in (Val.of("good", 3, conditional=True), Val(("good", "off"), (), 3, True)):
        reading = read_missing(val, _good)
        assert reading is not None and reading.confidence is Confidence.MEDIUM


def test_read_missing_unresolved_is_low_and_good_is_none() -> None:
    """An unresolved setting is low; a good one, in every branch, is fine."""
    reading = read_missing(Val[str]((), (UNKNOWN,), 3), _good)
    assert reading is not None and reading.confidence is Confidence.LOW
    assert read_missing(Val.of("good", 3), _good) is None
    assert read_missing(Val(("good", "good"), (), 3, True), _good) is None
