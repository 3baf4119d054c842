"""What a call must pass before its request body is even read: the function's
quarantine (monitor/quarantine.py), the monitor's throttle on the function
(monitor/throttles.py) and the function's own rate limit. Every way in (invoke,
http triggers, the Lambda API, schedules, `context.invoke`) goes through `admit`.
"""

from __future__ import annotations

from donjon.audit import AuditEvent
from donjon.gateway.node import Node
from donjon.identity import Principal
from donjon.lifecycle import Deployed
from donjon.ratelimit import BucketKey, RateLimitError

__all__ = ["actor_of", "admit"]


def actor_of(principal: Principal | None, trigger: str) -> str:
    """Who a call's records name: its principal, else `schedule` or `public`."""
    return principal.label if principal else ("schedule" if trigger == "schedule" else "public")


async def admit(
    node: Node, deployed: Deployed, principal: Principal | None, request_id: str, trigger: str
) -> None:
    """The function's quarantine and rate limit, checked before its request body is even
    read (a quarantined function answers 503 to every way in: monitor/quarantine.py)."""
    node.quarantines.check(deployed.name)
    if node.throttles:  # a function the monitor throttled (monitor/throttles.py)
        await node.throttles.check("function", deployed.name)
    rate = deployed.rate
    if rate is None:
        return
    decision = await node.limiter.take(BucketKey(function=deployed.name), rate.count, rate.period_s)
    if not decision.allowed:
        node.metrics.throttled(deployed.name)
        await node.audit.record(
            AuditEvent(
                actor_of(principal, trigger),
                "function.throttle",
                f"{deployed.name}@{deployed.record.version}",
                "denied",
                {"request_id": request_id, "limit": deployed.manifest.limits.rate},
            )
        )
        raise RateLimitError(
            f"{deployed.name} is over its rate limit ({deployed.manifest.limits.rate})",
            retry_after_s=decision.retry_after_s,
        )
