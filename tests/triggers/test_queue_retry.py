"""Which failures are retried, when, and when retrying ends."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from donjon.triggers.queue import Outcome, QueuedInvocation, RetryPolicy
from donjon.triggers.queue.retry import MAX_BACKOFF_S, backoff_s, next_attempt, retryable
from queue_support import queued

NOW = 1_000_000.0


def _rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - seeded for a repeatable test, not a secret


def _invocation(attempts: int, policy: RetryPolicy, age_s: float = 0.0) -> QueuedInvocation:
    return replace(queued(attempts=attempts, retry=policy, at=NOW), enqueued_at=NOW - age_s)


def _failed(status: int, *, ran: bool = True, retry_after: float | None = None) -> Outcome:
    return Outcome(False, "r", status=status, error_type="E", ran=ran, retry_after_s=retry_after)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 507, 429])
def test_what_may_succeed_later_is_retried(status: int) -> None:
    """A crash, an error, a timeout, memory, limits and capacity are retried."""
    assert retryable(_failed(status))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_a_bad_event_is_never_retried(status: int) -> None:
    """A refused body or schema, a caller no longer allowed, an unknown function: dead at once."""
    assert not retryable(_failed(status))
    policy = RetryPolicy(attempts=5)
    assert next_attempt(_invocation(1, policy), _failed(status), NOW, _rng(1)) is None


def test_success_is_not_retried() -> None:
    """An attempt that succeeded is not retried."""
    assert not retryable(Outcome(True, "r", result=b"1"))


@pytest.mark.parametrize("attempt", range(1, 12))
def test_backoff_grows_exponentially_within_its_jitter(attempt: int) -> None:
    """The n-th wait lies between half and all of backoff_s * 2**(n-1), capped."""
    policy = RetryPolicy(attempts=20, backoff_s=2.0)
    rng = _rng(attempt)
    base = min(MAX_BACKOFF_S, 2.0 * 2 ** (attempt - 1))
    waits = [backoff_s(policy, attempt, rng) for _ in range(200)]
    assert all(base / 2 <= w <= base for w in waits)
    assert max(waits) - min(waits) > base / 4  # jittered, not one fixed value


def test_retries_end_after_the_last_attempt() -> None:
    """Once its attempts are used up a failing invocation is dead (no next attempt)."""
    policy = RetryPolicy(attempts=3, backoff_s=1.0)
    rng = _rng(0)
    assert next_attempt(_invocation(1, policy), _failed(500), NOW, rng) is not None
    assert next_attempt(_invocation(2, policy), _failed(500), NOW, rng) is not None
    assert next_attempt(_invocation(3, policy), _failed(500), NOW, rng) is None


def test_next_attempt_is_due_after_its_backoff() -> None:
    """The retry after attempt n is due within that attempt's backoff bounds."""
    policy = RetryPolicy(attempts=5, backoff_s=4.0)
    at = next_attempt(_invocation(2, policy), _failed(504), NOW, _rng(3))
    assert at is not None
    assert NOW + 4.0 <= at <= NOW + 8.0


def test_max_age_ends_retrying() -> None:
    """A retry that would run past max_age_s is not made: the invocation is dead."""
    policy = RetryPolicy(attempts=10, backoff_s=60.0, max_age_s=100)
    assert next_attempt(_invocation(1, policy, age_s=90), _failed(500), NOW, _rng(0)) is None


def test_throttled_attempt_does_not_use_up_retries() -> None:
    """A 429 before the function ran is retried even after the last counted attempt."""
    policy = RetryPolicy(attempts=1, backoff_s=1.0)
    throttled = _failed(429, ran=False, retry_after=5.0)
    at = next_attempt(_invocation(1, policy), throttled, NOW, _rng(0))
    assert at == NOW + 5.0
    ran = _failed(429, ran=True)
    assert next_attempt(_invocation(1, policy), ran, NOW, _rng(0)) is None


def test_throttled_attempt_still_ends_at_max_age() -> None:
    """Throttling never keeps an event past its max_age_s."""
    policy = RetryPolicy(attempts=1, backoff_s=1.0, max_age_s=60)
    throttled = _failed(503, ran=False, retry_after=30.0)
    assert next_attempt(_invocation(1, policy, age_s=50), throttled, NOW, _rng(0)) is None
