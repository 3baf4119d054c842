"""LimitedCallers: which keys are held over a limit of their own, for how long, and which
refusals of the rate buckets and quotas record them."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest

from donjon.gateway.limited_callers import HOLD_S, MAX_HOLD_S, MAX_KEPT, LimitedCallers
from donjon.gateway.quota_check import QuotaExhausted, check_quota
from donjon.gateway.rate_buckets import RateLimited, take_rate_buckets
from donjon.manifest.model import Rate
from donjon.ratelimit import MemoryRateLimiter
from donjon.ratelimit.memory_quota import MemoryQuotaCounter
from donjon.ratelimit.quota_book import QuotaBook
from donjon.store.quotas import QuotaRecord
from monitor_support import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


def test_a_keys_own_limit_covers_every_function_its_share_only_that_one(clock: FakeClock) -> None:
    """Refused by its own rate: held for every function; by its share of f's: for f
    alone; another key is not; nothing is before any refusal; a label holding a space
    is its own key, not a pair."""
    limited = LimitedCallers(clock)
    assert not limited.limited("key:a", "f")
    limited.refused("key:a", None, 5)
    limited.refused("key:b", "f", 5)
    limited.refused("key:c f", None, 5)
    assert limited.limited("key:a", "f") and limited.limited("key:a", "g")
    assert limited.limited("key:b", "f") and not limited.limited("key:b", "g")
    assert not limited.limited("key:c", "f") and not limited.limited("key:d", "f")


def test_a_refusal_is_held_past_its_retry_after_and_at_most_max_hold(clock: FakeClock) -> None:
    """Held HOLD_S past its Retry-After (the refills in between would let only its burst
    through), never past MAX_HOLD_S (a quota until midnight, raised meanwhile), and
    renewed by each refusal."""
    limited = LimitedCallers(clock)
    limited.refused("key:a", None, 5)
    limited.refused("key:q", None, 8 * 3600)
    clock.now += 5 + HOLD_S - 0.5
    assert limited.limited("key:a", "f")
    clock.now += 1
    assert not limited.limited("key:a", "f")
    assert limited.limited("key:q", "f")  # MAX_HOLD_S is longer than that
    clock.now = 1000.0 + MAX_HOLD_S + 1
    assert not limited.limited("key:q", "f")
    limited.refused("key:q", None, 8 * 3600)  # refused again: held again
    assert limited.limited("key:q", "f")


def test_at_most_max_kept_the_least_lately_refused_goes_first(clock: FakeClock) -> None:
    """Past MAX_KEPT keys, the one refused least lately is forgotten (it counts again
    until its next refusal), the newest are kept, and the count stays bounded."""
    limited = LimitedCallers(clock)
    for i in range(MAX_KEPT + 10):
        limited.refused(f"key:{i}", None, 60)
    assert not limited.limited("key:0", "f")
    assert limited.limited(f"key:{MAX_KEPT + 9}", "f")
    assert len(limited._until) == MAX_KEPT
    limited.refused("key:10", None, 60)  # refused again: now the latest
    for i in range(MAX_KEPT + 10, MAX_KEPT + 20):
        limited.refused(f"key:{i}", None, 60)
    assert limited.limited("key:10", "f") and not limited.limited("key:11", "f")
    assert len(limited._until) == MAX_KEPT


class _Denials:
    async def deny(self, event: Any, client: str, scope: str = "") -> None:
        pass


def _bucket_refusal(
    labels: list[str], caller: tuple[int, float, int], rate: Rate | None
) -> tuple[LimitedCallers, list[str]]:
    """One call of function f by each of `labels` in turn (each one's own limits
    `caller`: count, period, burst; f's rate `rate`) through the real buckets: the
    record, and each call's refusing policy ("" if none)."""
    limited = LimitedCallers()
    node = SimpleNamespace(
        limiter=MemoryRateLimiter(),
        limited=limited,
        metrics=SimpleNamespace(throttled=lambda name: None),
        denials=_Denials(),
        settings=SimpleNamespace(limits=SimpleNamespace(principal_share=0.5)),
    )
    deployed = SimpleNamespace(
        name="f",
        rate=rate,
        manifest=SimpleNamespace(limits=SimpleNamespace(burst=None)),
        record=SimpleNamespace(name="f", version=1),
    )

    async def run() -> list[str]:
        policies = []
        for label in labels:
            try:
                await take_rate_buckets(
                    cast(Any, node),
                    cast(Any, deployed),
                    cast(Any, SimpleNamespace(label=label)),
                    "rid",
                    "invoke",
                    None,
                    (*caller, 0),
                )
            except RateLimited as e:  # the policy its RateLimit field names
                policies.append(e.headers["ratelimit"].split('"')[1])
            else:
                policies.append("")
        return policies

    return limited, asyncio.run(run())


def test_a_keys_own_bucket_records_it_and_the_functions_shared_one_does_not() -> None:
    """A key over its own rate: recorded for every function. Over its share of f's rate:
    for f alone. f's shared bucket emptied by others while the key's own have room: not
    recorded, as every caller of f gets that 429. A JWT caller over its own rate: not
    recorded (the early shed verifies keys only)."""
    own, policies = _bucket_refusal(["key:a"] * 2, (1, 60.0, 1), None)
    assert policies == ["", "principal"]
    assert own.limited("key:a", "f") and own.limited("key:a", "g")
    share, policies = _bucket_refusal(["key:b"] * 3, (100, 1.0, 100), Rate(count=2, period_s=60))
    assert policies == ["", "", "principal-function"]
    assert share.limited("key:b", "f") and not share.limited("key:b", "g")
    labels = ["key:x", "key:x", "key:c", "key:c"]
    shared, policies = _bucket_refusal(labels, (100, 1.0, 100), Rate(count=3, period_s=60))
    assert policies == ["", "", "", "function"]
    assert shared._until == {}
    jwt, policies = _bucket_refusal(["jwt:iss:alice"] * 2, (1, 60.0, 1), None)
    assert policies == ["", "principal"] and jwt._until == {}


def _quota_refusal(subject: str) -> tuple[LimitedCallers, int]:
    """Two calls of function f by key k under a quota of one call a day on `subject`
    (the real quota book and counter): the record, and how many calls were refused."""
    limited = LimitedCallers()

    async def audited(*_: Any, **__: Any) -> None:
        pass

    node = SimpleNamespace(
        quotas=QuotaBook(),
        quota_counter=MemoryQuotaCounter(),
        limited=limited,
        metrics=SimpleNamespace(
            rate_limited=SimpleNamespace(labels=lambda *_: SimpleNamespace(inc=lambda: None))
        ),
        audit=SimpleNamespace(record=audited),
        denials=SimpleNamespace(deny=audited),
    )
    deployed = SimpleNamespace(name="f", record=SimpleNamespace(version=1))
    principal = SimpleNamespace(
        kind="key", id="k", label="key:k", role="invoker", more_roles=(), charged_to=()
    )

    async def run() -> int:
        await node.quotas.put(QuotaRecord(subject, 1, None, 0.0, "admin"))
        refused = 0
        for _ in range(2):
            try:
                await check_quota(
                    cast(Any, node), cast(Any, deployed), cast(Any, principal), "rid", "invoke"
                )
            except QuotaExhausted:
                refused += 1
        return refused

    return limited, asyncio.run(run())


def test_a_keys_own_quota_records_it_and_the_functions_does_not() -> None:
    """Over its key's quota, or its role's: recorded for every function. Over f's own
    quota, which every caller of f meets: not recorded."""
    for subject in ("key:k", "role:invoker"):
        own, refused = _quota_refusal(subject)
        assert refused == 1
        assert own.limited("key:k", "f") and own.limited("key:k", "g")
    function, refused = _quota_refusal("function:f")
    assert refused == 1 and function._until == {}
