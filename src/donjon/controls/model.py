"""A control, and the errors of a node that lacks one it must have."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from donjon.errors import Error

__all__ = ["ALWAYS_REQUIRED", "CONTROL_NAMES", "Control", "ControlsMissing", "UnknownControl"]

#: Every control `donjon doctor` lists, in its order (names are stable: scripts,
#: DONJON_REQUIRE_CONTROLS and the recorded baseline use them).
CONTROL_NAMES = (
    "bubblewrap",
    "namespace.user",
    "namespace.pid",
    "namespace.net",
    "namespace.ipc",
    "namespace.uts",
    "namespace.cgroup",
    "namespace.mount",
    "seccomp",
    "no-new-privs",
    "sandbox-user",
    "landlock",
    "cgroup",
    "cgroup.memory",
    "cgroup.pids",
    "cgroup.cpu",
    "cgroup.per-call",
    "budget.memory",
    "budget.pids",
    "oom-protection",
    "rlimits",
    "egress-proxy",
    "data-dir",
)

#: Donjon never runs a function without these, whatever is configured.
ALWAYS_REQUIRED = frozenset(
    {
        "bubblewrap",
        "namespace.user",
        "namespace.pid",
        "namespace.net",
        "namespace.ipc",
        "namespace.uts",
        "namespace.cgroup",
        "namespace.mount",
        "seccomp",
        "no-new-privs",
        "sandbox-user",
        "rlimits",
    }
)


@dataclass(frozen=True)
class Control:
    """One control: in force or not, what it is here, and how to get it when missing."""

    name: str
    present: bool
    detail: str
    fix: str = ""
    #: Filled in by `required_missing`'s caller: must this node have it?
    required: bool = False

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "present": self.present,
            "required": self.required,
            "detail": self.detail,
            "fix": self.fix,
        }


class UnknownControl(Error):
    """DONJON_REQUIRE_CONTROLS names a control Donjon does not know."""

    title = "Unknown control"

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__(
            "DONJON_REQUIRE_CONTROLS names unknown control(s): " + ", ".join(names),
            hint="use the names `donjon doctor` lists: " + ", ".join(CONTROL_NAMES),
        )


class ControlsMissing(Error):
    """The node would serve with fewer controls than configured."""

    title = "Controls missing"

    def __init__(self, missing: Sequence[Control]) -> None:
        lines = [f"{c.name}: {c.detail}" + (f" (fix: {c.fix})" if c.fix else "") for c in missing]
        super().__init__(
            f"{len(missing)} required control(s) missing; refusing to serve:\n  "
            + "\n  ".join(lines),
            hint="fix each (donjon doctor lists them); to serve anyway, knowingly: "
            "donjon serve --unsafe-fewer-controls",
        )
        self.missing = tuple(missing)
