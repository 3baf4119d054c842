"""What a call must pass before its request body is even read: the function's
quarantine (monitor/quarantine.py), the monitor's throttle on the function
(monitor/throttles.py), the rate buckets, the caller's own first and the function's
shared one last (gateway/rate_buckets.py; 429), the daily quotas (gateway/quota_check.py;
429: after the buckets, so a call a bucket refuses spends no quota), and the node's
capacity: a call that
could only queue past its bounds is shed with 503 (sandbox/backlog.py). Every way in
(invoke, http triggers, the Lambda API, schedules, `context.invoke`) goes through
`admit`. Concurrency slots are held around the call itself (gateway/slots.py).
A call admitted, then refused before it was run or queued (its queue was full: an async
call's; the large events' child busy making or checking its event: `busy_given_back`),
is given back what `admit` spent (`give_back`): a refused call costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TypeVar

from donjon.audit import AuditEvent
from donjon.errors import Error
from donjon.gateway.actors import actor_of
from donjon.gateway.large_events import LargeEventsBusy
from donjon.gateway.node import Node
from donjon.gateway.quota_check import check_counted, check_quota, give_back_quota
from donjon.gateway.rate_buckets import give_back_rate_buckets, take_rate_buckets
from donjon.identity import Principal
from donjon.lifecycle import Deployed
from donjon.sandbox import CallShed

__all__ = ["actor_of", "admit", "busy_given_back", "give_back"]

log = logging.getLogger("donjon")

T = TypeVar("T")


async def admit(
    node: Node,
    deployed: Deployed,
    principal: Principal | None,
    request_id: str,
    trigger: str,
    *,
    client: str | None = None,
    spend: bool = True,
    limits: tuple[int, float, int, int] | None = None,
) -> None:
    """The audit writer, the function's quarantine, rate limits and capacity, checked
    before its request body is even read (a quarantined function answers 503 to every way
    in: monitor/quarantine.py).
    `client` is the caller's address: an `auth: public` trigger's calls spend its bucket.
    Without `spend` (the first attempt of an async call whose request was admitted as it
    was queued) the rate buckets and quotas are not spent twice for one call; quarantine,
    the monitor's throttle, an invocations quota lowered below the day's usage since, and
    the node's capacity are checked as they are now.
    `limits`: the principal's `caller_limits`, if already resolved (gateway/call_plan.py)."""
    # No audit writer to record the call (restarting after a death, or given up): refused
    # (503) before anything is spent, queued or run (audit/remote.py, `require`).
    node.audit.require_writer()
    name = deployed.record.name  # (`Deployed.name` is a property)
    node.quarantines.check(name)
    if node.throttles.in_force:  # a function the monitor throttled (monitor/throttles.py)
        await node.throttles.check("function", name)
    if spend:
        await take_rate_buckets(node, deployed, principal, request_id, trigger, client, limits)
        if node.quotas.in_force:  # (`check_quota`'s first test: no coroutine while none is set)
            await check_quota(node, deployed, principal, request_id, trigger)
    else:  # counted as it was queued: refused if its quota was lowered below the usage since
        await check_counted(node, deployed, principal, request_id, trigger)
    # Shed the call now (503, Retry-After) if it could only queue past the bounds
    # (sandbox/backlog.py); audited per actor and window, not a record per call.
    if node.pool is not None:
        try:
            node.pool.check_capacity(deployed.config)
        except CallShed:
            await _shed(node, deployed, principal, request_id, trigger)
            raise


async def _shed(
    node: Node, deployed: Deployed, principal: Principal | None, request_id: str, trigger: str
) -> None:
    """Count and audit a call shed by `admit` (aggregated per actor and window)."""
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


async def give_back(
    node: Node,
    deployed: Deployed,
    principal: Principal | None,
    trigger: str,
    *,
    client: str | None = None,
) -> None:
    """Give back what `admit` (with `spend`) took for a call refused after it: a token of
    each rate bucket and the quotas' invocation, in every counter they were taken from
    (memory, or Redis shared by the nodes). A failure here is logged, never raised: the
    caller is answered the refusal, and a unit not given back is counted (over, never
    under)."""
    try:
        await give_back_rate_buckets(node, deployed, principal, trigger, client)
        await give_back_quota(node, deployed, principal)
    except Error as e:
        log.warning("what a refused call of %s spent was not all given back: %s", deployed.name, e)


async def busy_given_back(
    work: Awaitable[T],
    node: Node,
    deployed: Deployed,
    principal: Principal | None,
    trigger: str,
    *,
    client: str | None = None,
) -> T:
    """`work`: the large events' child checking or making the event of a call `admit`
    let through. Refused there (`LargeEventsBusy`, 503: another caller's large events hold
    the child's places; nothing run or queued), the call is given back what `admit` spent,
    as a call refused for a full queue is: its sender sends it again, and another tenant
    filling the child must not spend this one's rate and quota."""
    try:
        return await work
    except LargeEventsBusy:
        await give_back(node, deployed, principal, trigger, client=client)
        raise
