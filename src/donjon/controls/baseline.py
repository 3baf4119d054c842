"""The controls a node must keep: its baseline, recorded the first time it serves.

``DATA_DIR/controls.json`` holds the names of the controls that were in force
the first time `donjon serve` ran on this data dir (or when `donjon doctor
--record-baseline` last said so). A later start that finds one of them missing
(a kernel upgrade without Landlock, cgroups no longer writable, the data dir
opened to others) refuses to serve, as it does without one of the controls
Donjon never runs without, or one `DONJON_REQUIRE_CONTROLS` names.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from donjon.config import Settings
from donjon.controls.model import (
    ALWAYS_REQUIRED,
    CONTROL_NAMES,
    Control,
    ControlsMissing,
    UnknownControl,
)
from donjon.errors import Error

__all__ = [
    "baseline_path",
    "enforce",
    "load_baseline",
    "record_baseline",
    "required_missing",
    "with_required",
]

log = logging.getLogger("donjon")

_FILE = "controls.json"


def baseline_path(data_dir: Path) -> Path:
    return data_dir / _FILE


def load_baseline(data_dir: Path) -> frozenset[str] | None:
    """The recorded baseline; None when none was recorded yet."""
    path = baseline_path(data_dir)
    try:
        data = json.loads(path.read_text())
        names = data["controls"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise TypeError("controls is not a list of names")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Error(
            f"{path} is not a controls baseline ({e})",
            hint="restore it, or record this host's: donjon doctor --record-baseline",
        ) from e
    return frozenset(n for n in names if n in CONTROL_NAMES)


def record_baseline(data_dir: Path, controls: Iterable[Control]) -> frozenset[str]:
    """Record the controls present now as the node's baseline (0600, replaced atomically)."""
    names = sorted(c.name for c in controls if c.present)
    path = baseline_path(data_dir)
    tmp = path.with_name(f".{_FILE}.{os.getpid()}")
    tmp.unlink(missing_ok=True)  # a leftover (or a planted link) is removed, never followed
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"recorded_at": int(time.time()), "controls": names}, f)
    os.replace(tmp, path)
    return frozenset(names)


def _check_names(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in CONTROL_NAMES]
    if unknown:
        raise UnknownControl(unknown)


def with_required(
    controls: Sequence[Control], baseline: frozenset[str] | None, require: Sequence[str]
) -> list[Control]:
    """`controls`, each marked required when Donjon always needs it, DONJON_REQUIRE_CONTROLS
    names it, or the baseline has it."""
    _check_names(require)
    needed = ALWAYS_REQUIRED | set(require) | (baseline or frozenset())
    return [replace(c, required=c.name in needed) for c in controls]


def required_missing(
    controls: Sequence[Control], baseline: frozenset[str] | None, require: Sequence[str]
) -> list[Control]:
    """The required controls that are not in force."""
    return [c for c in with_required(controls, baseline, require) if c.required and not c.present]


def enforce(settings: Settings, *, unsafe_fewer_controls: bool = False) -> tuple[str, ...]:
    """Refuse (`ControlsMissing`) to serve with a required control missing; record the
    baseline the first time. With `unsafe_fewer_controls`, warn and return the missing
    names instead (the node audits them at start)."""
    from donjon.controls.survey import survey

    controls = survey(settings)
    baseline = load_baseline(settings.data_dir)
    if baseline is None:
        baseline = record_baseline(settings.data_dir, controls)
        log.info("recorded this node's controls baseline (%d controls)", len(baseline))
    missing = required_missing(controls, baseline, settings.require_controls)
    if not missing:
        return ()
    if not unsafe_fewer_controls:
        raise ControlsMissing(missing)
    names = tuple(c.name for c in missing)
    log.warning(
        "UNSAFE: serving with required controls missing (--unsafe-fewer-controls): %s",
        ", ".join(names),
    )
    return names
