"""Daily quotas at admission (denial of wallet), and the compute charged after each call.

`check_quota` is one step of `admission.admit`: the quotas of the calling key
(`key:<id>`), of its role and, for a JWT principal, of each of its roles
(`role:<name>`), and of the function (`function:<name>`) are taken in one
all-or-nothing `take`: one invocation is counted for each, or none if any is
spent. A spent quota answers 429 with which quota, its usage and limit, and
when it resets (the next UTC midnight; Retry-After counts down to it). Refusals
are audited in aggregate (`quota.refused`, audit/denials.py), and the first
refusal of each subject's measure on a day gets one `quota.exhausted` record
(per node).

`reserve_compute` starts a call's run (invoke._run): it refuses a call whose compute
quotas do not cover the day's usage plus the timeouts of the calls running on this node,
and reserves the call's own timeout while it runs; at its end (success, failure, timeout,
disconnect) `charge_compute` adds its wall time to the same subjects and
`release_compute` gives the reservation back.
A node with no quota at all pays one truth test of an empty dict per call.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from dataclasses import dataclass
from typing import NoReturn

from donjon.audit import AuditEvent
from donjon.gateway.actors import actor_of
from donjon.gateway.node import Node
from donjon.identity import Principal
from donjon.lifecycle import Deployed
from donjon.ratelimit import QuotaDecision, QuotaLimit, RateLimitError
from donjon.ratelimit.memory_quota import utc_day

__all__ = [
    "QuotaExhausted",
    "QuotaHeld",
    "charge_compute",
    "check_counted",
    "check_quota",
    "give_back_quota",
    "next_reset",
    "release_compute",
    "reserve_compute",
    "settle_compute",
    "subjects_of",
]

log = logging.getLogger("donjon")


class QuotaExhausted(RateLimitError):
    """A daily quota is spent: no more calls (or compute) for that subject until UTC midnight."""

    title = "Quota exhausted"

    def __init__(self, decision: QuotaDecision, reset: dt.datetime, retry_after_s: float) -> None:
        super().__init__(_reason(decision, reset), retry_after_s=retry_after_s)
        self.hint = "retry after the reset, or ask an admin to raise it (donjon quota set)"
        self.decision = decision


class QuotaHeld(RateLimitError):
    """What is left of a compute quota is reserved by its subject's calls running now: the
    next may start once they end (`metered`). Not spent: no `quota.exhausted`."""

    title = "Quota held by running calls"

    def __init__(self, subject: str, spent: int, held: int, most: int, wait_s: float) -> None:
        super().__init__(
            f"the daily quota of {subject} has {max(0, most - spent) / 1000:g} of"
            f" {most / 1000:g} compute seconds left today (UTC), reserved by its calls"
            f" running now ({held / 1000:g} s, their timeouts): retry when they end",
            retry_after_s=max(1.0, math.ceil(wait_s)),
        )
        self.hint = "retry after the Retry-After seconds, or ask an admin to raise the quota"
        self.subject = subject


def _reason(decision: QuotaDecision, reset: dt.datetime) -> str:
    if decision.measure == "invocations":
        usage = f"{decision.used}/{decision.limit} invocations"
    else:
        usage = f"{decision.used / 1000:g}/{decision.limit / 1000:g} compute seconds"
    return (
        f"the daily quota of {decision.subject} is exhausted: {usage} today (UTC); "
        f"it resets at {reset.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    )


def next_reset(now: float | None = None) -> dt.datetime:
    """The next UTC midnight after `now` (when every day's usage starts again)."""
    at = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC)
    return dt.datetime.combine(at.date() + dt.timedelta(days=1), dt.time(), dt.UTC)


def subjects_of(principal: Principal | None, function: str) -> list[str]:
    """The subjects whose quotas a call of `function` by `principal` spends (a call a
    function makes for a request also spends its caller's: `Principal.charged_to`)."""
    subjects = [f"function:{function}"]
    if principal is not None:
        if principal.kind == "key":
            subjects.append(f"key:{principal.id}")
        subjects.append(f"role:{principal.role}")
        subjects.extend(f"role:{role}" for role in principal.more_roles)
        if principal.charged_to:
            subjects.extend(s for s in principal.charged_to if s not in subjects)
    return subjects


