"""How the DJ-IAC rules (other than IAM) read a `Val`: sure, "may", or unresolved.

One reading for every rule, so every rule grades the same way:

- every value the property may take is known, the bad one among them, and no condition
  guards it: the finding is sure (`Confidence.HIGH`, or the rule's own grade);
- the bad value holds only under a condition (``Fn::If``, a ``${opt:}`` default) or is one
  of several values the property may take: the finding says "may" (`Confidence.MEDIUM`);
- no known value is bad, but part of the value could not be resolved: never taken as
  safe, the finding names the expression (`Confidence.LOW`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from donjon.scan.iac.model import Val
from donjon.scan.model import Confidence

__all__ = ["Reading", "read", "read_missing", "unresolved_text"]

T = TypeVar("T")


@dataclass(frozen=True)
class Reading:
    """What a rule made of one property: how sure it is, and the words for it."""

    confidence: Confidence
    #: "" when sure, "may " when conditional (so a message reads "... may be public").
    may: str
    #: The unresolved expressions, when the finding comes only from them.
    unresolved: str = ""
    #: The bad value that was found (absent for an unresolved reading).
    value: object = None

    @property
    def verb(self) -> str:
        """``is`` when sure, ``may be`` when conditional or unresolved."""
        return "may be" if self.may or self.unresolved else "is"

    def note(self) -> str:
        """The message's tail for an unresolved reading: which expression, and why."""
        return f" (unresolved: {self.unresolved})" if self.unresolved else ""


def unresolved_text(val: Val[T]) -> str:
    """The expressions `val` could not resolve, as one line."""
    return "; ".join(str(u) for u in val.unresolved)


def read(val: Val[T], bad: Callable[[T], bool]) -> Reading | None:
    """How `val` meets `bad`: None when no value it may take is bad and all are known
    (an absent property is fine here: the loader wrote the effective default)."""
    bad_values = [v for v in val.known if bad(v)]
    if bad_values:
        hedged = len(val.known) > 1 or bool(val.unresolved) or val.conditional
        return Reading(
            Confidence.MEDIUM if hedged else Confidence.HIGH,
            "may " if hedged else "",
            value=bad_values[0],
        )
    if val.unresolved:
        return Reading(Confidence.LOW, "", unresolved=unresolved_text(val))
    return None


def read_missing(val: Val[T], good: Callable[[T], bool] = lambda _: True) -> Reading | None:
    """How far `val` falls short of a setting that should be there and be `good`
    (tracing ``Active``, a dead-letter target, a retention): None when it surely is.

    Absent, or only bad values: sure. Good only under a condition, or good in one branch
    and bad in another: "may". Nothing good known but something unresolved: low.
    """
    if not val.present:
        return Reading(Confidence.HIGH, "")
    bad_values = [v for v in val.known if not good(v)]
    if bad_values:
        hedged = len(bad_values) < len(val.known) or val.unresolved or val.conditional
        return Reading(
            Confidence.MEDIUM if hedged else Confidence.HIGH,
            "may " if hedged else "",
            value=bad_values[0],
        )
    if val.unresolved:
        return Reading(Confidence.LOW, "", unresolved=unresolved_text(val))
    if val.conditional and len(val.known) == 1:
        # One branch sets it, the other leaves it out (``AWS::NoValue``).
        return Reading(Confidence.MEDIUM, "may ")
    return None
