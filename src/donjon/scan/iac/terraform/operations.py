"""Operators, conditionals and interpolation of Terraform values, as the evaluator
applies them: numbers only for arithmetic and ordering (Terraform's rule, and no
Python repetition of lists or strings), bounded integers, conditionals flattened into
one `Choice` of at most `MAX_CHOICES` values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from donjon.scan.iac.model import Unresolved
from donjon.scan.iac.terraform.values import Choice, Json, TooLarge, bounded, describe

__all__ = ["MAX_CHOICES", "as_text", "choose", "operate", "why"]

_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "&&": lambda a, b: bool(a) and bool(b),
    "||": lambda a, b: bool(a) or bool(b),
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "%": lambda a, b: a % b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}
_NUMERIC = frozenset({"+", "-", "*", "/", "%", "<", ">", "<=", ">="})
#: Integers past this are left unresolved (Terraform's numbers are not arbitrary-size,
#: and squaring a local at each level would otherwise grow without bound).
_MAX_INT = 1 << 64


def operate(operator: str, left: Any, right: Any, written: str) -> Any:
    """``left operator right`` with both known; unresolved when Terraform would refuse
    it or the result is out of bounds."""
    try:
        if operator in _NUMERIC:
            left, right = _number(left), _number(right)
        elif operator in ("==", "!="):
            bounded((left, right))  # comparing values that share parts: weighed first
        result = _OPERATORS[operator](left, right)
    except TooLarge:
        return Unresolved(written[:200], "value too large to compare")
    except (TypeError, ValueError, ZeroDivisionError, KeyError, OverflowError):
        return Unresolved(written, f"operator {operator} on these values")
    if isinstance(result, int) and not isinstance(result, bool) and abs(result) > _MAX_INT:
        return Unresolved(written[:200], "number too large to evaluate")
    return result


#: The most values a conditional may take (nested conditionals multiply them).
MAX_CHOICES = 32


def choose(yes: Any, no: Any, written: str) -> Any:
    """Both branches as one flat `Choice` (a branch that is itself a choice is spliced),
    without repeats; more than `MAX_CHOICES` is unresolved."""
    options: list[Any] = []
    for branch in (yes, no):
        for option in branch if isinstance(branch, Choice) else (branch,):
            if not any(option is o for o in options):
                options.append(option)
    if len(options) > MAX_CHOICES:
        return Unresolved(written[:200], "too many conditional values")
    return Choice(options)


def _number(value: Any) -> int | float:
    """An operand of arithmetic or ordering: numbers only, as Terraform (a string of
    digits converts; a list or an object is an error, not Python's repetition)."""
    if isinstance(value, bool):
        raise TypeError("not a number")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and not isinstance(value, Json):
        return float(value) if "." in value else int(value)
    raise TypeError("not a number")


def why(value: Any) -> str:
    if isinstance(value, Unresolved):
        return value.reason
    if isinstance(value, Choice):
        return "depends on a condition"
    return ""


def as_text(value: Any) -> str | Unresolved:
    """A value as interpolation renders it."""
    if isinstance(value, Unresolved):
        return value
    if isinstance(value, Choice):
        return Unresolved(describe(value), "depends on a condition")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return Unresolved(describe(value), "a collection in a string")
