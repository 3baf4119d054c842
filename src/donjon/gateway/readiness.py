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
  are refused (ratelimit/failover.py), and every peer shares that store; the answer
  says "degraded".

The node's database is a SQLite file in the data dir, read in WAL mode: no other
process can keep the node from reading it, and what fails it is its filesystem, which
the storage check reads. Each probe costs one `statvfs` and a few attribute reads, so
a flood of probes is no heavier than a flood of any public request.

The answers are public, so they name each check and its state, never a path, a host
or an error: those are in the server log, written when the condition began.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from donjon.controls.space import disk_space

if TYPE_CHECKING:
    from donjon.gateway.node import Node

__all__ = ["Readiness"]


class Readiness:
    """The node's liveness and readiness, read afresh at each probe."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def alive(self) -> bool:
        """False only if the node must be restarted to serve again."""
        return self.node.audit.writer_state != "failed"

    def checks(self) -> tuple[bool, dict[str, str]]:
        """(ready, each check's state by name)."""
        node = self.node
        audit = node.audit.writer_state
        space = disk_space(node.settings.data_dir)
        storage = "unreadable" if space is None else "full" if space.full else "ok"
        shared = node.shared_limits
        limits = "local" if shared is None else "ok" if shared.health.up else "degraded"
        return audit == "ok" and storage == "ok", {
            "audit": audit,
            "storage": storage,
            "limits": limits,
        }
