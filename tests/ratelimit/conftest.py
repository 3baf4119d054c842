"""The limiter backends the contract tests run over (tests/ratelimit/test_contract.py).

Each role's list names its backends; a factory makes one inside the test's event
loop (a Redis client belongs to the loop it connects on).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest

from donjon.ratelimit import (
    ConcurrencyLimiter,
    MemoryConcurrencyLimiter,
    MemoryRateLimiter,
    QuotaCounter,
    RateLimiter,
)
from donjon.ratelimit.memory_quota import MemoryQuotaCounter
from donjon.ratelimit.redis import RedisLimiter
from redis_support import RedisServer, redis_server

__all__ = ["redis_server"]

RATE_BACKENDS = ["memory", "redis"]
SLOT_BACKENDS = ["memory", "redis"]
QUOTA_BACKENDS = ["memory", "redis"]

#: A backend role made inside the test's loop; closed by the test.
Factory = Callable[[], object]


@pytest.fixture(scope="session")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis for the contract tests (each test uses a prefix of its own)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _redis(request: pytest.FixtureRequest) -> Callable[[], RedisLimiter]:
    server: RedisServer = request.getfixturevalue("shared_redis")
    prefix = f"donjon-test-{secrets.token_hex(4)}:"
    # 30 s for a connection or a reply, not the node's 1 s: the contract tests assert no
    # timing, and a busy CI machine can stall one round trip past a second.
    return lambda: RedisLimiter(server.url, prefix=prefix, timeout_s=30.0)


@pytest.fixture(params=RATE_BACKENDS)
def make_rates(request: pytest.FixtureRequest) -> Callable[[], RateLimiter]:
    if request.param == "memory":
        return MemoryRateLimiter
    return _redis(request)


@pytest.fixture(params=SLOT_BACKENDS)
def make_slots(request: pytest.FixtureRequest) -> Callable[[], ConcurrencyLimiter]:
    if request.param == "memory":
        return MemoryConcurrencyLimiter
    return _redis(request)


@pytest.fixture(params=QUOTA_BACKENDS)
def make_quotas(request: pytest.FixtureRequest) -> Callable[[], QuotaCounter]:
    if request.param == "memory":
        return MemoryQuotaCounter  # counting only: its store is tested in test_memory_quota
    make = _redis(request)
    return lambda: make().quotas
