"""What a call must pass before its request body is even read: the function's
quarantine (monitor/quarantine.py), the monitor's throttle on the function
(monitor/throttles.py), the function's own rate limit (429) and the node's capacity:
a call that could only queue past its bounds is shed with 503 (sandbox/backlog.py).
Every way in (invoke,
http triggers, the Lambda API, schedules, `context.invoke`) goes through `admit`.
"""

from __future__ import annotations

from donjon.audit import AuditEvent
from donjon.gateway.node import Node
from donjon.gateway.quota_check import check_quota
from donjon.identity import Principal
from donjon.lifecycle import Deployed
from donjon.ratelimit import BucketKey, RateLimitError
from donjon.sandbox import CallShed

__all__ = ["actor_of", "admit"]


def actor_of(principal: Principal | None, trigger: str) -> str:
    """Who a call's records name: its principal, else `schedule` or `public`."""
    return principal.label if principal else ("schedule" if trigger == "schedule" else "public")


async def admit(
    node: Node, deployed: Deployed, principal: Principal | None, request_id: str, trigger: str
) -> None:
    """The function's quarantine, rate limit and capacity, checked before its request body
    is even read (a quarantined function answers 503 to every way in: monitor/quarantine.py)."""
    node.quarantines.check(deployed.name)
    if node.throttles:  # a function the monitor throttled (monitor/throttles.py)
        await node.throttles.check("function", deployed.name)
    await check_quota(node, deployed, principal, request_id, trigger)
    rate = deployed.rate
    if rate is not None:
        await _take_rate(node, deployed, principal, request_id, trigger, rate.count, rate.period_s)
    await _check_capacity(node, deployed, principal, request_id, trigger)


async def _check_capacity(
    node: Node, deployed: Deployed, principal: Principal | None, request_id: str, trigger: str
) -> None:
    """Shed the call now (503, Retry-After) if it could only queue past the bounds
    (sandbox/backlog.py); audited per actor and window, not a record per call."""
    if node.pool is None:
        return
    try:
        node.pool.check_capacity(deployed.config)
    except CallShed:
        node.metrics.shed(deployed.name)
        await node.denials.deny(
            AuditEvent(
                actor_of(principal, trigger),
                "function.shed",
                f"{deployed.name}@{deployed.record.version}",
                "denied",
                {"request_id": request_id, "reason": "overload", "trigger": trigger},
            ),
            "-",
        )
        raise


async def _take_rate(
    node: Node,
    deployed: Deployed,
    principal: Principal | None,
    request_id: str,
    trigger: str,
    count: int,
    period_s: float,
) -> None:
    decision = await node.limiter.take(BucketKey(function=deployed.name), count, period_s)
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