async def check_quota(
    node: Node, deployed: Deployed, principal: Principal | None, request_id: str, trigger: str
) -> None:
    """Count this call against its subjects' quotas, or refuse it (429) if one is spent."""
    if not node.quotas:
        return
    limits = node.quotas.limits_for(subjects_of(principal, deployed.name))
    if not limits:
        return
    now = time.time()
    day = utc_day(now)
    decision = await node.quota_counter.take(limits, day)
    if decision.allowed:
        return
    await _refuse(node, deployed, principal, request_id, trigger, decision, now)


async def give_back_quota(node: Node, deployed: Deployed, principal: Principal | None) -> None:
    """Uncount the invocation `check_quota` counted for a call refused after it (its
    queue was full): a refused call costs nothing."""
    if not node.quotas:
        return
    limits = node.quotas.limits_for(subjects_of(principal, deployed.name))
    if limits:
        await node.quota_counter.give_back([limit.subject for limit in limits], utc_day())


@dataclass(frozen=True, slots=True)
class Reservation:
    """What `reserve_compute` holds for a running call: its timeout (ms) on each subject."""

    subjects: tuple[str, ...]
    ms: int


async def reserve_compute(
    node: Node, deployed: Deployed, principal: Principal | None, request_id: str, trigger: str
) -> Reservation | None:
    """As a call starts (invoke._run, its slots held): refuse it (429) unless each compute
    quota of its subjects covers what they have used today plus the timeouts of their calls
    running on this node, then reserve its own timeout until `release_compute` (after its
    wall time is charged, `charge_compute`). None: no compute quota bounds it.

    Compute is charged when a call ends: checked at admission alone, calls sent at once
    (or queued, then run by the async workers) were all admitted at a usage of 0 and ran
    whole past the quota (hE-52). Now the most a quota is passed by is one call's timeout
    (per node, for subjects shared in Redis). An async invocation's first attempt, counted
    when it was queued, is checked here too. Plain calls, not a context manager: a call
    with no quota pays a truth test (invoke._run), not a generator's frames."""
    subjects = _compute_subjects(node, principal, deployed.name)
    if not subjects:
        return None
    reserve = round(deployed.manifest.timeout_s * 1000)
    in_flight = node.compute_in_flight
    now = time.time()
    used = await node.quota_counter.usage([limit.subject for limit in subjects], utc_day(now))
    # From here to the reservation nothing awaits (but a refusal): calls at once on this
    # node see each other's reservations.
    for limit in subjects:
        spent, held = used.get(limit.subject, (0, 0))[1], in_flight.get(limit.subject, 0)
        most = limit.max_compute_ms
        if most is not None and spent >= most:
            decision = QuotaDecision(False, limit.subject, "compute-seconds", spent, most)
            await _refuse(node, deployed, principal, request_id, trigger, decision, now)
        if most is not None and spent + held >= most:
            error = QuotaHeld(limit.subject, spent, held, most, deployed.manifest.timeout_s)
            await _audit_held(node, deployed, principal, request_id, trigger, error)
            raise error
    for limit in subjects:
        in_flight[limit.subject] = in_flight.get(limit.subject, 0) + reserve
    return Reservation(tuple(limit.subject for limit in subjects), reserve)


async def settle_compute(
    node: Node,
    deployed: Deployed,
    principal: Principal | None,
    elapsed_s: float,
    reservation: Reservation | None,
) -> None:
    """A call's end: its wall time charged (`charge_compute`), then its reservation given
    back (never a moment counted in neither)."""
    try:
        await charge_compute(node, deployed, principal, elapsed_s)
    finally:
        if reservation is not None:
            release_compute(node, reservation)


def release_compute(node: Node, reservation: Reservation) -> None:
    """Give back what `reserve_compute` held."""
    in_flight = node.compute_in_flight
    for subject in reservation.subjects:
        left = in_flight.get(subject, 0) - reservation.ms
        if left > 0:
            in_flight[subject] = left
        else:
            in_flight.pop(subject, None)


