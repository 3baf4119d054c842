"""Each principal's own bucket for the admin API: every route under /v1/ but the invokes.

The admin routes list, read and change what the store holds; some read much (a scoped
auditor's `GET /v1/audit` and timeline filter the log for it). Without a bound one key
could keep the node's threads and its store busy for everyone. Each authenticated
principal spends one token of its admin bucket per request, before it is authorized and
before any work (DONJON_ADMIN_RATE_PER_PRINCIPAL, DONJON_ADMIN_BURST_PER_PRINCIPAL: one
setting for every principal, apart from the rate its key or role sets for calls). The
bucket lives where the call buckets do (node_limits.py: memory, or Redis shared by every
node). Past it the request is a `RateLimited` (429, Retry-After, the RateLimit fields
naming the `admin` bucket), counted in `donjon_rate_limited{limit="admin"}` and audited
through the denial log as `admin.throttle`: one record per caller and window.
"""

from __future__ import annotations

from starlette.requests import Request

from donjon.gateway.access import deny
from donjon.gateway.node import Node
from donjon.gateway.rate_buckets import RateLimited
from donjon.identity import Principal
from donjon.ratelimit import BucketKey

__all__ = ["ADMIN_SCOPE", "take_admin_token"]

#: The bucket's scope: apart from the principal's call bucket of the same name.
ADMIN_SCOPE = "admin"


async def take_admin_token(
    node: Node, request: Request, principal: Principal, request_id: str
) -> None:
    """Spend one of `principal`'s admin tokens; `RateLimited` (audited) if none is left."""
    limits = node.settings.limits
    count, period_s = limits.admin_rate_per_principal
    label = principal.label
    decision = await node.limiter.take(
        BucketKey(principal=label, scope=ADMIN_SCOPE),
        count,
        period_s,
        limits.admin_burst_per_principal,
    )
    if decision.allowed:
        return
    node.metrics.admin_throttled()
    await deny(
        node,
        request,
        label,
        "admin.throttle",
        "admin rate limit",
        request_id,
        {"bucket": ADMIN_SCOPE, "limit": f"{count}/{period_s:g}s"},
    )
    raise RateLimited(
        f"over your rate limit for the admin API ({count} per {period_s:g}s)",
        retry_after_s=decision.retry_after_s,
        policy=ADMIN_SCOPE,
        count=count,
        period_s=period_s,
    )
