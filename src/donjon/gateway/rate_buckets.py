"""The rate buckets a call spends (issue 15), the caller's own before the shared one.

For a call of function f by principal p (an API key, a JWT, a calling function):

1. p's own bucket: its key's `rate`/`burst`, else its role's, else the server's
   default (DONJON_RATE_PER_PRINCIPAL, DONJON_BURST_PER_PRINCIPAL);
2. p x f, when f has a rate: f's burst, refilled at DONJON_PRINCIPAL_SHARE (half)
   of f's rate, so one caller alone cannot keep f's whole rate from everyone else;
3. for an `auth: public` trigger (no principal): the client address's bucket
   (DONJON_RATE_PER_CLIENT, DONJON_BURST_PER_CLIENT);
4. f's shared bucket (`limits.rate`, `limits.burst`).

A refusal stops there: a flood refused by its own buckets never spends the
shared tokens others need. It is a `RateLimited` (429) carrying Retry-After and
the RateLimit / RateLimit-Policy fields of draft-ietf-httpapi-ratelimit-headers
(naming the bucket kind, never another principal's id), and is audited through
the denial log: one record per caller, function and window, with a count.
"""

from __future__ import annotations

import functools
import math

from donjon.audit import AuditEvent
from donjon.client_network import client_network
from donjon.gateway.actors import actor_of
from donjon.gateway.node import Node
from donjon.identity import Principal
from donjon.lifecycle import Deployed
from donjon.ratelimit import BucketKey, MemoryRateLimiter, RateLimitError
from donjon.ratelimit.rates import CallerLimits, parse_rate

__all__ = [
    "RateLimited",
    "caller_limits",
    "concurrency_key",
    "give_back_rate_buckets",
    "take_rate_buckets",
]


class RateLimited(RateLimitError):
    """A call over one of its rate buckets (429, Retry-After, RateLimit fields)."""

    def __init__(
        self, message: str, *, retry_after_s: float, policy: str, count: int, period_s: float
    ) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        wait = max(1, math.ceil(retry_after_s))
        #: What the 429 carries besides Retry-After (problems.py adds `headers`).
        self.headers = {
            "ratelimit-policy": f'"{policy}";q={count};w={max(1, round(period_s))}',
            "ratelimit": f'"{policy}";r=0;t={wait}',
        }


@functools.lru_cache(maxsize=1024)
def _parsed(rate: str) -> tuple[int, float]:
    return parse_rate(rate)


#: Bucket keys by caller (and function), made once: a key is a frozen dataclass whose
#: construction would cost more than the take itself. Bounded: cleared when full.
_KEYS: dict[str | tuple[str, str], BucketKey] = {}
_MAX_KEYS = 65_536


def _key_of(principal: str) -> BucketKey:
    key = _KEYS.get(principal)
    if key is None:
        if len(_KEYS) >= _MAX_KEYS:
            _KEYS.clear()
        key = _KEYS[principal] = BucketKey(principal=principal)
    return key


def _cached(kind: str, name: str) -> BucketKey:
    """The function's, a client's or a caller's concurrency key, by `kind`."""
    pair = (kind, name)
    key = _KEYS.get(pair)
    if key is None:
        if len(_KEYS) >= _MAX_KEYS:
            _KEYS.clear()
        if kind == "\0function":
            key = BucketKey(function=name)
        elif kind == "\0client":
            key = BucketKey(client=client_network(name))
        else:
            key = BucketKey(principal=name, scope="concurrency")
        _KEYS[pair] = key
    return key


def function_key(name: str) -> BucketKey:
    return _cached("\0function", name)


def client_key(address: str) -> BucketKey:
    """A public caller's bucket: its address (IPv4), its /64 (IPv6: one host has a whole
    /64, and a new address per call was a new bucket per call), as the connect gate counts."""
    return _cached("\0client", address)


def concurrency_key(principal: str) -> BucketKey:
    # (made once: found without `_cached`'s call)
    return _KEYS.get(("\0concurrency", principal)) or _cached("\0concurrency", principal)


def _pair_key(principal: str, function: str) -> BucketKey:
    pair = (principal, function)
    key = _KEYS.get(pair)
    if key is None:
        if len(_KEYS) >= _MAX_KEYS:
            _KEYS.clear()
        key = _KEYS[pair] = BucketKey(principal=principal, function=function)
    return key


def caller_limits(node: Node, principal: Principal) -> tuple[int, float, int, int]:
    """The principal's (count, period_s, burst, concurrency). The rate and its burst come
    as a pair from the first that sets a rate: the key, else the first of its roles, else
    the server (a burst set alone applies to the rate found); a burst left unset is the
    rate's count. Concurrency: the key's, else the first role's that sets it, else the
    server's. Memory lookups only."""
    own = principal.limits
    rate, burst, concurrency = own.rate, own.burst, own.concurrency
    policy = node.policy
    if (rate is None or concurrency is None) and policy.sets_limits:
        for role in (principal.role, *principal.more_roles):
            set_by_role: CallerLimits = policy.limits_of(role)
            if rate is None and set_by_role.rate is not None:
                rate = set_by_role.rate
                burst = burst if burst is not None else set_by_role.burst
            if concurrency is None:
                concurrency = set_by_role.concurrency
    defaults = node.settings.limits
    if rate is None:
        count, period_s = defaults.rate_per_principal
        burst = burst if burst is not None else defaults.burst_per_principal
    else:
        count, period_s = _parsed(rate)
    return (
        count,
        period_s,
        burst if burst is not None else count,
        concurrency if concurrency is not None else defaults.concurrency_per_principal,
    )


