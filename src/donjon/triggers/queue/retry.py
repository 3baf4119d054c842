"""What an attempt's outcome means for the next one: retry (when, and whether it counts),
or dead-letter.

Only what can succeed on retry is retried: the function failed or crashed (500, 502),
timed out (504), ran out of memory (507), or was refused by limits or capacity before it
ran (429, 503: throttled). A bad event never is: a body or schema refused (400, 413,
422), a caller no longer allowed (401, 403), a function that is not deployed (404).

A throttled attempt never ran, so it gives its attempt back (the OpenFaaS queue-worker
lets 429s use up its retries; this one does not); like every retry it ends at the
function's `max_age_s`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from donjon.triggers.queue.interface import QueuedInvocation, RetryPolicy

__all__ = ["MAX_BACKOFF_S", "Outcome", "backoff_s", "next_attempt", "retryable", "throttled"]

#: No wait between two attempts is longer than this (the policy's max_age_s still ends them).
MAX_BACKOFF_S = 900.0
#: Statuses a later attempt may not meet again.
_RETRYABLE = frozenset({408, 429, 500, 502, 503, 504, 507})
#: Refusals by limits or capacity: the function did not run.
_THROTTLED = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended (the gateway runs it: gateway/deliveries.py)."""

    ok: bool
    #: The call's request id (its `donjon logs` entry); None if none was made.
    request_id: str | None
    #: The function's result as JSON bytes (ok), else b"".
    result: bytes = b""
    #: The HTTP status the same failure answers a sync call with (200 when ok).
    status: int = 200
    error_type: str = ""
    error: str = ""
    #: Whether the function started (False: refused before it ran).
    ran: bool = True
    #: The refusal's own Retry-After, if it gave one.
    retry_after_s: float | None = None


def retryable(outcome: Outcome) -> bool:
    """Whether a later attempt may succeed where this one failed."""
    return not outcome.ok and outcome.status in _RETRYABLE


def throttled(outcome: Outcome) -> bool:
    """A refusal by limits or capacity before the function ran: the attempt is given back."""
    return not outcome.ok and not outcome.ran and outcome.status in _THROTTLED


def backoff_s(policy: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """The wait after attempt number `attempt` (1-based): backoff_s * 2**(attempt-1), with
    "equal jitter" (between half of it and all of it), at most MAX_BACKOFF_S."""
    base = min(MAX_BACKOFF_S, policy.backoff_s * 2.0 ** max(0, attempt - 1))
    return rng.uniform(base / 2, base)


def next_attempt(
    invocation: QueuedInvocation, outcome: Outcome, now: float, rng: random.Random
) -> float | None:
    """When the next attempt is due, or None: dead-letter it.

    `invocation.attempts` counts the attempt that just ended."""
    if not retryable(outcome):
        return None
    deadline = invocation.enqueued_at + invocation.retry.max_age_s
    if throttled(outcome):
        wait = outcome.retry_after_s or backoff_s(invocation.retry, 1, rng)
        at = now + max(0.5, min(wait, MAX_BACKOFF_S))
    elif invocation.attempts >= invocation.retry.attempts:
        return None
    else:
        at = now + backoff_s(invocation.retry, invocation.attempts, rng)
    return at if at <= deadline else None
