"""Is this node fit to serve? Liveness (`GET /healthz`) and readiness (`GET /readyz`).

A load balancer or Kubernetes asks these, without credentials, every few seconds:

- **Liveness** fails (503) only where the node cannot recover by itself: its audit
  writer died too often in a minute (audit/remote.py, `RESTARTS`), so every call that
  must be audited is refused until the node is restarted. A restart is the remedy, so
  a supervisor that restarts on a failed liveness probe does the right thing.
- **Readiness** fails (503) while the node cannot complete calls now but may recover
  without a restart, so the balancer sends calls to its peers meanwhile: its audit
  writer is not appending (restarting after a death, given up, or not running), or the
  data dir's filesystem is full (controls/space.py: calls and changes are refused with
  a 503 there until space is freed). Shared rate limits whose store (Redis) is down do
  not make a node unready: rates fall back to each node's own and calls under a quota
  are refused (ratelimit/failover.py), and every peer shares that store.

The node's database is a SQLite file in the data dir, read in WAL mode: no other
process can keep the node from reading it, and what fails it is its filesystem, which
the storage check reads. Each probe costs one `statvfs` and a few attribute reads, and
neither is shed at the node's in-flight bound (gateway/capacity.py): an overloaded node
is alive and ready, and says so.

The answers are public and say only the verdict, all a balancer needs; which check
failed is for the operator: the server's log says it, once each time the failing
checks change.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from donjon.controls.space import disk_space

if TYPE_CHECKING:
    from donjon.gateway.node import Node

__all__ = ["Readiness"]

log = logging.getLogger("donjon")


class Readiness:
    """The node's liveness and readiness, read afresh at each probe."""

    def __init__(self, node: Node) -> None:
        self.node = node
        #: The failing checks the last probe saw ("" while ready): logged when it changes.
        self._failing = ""

    def alive(self) -> bool:
        """False only if the node must be restarted to serve again."""
        return self.node.audit.writer_state != "failed"

    def ready(self) -> bool:
        """True if no check fails; logs which fail whenever that changes (the checks and
        their states, not the bytes free: those move with every block written)."""
        failing = self.checks()
        verdict = ", ".join(f"{name}: {state}" for name, state, _ in failing)
        if verdict != self._failing:
            if failing:
                said = ", ".join(f"{name}: {state}{more}" for name, state, more in failing)
                log.warning("readiness: not ready (%s)", said)
            else:
                log.warning("readiness: ready again")
            self._failing = verdict
        return not failing

    def checks(self) -> list[tuple[str, str, str]]:
        """Each failing check: its name, its state and what more the log may say (empty:
        ready)."""
        node = self.node
        failing: list[tuple[str, str, str]] = []
        audit = node.audit.writer_state
        if audit != "ok":
            failing.append(("audit writer", audit, ""))
        space = disk_space(node.settings.data_dir)
        if space is None:
            failing.append(("data dir", "unreadable", ""))
        elif space.full:
            failing.append(("data dir", "full", f", {space.room()}"))
        return failing
