"""What every connection of one sandbox is checked against, and how a refusal is told.

`SessionContext` carries the function's grants, the node's egress settings, the
resolver and the audit sinks; `refused` is where every refusal is audited and
where the function's `egress_attempts` policy is applied (once per call).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from donjon.audit.log import AuditEvent, AuditLog
from donjon.egress.calls import Call
from donjon.egress.grants import Allowlist
from donjon.egress.records import Decision, EgressRecords
from donjon.egress.resolve import Resolver

if TYPE_CHECKING:  # config.py imports egress/ (its settings' parsers): no cycle at run time
    from donjon.config import EgressSettings

__all__ = ["Refused", "SessionContext"]

log = logging.getLogger("donjon.egress")


class Refused(Exception):
    """The connection is refused (or failed); answered with `status` unless tunnelled."""

    def __init__(
        self, reason: str, status: int = 403, decision: str = "denied", destination: str = ""
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.decision = decision
        self.destination = destination


@dataclass(frozen=True)
class SessionContext:
    """What every connection of one sandbox is checked against."""

    settings: EgressSettings
    allowlist: Allowlist
    resolver: Resolver
    records: EgressRecords
    audit: AuditLog
    #: The function's runtime policy for a refused attempt: "alert" or "block".
    egress_attempts: str

    def decision(
        self,
        call: Call,
        destination: str,
        decision: str,
        reason: str,
        address: str = "",
        grant: str = "",
    ) -> Decision:
        return Decision(
            call.function,
            call.version,
            call.request_id,
            destination,
            decision,
            reason,
            address,
            grant,
        )

    async def refused(self, call: Call, decision: Decision) -> None:
        """Audit a refusal, and apply the egress_attempts policy (once per call)."""
        await self.records.note(call.id, decision)
        if decision.decision != "denied" or call.policy_noted or call.ended:
            return
        call.policy_noted = True
        block = self.egress_attempts == "block"
        await self.audit.record(
            AuditEvent(
                f"function:{call.function}",
                "policy.block" if block else "policy.alert",
                f"{call.function}@{call.version}",
                "blocked" if block else "alert",
                {
                    "policy": "egress_attempts",
                    "mode": self.egress_attempts,
                    "function": call.function,
                    "version": call.version,
                    "request_id": call.request_id,
                    "destination": decision.destination,
                    "reason": decision.reason,
                    # What the other runtime policies' records call what was seen.
                    "seen": f"egress to {decision.destination or '?'} refused: {decision.reason}",
                },
            )
        )
        if block and call.on_refused is not None:
            try:
                call.on_refused(f"egress refused: {decision.destination}: {decision.reason}")
            except Exception:  # the instance's callback must not take the proxy down
                log.exception("ending a call after a refused egress attempt failed")
