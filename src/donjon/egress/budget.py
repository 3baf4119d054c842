"""The egress connections open on this node, bounded in all and per function.

Each connection a sandbox opens to its proxy socket holds one of the node's open
files, and once dialled a second one upstream; the caps per call
(DONJON_EGRESS_MAX_CONNECTIONS) bound one call, not the calls one function runs at
once. Without a bound over them, one function's calls holding their tunnels open took
every open file the node had: the other functions' calls, its sandboxes' starts and
its own listener failed with EMFILE. The budget is taken when a connection is accepted
(before it names its call) and given back when it closes.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, field

from donjon.config import EgressSettings

__all__ = ["ConnectionBudget", "budget_for"]

#: Files each open egress connection may hold: its socket from the sandbox, the upstream's.
FILES_PER_CONNECTION = 2


@dataclass
class ConnectionBudget:
    """Open egress connections: at most `total` on the node, `per_function` of one function."""

    total: int
    per_function: int
    open: int = 0
    by_function: dict[str, int] = field(default_factory=dict)

    def take(self, function: str) -> str | None:
        """Count a connection of `function`; the reason it is refused instead, or None."""
        held = self.by_function.get(function, 0)
        if held >= self.per_function:
            return (
                f"the function's egress connections open on this node ({self.per_function})"
                " are all in use"
            )
        if self.open >= self.total:
            return f"the node's egress connections ({self.total}) are all in use"
        self.by_function[function] = held + 1
        self.open += 1
        return None

    def give(self, function: str) -> None:
        """A connection `take` counted has closed."""
        held = self.by_function.get(function, 0)
        if held <= 1:
            self.by_function.pop(function, None)
        else:
            self.by_function[function] = held - 1
        self.open = max(0, self.open - 1)


def budget_for(settings: EgressSettings) -> ConnectionBudget:
    """The node's budget: as set (DONJON_EGRESS_NODE_CONNECTIONS and
    DONJON_EGRESS_FUNCTION_CONNECTIONS), else a quarter of the process's open files (the
    gateway's own connections may take half: gateway/connections.py) and half of that
    for one function."""
    total = settings.max_connections_node or _default_total()
    per_function = settings.max_connections_per_function or max(1, total // 2)
    return ConnectionBudget(total, min(per_function, total))


def _default_total() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, soft // 4 // FILES_PER_CONNECTION)
