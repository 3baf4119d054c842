"""What a node's start appends to the audit log once it is ready to serve: the start
itself (with its resource control and budget), every unsafe flag it serves under, and
each stored function version it could not load. Through the writer process, like every
other append made on the event loop."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from donjon.audit import AuditEvent

if TYPE_CHECKING:
    from donjon.gateway.node import Node
    from donjon.sandbox.budget import Budget

__all__ = ["record_start"]

log = logging.getLogger("donjon")  # (the node's own lines)


async def record_start(node: Node, budget: Budget) -> None:
    audit = node.audit
    await audit.record(
        AuditEvent(
            "system",
            "node.start",
            "node",
            "ok",
            {
                "resource_control": node.resources.mode.value,
                "memory_budget_bytes": budget.memory_bytes,
                "pids_budget": budget.pids,
            },
        )
    )
    if node.controls_waived:
        log.warning(
            "UNSAFE: serving without required controls: %s", ", ".join(node.controls_waived)
        )
        await audit.record(
            AuditEvent(
                "system",
                "node.unsafe",
                "node",
                "warning",
                {"flag": "--unsafe-fewer-controls", "missing": list(node.controls_waived)},
            )
        )
    if node.plain_http:  # warned by the server as it binds
        await audit.record(
            AuditEvent("system", "node.unsafe", "node", "warning", {"flag": "--unsafe-http"})
        )
    for bad in node.skipped:
        await audit.record(
            AuditEvent(
                "system",
                "function.load",
                f"{bad.name}@{bad.version}",
                "skipped",
                {"reason": bad.reason, "error": bad.error},
            )
        )
