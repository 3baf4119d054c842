"""The cells of bench_invoke.py's tables: a row, and how each kind of figure is printed."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MIB", "Row", "_mib", "_ms", "_rate", "_ratio", "_verdict", "_x", "rate_info"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class Row:
    metric: str
    donjon: str
    baseline: str
    ratio: str
    target: str
    verdict: str


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else math.nan


def _x(r: float) -> str:
    return "-" if math.isnan(r) else f"{r:.2f}x"


def _rate(v: float) -> str:
    return f"{v:,.0f}/s"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _mib(b: float) -> str:
    return f"{b / MIB:.1f} MiB"


def _verdict(ok: bool | None) -> str:
    return "info" if ok is None else ("PASS" if ok else "FAIL")


def rate_info(label: str, rate: float, base: float) -> Row:
    """A row of two rates and their ratio, with no target (an "info" row)."""
    return Row(label, _rate(rate), _rate(base), _x(_ratio(rate, base)), "-", "info")