async def take_rate_buckets(
    node: Node,
    deployed: Deployed,
    principal: Principal | None,
    request_id: str,
    trigger: str,
    client: str | None,
    resolved: tuple[int, float, int, int] | None = None,
) -> None:
    """Spend one token of each of the call's buckets, in order; `RateLimited` at the first
    that is empty (the ones after it are not touched). `resolved`: the principal's
    `caller_limits`, if already resolved (gateway/call_plan.py)."""
    limiter = node.limiter
    # The node's own buckets answer at once: asked without a coroutine per bucket (exactly
    # the memory class; anything else, a shared backend or a wrapper, is awaited).
    local = limiter if type(limiter) is MemoryRateLimiter else None
    name = deployed.record.name  # (`Deployed.name` is a property)
    rate = deployed.rate
    if principal is not None:
        count, period_s, burst, _ = resolved or caller_limits(node, principal)
        label = principal.label
        key = _KEYS.get(label) or _key_of(label)  # (made once: its lookup without a call)
        decision = (
            local.take_now(key, count, period_s, burst)
            if local is not None
            else await limiter.take(key, count, period_s, burst)
        )
        if not decision.allowed:
            await _refuse(
                node,
                deployed,
                label,
                "principal",
                count,
                period_s,
                decision.retry_after_s,
                request_id,
                trigger,
                client,
            )
        if rate is not None:
            f_burst = deployed.manifest.limits.burst or rate.count
            share = node.settings.limits.principal_share
            # The whole burst, a share of the refill: a caller alone gets a burst's worth at
            # once, then at most `share` of the function's sustained rate.
            decision = (
                local.take_now(_pair_key(label, name), rate.count, rate.period_s / share, f_burst)
                if local is not None
                else await limiter.take(
                    _pair_key(label, name), rate.count, rate.period_s / share, f_burst
                )
            )
            if not decision.allowed:
                await _refuse(
                    node,
                    deployed,
                    label,
                    "principal-function",
                    rate.count,
                    rate.period_s / share,
                    decision.retry_after_s,
                    request_id,
                    trigger,
                    client,
                )
    elif client is not None and trigger == "http":
        limits = node.settings.limits
        count, period_s = limits.rate_per_client
        burst = limits.burst_per_client or count
        decision = (
            local.take_now(client_key(client), count, period_s, burst)
            if local is not None
            else await limiter.take(client_key(client), count, period_s, burst)
        )
        if not decision.allowed:
            await _refuse(
                node,
                deployed,
                "public",
                "client",
                count,
                period_s,
                decision.retry_after_s,
                request_id,
                trigger,
                client,
            )
    if rate is not None:
        decision = (
            local.take_now(
                function_key(name), rate.count, rate.period_s, deployed.manifest.limits.burst
            )
            if local is not None
            else await limiter.take(
                function_key(name),
                rate.count,
                rate.period_s,
                deployed.manifest.limits.burst,
            )
        )
        if not decision.allowed:
            await _refuse(
                node,
                deployed,
                actor_of(principal, trigger),
                "function",
                rate.count,
                rate.period_s,
                decision.retry_after_s,
                request_id,
                trigger,
                client,
            )


async def give_back_rate_buckets(
    node: Node,
    deployed: Deployed,
    principal: Principal | None,
    trigger: str,
    client: str | None,
) -> None:
    """Return the token `take_rate_buckets` spent in each bucket of a call it let through
    and that was refused after (its queue was full): a refused call costs nothing."""
    limiter = node.limiter
    name = deployed.name
    rate = deployed.rate
    if rate is not None:
        burst = deployed.manifest.limits.burst
        await limiter.give_back(function_key(name), rate.count, rate.period_s, burst)
    if principal is not None:
        count, period_s, burst, _ = caller_limits(node, principal)
        label = principal.label
        if rate is not None:
            share = node.settings.limits.principal_share
            await limiter.give_back(
                _pair_key(label, name),
                rate.count,
                rate.period_s / share,
                deployed.manifest.limits.burst or rate.count,
            )
        await limiter.give_back(_key_of(label), count, period_s, burst)
    elif client is not None and trigger == "http":
        limits = node.settings.limits
        count, period_s = limits.rate_per_client
        await limiter.give_back(
            client_key(client), count, period_s, limits.burst_per_client or count
        )


async def _refuse(
    node: Node,
    deployed: Deployed,
    actor: str,
    policy: str,
    count: int,
    period_s: float,
    retry_after_s: float,
    request_id: str,
    trigger: str,
    client: str | None,
) -> None:
    """Count and audit the refusal (aggregated per caller, function and window), then raise."""
    node.metrics.throttled(deployed.name)
    name = deployed.name
    if actor.startswith("key:"):  # an API key's own bucket (limited_callers.py)
        if policy == "principal":
            node.limited.refused(actor, None, retry_after_s)
        elif policy == "principal-function":
            node.limited.refused(actor, name, retry_after_s)
    await node.denials.deny(
        AuditEvent(
            actor,
            "function.throttle",
            f"{name}@{deployed.record.version}",
            "denied",
            {
                "request_id": request_id,
                "reason": f"{policy} rate limit",
                "bucket": policy,
                "limit": f"{count}/{period_s:g}s",
                "trigger": trigger,
                **({"client": client} if client is not None else {}),
            },
        ),
        client if policy == "client" and client is not None else "-",
        scope=name,
    )
    whose = {
        "principal": "your rate limit",
        "principal-function": f"your share of {name}'s rate limit",
        "client": "this address's rate limit",
        "function": f"{name}'s rate limit",
    }[policy]
    raise RateLimited(
        f"over {whose} ({count} per {period_s:g}s)",
        retry_after_s=retry_after_s,
        policy=policy,
        count=count,
        period_s=period_s,
    )
