"""The controls in force on this node: what `donjon doctor` lists and `donjon serve` requires.

`survey` looks at the host (a real sandbox probe included) and returns every
control, present or missing with its fix; `required_missing` compares them with
what this node must have: the controls Donjon never runs without, those
`DONJON_REQUIRE_CONTROLS` names, and the baseline recorded the first time the
node served (baseline.py), so a host that lost one since refuses to serve.
"""

from __future__ import annotations

from donjon.controls.baseline import (
    enforce,
    load_baseline,
    record_baseline,
    required_missing,
    with_required,
)
from donjon.controls.model import ALWAYS_REQUIRED, Control, ControlsMissing, UnknownControl
from donjon.controls.survey import survey

__all__ = [
    "ALWAYS_REQUIRED",
    "Control",
    "ControlsMissing",
    "UnknownControl",
    "enforce",
    "load_baseline",
    "record_baseline",
    "required_missing",
    "survey",
    "with_required",
]
