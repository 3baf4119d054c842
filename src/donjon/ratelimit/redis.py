"""Limits shared by several nodes, in Redis: buckets, slots and quotas over one server.

`RedisLimiter` plays the three roles of `ratelimit.interface`. Each operation is
one Lua script (redis_scripts.py) registered once and run with EVALSHA
(redis-py's script object loads it again on NOSCRIPT, e.g. after a restart of
the server); the server runs it alone, with its own clock, so nodes never race
and never disagree about time. Every key starts with the prefix (`donjon:`)
and has a TTL: a bucket lives until it would be full again, a slot set as long
as its longest lease, a day's quota usage until two days after that day.

Whatever goes wrong with the server (refused, timed out, an answer of the
wrong shape) is raised as `LimiterUnavailable`; what the callers do then
(memory buckets for rates and slots, refusal for quotas) is ratelimit/failover.py's.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any, NoReturn

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from donjon.ratelimit import redis_scripts as lua
from donjon.ratelimit.interface import (
    BucketKey,
    ConcurrencyLimiter,
    Decision,
    LimiterUnavailable,
    RateLimiter,
    Slot,
)
from donjon.ratelimit.redis_quota import RedisQuotaCounter

__all__ = ["PREFIX", "RedisLimiter", "RedisUnavailable"]

#: Every key this backend writes starts with this.
PREFIX = "donjon:"
#: Seconds to connect to, and to hear back from, the server: past them the call is
#: answered by the fallback (rates, slots) or refused (quotas).
TIMEOUT_S = 1.0
#: Connections one node opens at most (a flood waits for one, up to TIMEOUT_S).
MAX_CONNECTIONS = 64
#: The bounded wait of `acquire` polls, its pause doubling from the first to the last.
POLL_FIRST_S = 0.005
POLL_MAX_S = 0.1


log = logging.getLogger("donjon")


class RedisUnavailable(LimiterUnavailable):
    """Redis did not answer, or answered wrongly: 503, come back in a few seconds."""

    retry_after_s = 5.0


class RedisLimiter(RateLimiter, ConcurrencyLimiter):
    """Token buckets, leased slots and (`quotas`) daily quotas in one Redis server.

    The interface's `RateLimiter.take` and `QuotaCounter.take` share a name, so one
    class cannot be both: the quota role is `self.quotas`, over the same connections.
    """

    def __init__(
        self,
        url: str,
        *,
        shown_url: str = "",
        prefix: str = PREFIX,
        timeout_s: float = TIMEOUT_S,
        max_connections: int = MAX_CONNECTIONS,
        max_waiters: int = 64,
        max_waiting: int = 512,
    ) -> None:
        #: The URL as logs and errors show it (its password masked).
        self.shown_url = shown_url or "redis"
        self._prefix = prefix
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            # Once more on a dropped connection (a server restarted since it was pooled),
            # never after a timeout: the server may have run the script and only its reply
            # be late, and a quota take or a slot's acquire sent again runs twice.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._client = aioredis.Redis.from_pool(pool)  # closes the pool with it
        self._rate = self.script(lua.RATE_TAKE)
        self._rate_back = self.script(lua.RATE_GIVE_BACK)
        self._acquire = self.script(lua.ACQUIRE)
        self._held = self.script(lua.HELD)
        #: The third role, over the same connections (its `take` is not the buckets').
        self.quotas = RedisQuotaCounter(self)
        #: Slots being given back after an acquire that failed (`_give_back_later`).
        self._giving_back: set[asyncio.Task[None]] = set()
        #: Calls of this node polling for a full key, per key and in all (bounded as the
        #: memory slots' waiters are: DONJON_MAX_QUEUED_PER_FUNCTION, DONJON_MAX_QUEUED).
        self._max_waiters = max(0, max_waiters)
        self._max_waiting = max(0, max_waiting)
        self._waiters: dict[BucketKey, int] = {}
        #: Calls of this node waiting for a slot now, over every key.
        self.waiting = 0

    # -- plumbing -------------------------------------------------------------------

    def fail(self, error: BaseException) -> NoReturn:
        """Raise `error` (from the client, or a reply of the wrong shape) as `RedisUnavailable`."""
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise RedisUnavailable(
            f"the shared limits store ({self.shown_url}) cannot be used: {reason}",
            hint="check DONJON_REDIS_URL and that Redis answers (`donjon doctor`); "
            "until it does, quotas refuse calls and each node limits rates alone",
        ) from error

    def key(self, *parts: str) -> str:
        """A key of this backend: the prefix, then the parts."""
        return self._prefix + ":".join(parts)

    def script(self, source: str) -> Any:
        """A Lua script, registered once: run with EVALSHA, loaded again on NOSCRIPT."""
        return self._client.register_script(source)

    async def run(self, script: Any, keys: Sequence[str], args: Sequence[object]) -> Any:
        """Run `script` on the server; any failure is `RedisUnavailable`."""
        try:
            return await script(keys=list(keys), args=list(args))
        except (RedisError, OSError) as e:  # OSError: TimeoutError too
            self.fail(e)

    async def ping(self) -> None:
        """Ask the server once; `LimiterUnavailable` if it does not answer."""
        try:
            await self._client.ping()
        except (RedisError, OSError) as e:  # OSError: TimeoutError too
            self.fail(e)

    @property
    def authenticates(self) -> bool:
        """Whether the client sends a password (the URL's, as the client read it)."""
        return bool(self._client.connection_pool.connection_kwargs.get("password"))

    async def info(self, section: str) -> dict[str, Any]:
        """A section of the server's INFO; `LimiterUnavailable` if it does not answer."""
        try:
            return dict(await self._client.info(section))
        except (RedisError, OSError) as e:  # OSError: TimeoutError too
            self.fail(e)

    async def setting(self, name: str) -> str | None:
        """A CONFIG GET value; None if the server refuses CONFIG (managed ones often do)."""
        try:
            found: dict[Any, Any] = dict(await self._client.config_get(name))
        except (RedisError, OSError):
            return None
        value = found.get(name, found.get(name.encode()))
        return value.decode() if isinstance(value, bytes) else value

    async def close(self) -> None:
        await asyncio.gather(*self._giving_back, return_exceptions=True)
        await self._client.aclose()

    # -- rate -----------------------------------------------------------------------

    async def take(
        self, key: BucketKey, count: int, period_s: float, burst: int | None = None
    ) -> Decision:
        if count < 1 or period_s <= 0 or (burst is not None and burst < 1):
            raise ValueError(f"a bucket of {count}/{period_s}s with burst {burst} allows nothing")
        rate = count / period_s
        capacity = burst if burst is not None else count
        reply = await self.run(self._rate, [self.key("rate", str(key))], [repr(rate), capacity])
        try:
            allowed, retry, remaining, reset = reply
            return Decision(bool(int(allowed)), float(retry), int(remaining), float(reset))
        except (TypeError, ValueError) as e:
            self.fail(e)

    async def give_back(
        self, key: BucketKey, count: int, period_s: float, burst: int | None = None
    ) -> None:
        capacity = burst if burst is not None else count
        args = [repr(count / period_s), capacity]
        await self.run(self._rate_back, [self.key("rate", str(key))], args)

    # -- concurrency ----------------------------------------------------------------

    async def acquire(
        self, key: BucketKey, cap: int, *, wait_s: float, lease_s: float
    ) -> Slot | None:
        if cap < 1 or lease_s <= 0:
            return None
        name = self.key("slots", str(key))
        token = secrets.token_hex(16)
        lease_ms = max(1, round(lease_s * 1000))
        deadline = time.monotonic() + max(0.0, wait_s)
        if await self._try_acquire(name, cap, lease_ms, token):
            return Slot(key, token)
        waiters = self._waiters.get(key, 0)
        if wait_s <= 0 or waiters >= self._max_waiters or self.waiting >= self._max_waiting:
            return None  # full, and as many calls wait as may: refused at once
        self._waiters[key] = waiters + 1
        self.waiting += 1
        try:
            pause = POLL_FIRST_S
            while (left := deadline - time.monotonic()) > 0:
                await asyncio.sleep(min(pause, left))
                pause = min(pause * 2, POLL_MAX_S)
                if await self._try_acquire(name, cap, lease_ms, token):
                    return Slot(key, token)
            return None
        finally:
            self.waiting -= 1
            if self._waiters[key] <= 1:
                del self._waiters[key]
            else:
                self._waiters[key] -= 1

    async def _try_acquire(self, name: str, cap: int, lease_ms: int, token: str) -> bool:
        """One attempt: whether `token` now holds one of the `cap` slots of set `name`."""
        try:
            reply = await self.run(self._acquire, [name], [cap, lease_ms, token])
        except BaseException:
            # The server may have run the script, taking a slot whose reply never came
            # here (late past the timeout, or the call cancelled: its client left):
            # given back now rather than held, unknown to the node, until its lease
            # ends. The token is this call's alone: removing one never added does nothing.
            self._give_back_later(name, token)
            raise
        try:
            return int(reply[0]) == 1
        except (TypeError, ValueError, IndexError) as e:
            self.fail(e)

    def _give_back_later(self, name: str, token: str) -> None:
        """Remove `token` from the slot set `name`, on a task of its own (`close` waits)."""
        task = asyncio.get_running_loop().create_task(self._give_back(name, token))
        self._giving_back.add(task)
        task.add_done_callback(self._giving_back.discard)

    async def _give_back(self, name: str, token: str) -> None:
        try:
            await self._client.zrem(name, token)
        except (RedisError, OSError) as e:  # OSError: TimeoutError too
            log.warning("a slot whose acquire failed is held until its lease ends: %s", e)

    async def release(self, slot: Slot) -> None:
        # One command: atomic by itself (no decision to make); a freed slot is a no-op.
        try:
            await self._client.zrem(self.key("slots", str(slot.key)), slot.token)
        except (RedisError, OSError) as e:  # OSError: TimeoutError too
            self.fail(e)

    async def held(self, key: BucketKey) -> int:
        reply = await self.run(self._held, [self.key("slots", str(key))], [])
        try:
            return int(reply)
        except (TypeError, ValueError) as e:
            self.fail(e)