async def check_counted(
    node: Node, deployed: Deployed, principal: Principal | None, request_id: str, trigger: str
) -> None:
    """A call whose invocation was counted when it was queued (an async invocation's first
    attempt) is refused (429) if an invocations quota of its subjects is now below the
    day's usage (lowered by an admin to stop them: its queued calls all ran, hE-52). At
    the usage it is not: the last call queued may have taken the last unit."""
    if not node.quotas:
        return
    limits = node.quotas.limits_for(subjects_of(principal, deployed.name))
    limits = [limit for limit in limits if limit.max_invocations is not None]
    if not limits:
        return
    now = time.time()
    used = await node.quota_counter.usage([limit.subject for limit in limits], utc_day(now))
    for limit in limits:
        calls, most = used.get(limit.subject, (0, 0))[0], limit.max_invocations
        if most is not None and calls > most:
            decision = QuotaDecision(False, limit.subject, "invocations", calls, most)
            await _refuse(node, deployed, principal, request_id, trigger, decision, now)


def _compute_subjects(node: Node, principal: Principal | None, function: str) -> list[QuotaLimit]:
    """The quotas of the call's subjects that bound compute."""
    if not node.quotas:
        return []
    limits = node.quotas.limits_for(subjects_of(principal, function))
    return [limit for limit in limits if limit.max_compute_ms is not None]


async def _refuse(
    node: Node,
    deployed: Deployed,
    principal: Principal | None,
    request_id: str,
    trigger: str,
    decision: QuotaDecision,
    now: float,
) -> NoReturn:
    """Audit the refusal by `decision` and raise `QuotaExhausted` (429 until the reset)."""
    day = utc_day(now)
    reset = next_reset(now)
    retry_after_s = max(1.0, math.ceil(reset.timestamp() - now))
    if (
        principal is not None
        and principal.kind == "key"
        and decision.subject != f"function:{deployed.name}"
    ):
        # The key's own quota, or its role's: it is refused until the reset.
        node.limited.refused(principal.label, None, retry_after_s)
    await _audit_refusal(node, deployed, principal, request_id, trigger, decision, day, reset)
    raise QuotaExhausted(decision, reset, retry_after_s)


async def charge_compute(
    node: Node, deployed: Deployed, principal: Principal | None, elapsed_s: float
) -> None:
    """Add a finished call's wall time (ms) to the compute of its subjects that have a quota."""
    if not node.quotas:
        return
    limits = node.quotas.limits_for(subjects_of(principal, deployed.name))
    if not limits:
        return
    try:
        await node.quota_counter.add_compute(
            [limit.subject for limit in limits], utc_day(), max(1, round(elapsed_s * 1000))
        )
    except Exception:  # never in the way of the call's own record (a shared backend down)
        log.exception("charging %s's compute to its quotas failed", deployed.name)


async def _audit_held(
    node: Node,
    deployed: Deployed,
    principal: Principal | None,
    request_id: str,
    trigger: str,
    error: QuotaHeld,
) -> None:
    """A `QuotaHeld` refusal, aggregated as every quota refusal is (`quota.refused`)."""
    node.metrics.rate_limited.labels(deployed.name, "quota").inc()
    detail: dict[str, object] = {
        "request_id": request_id,
        "reason": f"{error.subject} compute-seconds held by running calls",
        "subject": error.subject,
        "measure": "compute-seconds",
        "trigger": trigger,
    }
    target = f"{deployed.name}@{deployed.record.version}"
    actor = actor_of(principal, trigger)
    await node.denials.deny(AuditEvent(actor, "quota.refused", target, "denied", detail), "-")


async def _audit_refusal(
    node: Node,
    deployed: Deployed,
    principal: Principal | None,
    request_id: str,
    trigger: str,
    decision: QuotaDecision,
    day: str,
    reset: dt.datetime,
) -> None:
    actor = actor_of(principal, trigger)
    target = f"{deployed.name}@{deployed.record.version}"
    detail: dict[str, object] = {
        "request_id": request_id,
        "reason": f"{decision.subject} {decision.measure}",
        "subject": decision.subject,
        "measure": decision.measure,
        "used": decision.used,
        "limit": decision.limit,
        "trigger": trigger,
    }
    node.metrics.rate_limited.labels(deployed.name, "quota").inc()
    if node.quotas.first_refusal(decision.subject, decision.measure, day):
        await node.audit.record(
            AuditEvent(
                actor,
                "quota.exhausted",
                decision.subject,
                "denied",
                {**detail, "function": target, "day": day, "resets_at": reset.isoformat()},
            )
        )
    await node.denials.deny(AuditEvent(actor, "quota.refused", target, "denied", detail), "-")
