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

The answers are public, so they say only the verdict: which check failed (the writer
restarting or given up, a full disk) would tell whoever is attacking the node how far
they got. The server's log says it, once each time the verdict changes.
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
        """True if no check fails; logs which fail whenever that changes."""
        failing = ", ".join(f"{name}: {state}" for name, state in self.checks().items())
        if failing != self._failing:
            if failing:
                log.warning("readiness: not ready (%s)", failing)
            else:
                log.warning("readiness: ready again")
            self._failing = failing
        return not failing

    def checks(self) -> dict[str, str]:
        """Each failing check's state by name (empty: ready)."""
        node = self.node
        failing: dict[str, str] = {}
        audit = node.audit.writer_state
        if audit != "ok":
            failing["audit writer"] = audit
        space = disk_space(node.settings.data_dir)
        if space is None:
            failing["data dir"] = "unreadable"
        elif space.full:
            failing["data dir"] = f"full, {space.room()}"
        return failing
