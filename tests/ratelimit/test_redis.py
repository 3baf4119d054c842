"""The Redis backend against a real redis-server: atomicity across clients, TTLs, scripts.

Two `RedisLimiter`s, each with its own connections, stand for two nodes.
They wait up to `PATIENCE_S` for a pooled connection, not the node's 1 s: these tests
prove atomicity, and a busy CI machine (another test worker beside them) once took
over 1 s to hand 150 concurrent takes their connections.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable

import pytest

from donjon.config import load_settings
from donjon.ratelimit import BucketKey, LimiterUnavailable, QuotaDecision, QuotaLimit, Slot
from donjon.ratelimit.backends import open_shared
from donjon.ratelimit.redis import RedisLimiter
from redis_support import RedisServer

K = BucketKey(principal="p", function="f")
#: Today (UTC): a day's Redis keys expire two days after it ends (redis_quota.py), so a
#: fixed date stopped being countable once that passed (these tests failed from
#: 2026-12-05 00:00 UTC on).
DAY = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
#: How long a take here may wait for a connection or a reply (no timing is asserted).
PATIENCE_S = 30.0


def with_two(
    server: RedisServer, body: Callable[[RedisLimiter, RedisLimiter], Awaitable[None]]
) -> None:
    """Run `body` with two limiters (two nodes) over `server`, closed after."""

    async def main() -> None:
        a = RedisLimiter(server.url, timeout_s=PATIENCE_S)
        b = RedisLimiter(server.url, timeout_s=PATIENCE_S)
        try:
            await body(a, b)
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_concurrent_takes_from_two_nodes_never_exceed_the_bucket(
    redis_server: RedisServer,
) -> None:
    """300 takes at once from two clients on a bucket of 50/hour: exactly 50 pass."""

    async def body(a: RedisLimiter, b: RedisLimiter) -> None:
        takes = [(a if i % 2 else b).take(K, 50, 3600) for i in range(300)]
        decisions = await asyncio.gather(*takes)
        assert sum(d.allowed for d in decisions) == 50

    with_two(redis_server, body)


def test_concurrent_acquires_from_two_nodes_never_exceed_the_cap(
    redis_server: RedisServer,
) -> None:
    """100 acquires at once from two clients with cap 7: exactly 7 slots, 7 held."""

    async def body(a: RedisLimiter, b: RedisLimiter) -> None:
        tries = [(a if i % 2 else b).acquire(K, 7, wait_s=0, lease_s=60) for i in range(100)]
        got = [s for s in await asyncio.gather(*tries) if s is not None]
        assert len(got) == 7
        assert len({s.token for s in got}) == 7
        assert await a.held(K) == 7

    with_two(redis_server, body)


def test_concurrent_quota_takes_from_two_nodes_never_over_count(
    redis_server: RedisServer,
) -> None:
    """200 takes at once from two clients against 30 invocations a day: 30 pass, 30 counted."""
    limits = [QuotaLimit("key:k1", max_invocations=30), QuotaLimit("function:f")]

    async def body(a: RedisLimiter, b: RedisLimiter) -> None:
        takes = [(a if i % 2 else b).quotas.take(limits, DAY) for i in range(200)]
        decisions = await asyncio.gather(*takes)
        assert sum(d.allowed for d in decisions) == 30
        assert await a.quotas.usage(["key:k1", "function:f"], DAY) == {
            "key:k1": (30, 0),
            "function:f": (30, 0),
        }

    with_two(redis_server, body)


def test_a_decision_says_what_is_left_and_when_the_bucket_is_full(
    redis_server: RedisServer,
) -> None:
    """The RateLimit fields: remaining whole tokens, and seconds until the bucket is full."""

    async def body(a: RedisLimiter, b: RedisLimiter) -> None:
        first = await a.take(K, 10, 60)
        assert (first.allowed, first.remaining) == (True, 9)
        assert 0 < first.reset_s <= 6.0
        second = await b.take(K, 10, 60)
        assert second.remaining == 8

    with_two(redis_server, body)


def test_every_key_is_prefixed_and_expires(redis_server: RedisServer) -> None:
    """Buckets, slot sets and quota hashes all start with donjon: and carry a TTL."""

    async def body(a: RedisLimiter, b: RedisLimiter) -> None:
        await a.take(K, 5, 60)
        await a.acquire(K, 2, wait_s=0, lease_s=30)
        await a.quotas.take([QuotaLimit("key:k1", max_invocations=3)], DAY)
        await a.quotas.add_compute(["role:r"], DAY, 10)

    with_two(redis_server, body)
    with redis_server.client() as c:
        keys = [k.decode() for k in c.keys("*")]
        assert len(keys) == 4
        for key in keys:
            assert key.startswith("donjon:"), key
            assert int(c.pttl(key)) > 0, f"{key} never expires"
        names = sorted(keys)
        assert names[0].startswith(f"donjon:quota:{{{DAY}}}:")
        assert any(k.startswith('donjon:rate:["p","f",null]') for k in keys)
        assert any(k.startswith('donjon:slots:["p","f",null]') for k in keys)


def test_a_node_whose_clock_is_days_behind_still_counts_its_quota(
    redis_server: RedisServer,
) -> None:
    """A node whose clock is four days behind counts under a day whose keys' expiry (two
    days after it) is past by the server's clock: its quota still holds (3 calls of a
    2-invocation quota: the third refused) and the key still expires. Before, EXPIREAT in
    the past deleted each count as it was made: that node's quotas never filled."""
    behind = (dt.datetime.now(dt.UTC) - dt.timedelta(days=4)).strftime("%Y-%m-%d")
    limit = [QuotaLimit("key:skewed", max_invocations=2)]

    async def body(a: RedisLimiter, b: RedisLimiter) -> None:
        answers = [(await a.quotas.take(limit, behind)).allowed for _ in range(3)]
        assert answers == [True, True, False]
        await a.quotas.add_compute(["key:skewed"], behind, 5)
        assert await b.quotas.usage(["key:skewed"], behind) == {"key:skewed": (2, 5)}

    with_two(redis_server, body)
    with redis_server.client() as c:
        assert int(c.pttl(f"donjon:quota:{{{behind}}}:key:skewed")) > 0


def test_a_flushed_script_cache_is_loaded_again(redis_server: RedisServer) -> None:
    """SCRIPT FLUSH (as after a server restart) between calls: the next call still works."""

    async def body(a: RedisLimiter, b: RedisLimiter) -> None:
        assert (await a.take(K, 2, 60)).allowed
        with redis_server.client() as c:
            c.script_flush()
        assert (await a.take(K, 2, 60)).allowed
        assert not (await a.take(K, 2, 60)).allowed

    with_two(redis_server, body)


def test_a_wrong_answer_is_unavailable_not_a_crash(redis_server: RedisServer) -> None:
    """A key of the wrong type (someone else's data) makes the store answer an error:
    LimiterUnavailable, with the masked URL, never a raw client exception."""
    with redis_server.client() as c:
        c.set('donjon:rate:["p","f",null]', "not a bucket")

    async def body(a: RedisLimiter, b: RedisLimiter) -> None:
        with pytest.raises(LimiterUnavailable, match="WRONGTYPE"):
            await a.take(K, 2, 60)

    with_two(redis_server, body)


def test_an_unreachable_server_is_unavailable(redis_server: RedisServer) -> None:
    """Nothing listening: every role raises LimiterUnavailable naming the store, at once."""
    redis_server.kill()

    async def main() -> None:
        limiter = RedisLimiter(redis_server.url, shown_url="redis://***@127.0.0.1")
        try:
            with pytest.raises(LimiterUnavailable, match=r"redis://\*\*\*@127\.0\.0\.1"):
                await limiter.take(K, 2, 60)
            with pytest.raises(LimiterUnavailable):
                await limiter.acquire(K, 1, wait_s=0, lease_s=5)
            with pytest.raises(LimiterUnavailable):
                await limiter.release(Slot(K, "t"))
            with pytest.raises(LimiterUnavailable):
                await limiter.quotas.take([QuotaLimit("key:k", max_invocations=1)], DAY)
            with pytest.raises(LimiterUnavailable):
                await limiter.quotas.usage(["key:k"], DAY)
        finally:
            await limiter.close()

    asyncio.run(main())


class StallingProxy:
    """A TCP proxy on loopback in front of the real server. Once `stall` is set, the
    server's replies on the connections open then are held back forever (the commands
    still reach the server and run): a Redis whose answer comes too late. Connections
    opened after are served as usual."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.stalled = False
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        held = not self.stalled  # open before the stall: its replies are held once it starts
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        await asyncio.gather(
            self._pipe(client_r, server_w, hold=False), self._pipe(server_r, client_w, hold=held)
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, hold: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if hold and self.stalled:
                    continue  # the reply never comes
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


def test_a_reply_that_comes_too_late_is_not_run_again(redis_server: RedisServer) -> None:
    """The server ran a quota take and a slot's acquire but their replies never came (a
    slow server, a stalled network): the node gives up on each, and never sends it again.
    Sent again, each ran twice: two invocations counted for one call, two slots held. The
    slot the late acquire took is given back (it was held, unknown to the node, until its
    lease ended)."""

    async def main() -> None:
        proxy = StallingProxy(redis_server.port)
        await proxy.start()
        limiter = RedisLimiter(f"redis://127.0.0.1:{proxy.port}/0")
        limit = [QuotaLimit("key:late", max_invocations=100)]
        try:
            # The scripts are loaded, and two pooled connections open, before the stall.
            warm = limiter.quotas.take([QuotaLimit("key:warm")], DAY)
            await asyncio.gather(warm, limiter.acquire(K, 8, wait_s=0, lease_s=60))
            proxy.stalled = True
            late = limiter.quotas.take(limit, DAY), limiter.acquire(K, 8, wait_s=0, lease_s=60)
            for outcome in await asyncio.gather(*late, return_exceptions=True):
                # No answer: LimiterUnavailable (what the node does then is failover.py's).
                assert outcome is None or isinstance(
                    outcome, (LimiterUnavailable, QuotaDecision, Slot)
                )
        finally:
            await limiter.close()
            await proxy.close()
        with redis_server.client() as c:
            assert int(c.hget(f"donjon:quota:{{{DAY}}}:key:late", "inv") or 0) == 1
            assert c.zcard('donjon:slots:["p","f",null]') == 1  # the warm one only

    asyncio.run(main())


def test_an_acquire_cancelled_before_its_reply_holds_no_slot(redis_server: RedisServer) -> None:
    """The call waiting for a slot's reply is cancelled (its client left) after the server
    took the slot: the slot is given back, not held until its lease ends (a client that
    leaves again and again held the function's slots)."""

    async def main() -> None:
        proxy = StallingProxy(redis_server.port)
        await proxy.start()
        limiter = RedisLimiter(f"redis://127.0.0.1:{proxy.port}/0", timeout_s=30)
        try:
            await limiter.acquire(K, 8, wait_s=0, lease_s=60)  # the script loaded, pooled
            proxy.stalled = True
            waiting = asyncio.create_task(limiter.acquire(K, 8, wait_s=0, lease_s=600))
            with redis_server.client() as c:
                for _ in range(200):  # until the server has run it
                    if c.zcard('donjon:slots:["p","f",null]') == 2:
                        break
                    await asyncio.sleep(0.01)
                assert c.zcard('donjon:slots:["p","f",null]') == 2
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        finally:
            await limiter.close()
            await proxy.close()
        with redis_server.client() as c:
            assert c.zcard('donjon:slots:["p","f",null]') == 1  # the first acquire's only

    asyncio.run(main())


def test_calls_waiting_for_a_shared_slot_are_bounded_in_count(
    redis_server: RedisServer,
) -> None:
    """DONJON_MAX_QUEUED_PER_FUNCTION bounds the calls that wait for a full key with Redis
    too: past it a call gets None at once, as with the node's own slots. Before, every
    call waited, polling Redis up to ten times a second: a flood at one full cap was
    unbounded work for Redis and for the node's few connections to it."""
    settings = load_settings(
        {
            "DONJON_DATA_DIR": "/tmp/x",
            "DONJON_REDIS_URL": redis_server.url,
            "DONJON_MAX_QUEUED_PER_FUNCTION": "2",
        }
    )

    async def main() -> None:
        limiter = open_shared(settings)
        assert limiter is not None
        waits: list[asyncio.Task[Slot | None]] = []
        try:
            held = await limiter.acquire(K, 1, wait_s=0, lease_s=60)
            assert held is not None
            waits += [
                asyncio.create_task(limiter.acquire(K, 1, wait_s=60, lease_s=60)) for _ in range(6)
            ]
            for _ in range(1500):  # until four are answered (bounded), the slot still held
                if sum(t.done() for t in waits) >= 4:
                    break
                await asyncio.sleep(0.02)
            refused = [t for t in waits if t.done() and t.result() is None]
            assert len(refused) == 4, f"{len(refused)} of 6 refused while the slot was held"
            # The waiters, named before the release: one may take the slot during it.
            waiting = [t for t in waits if not t.done()]
            await limiter.release(held)
            got, _ = await asyncio.wait(waiting, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            assert [t.result() is not None for t in got] == [True]  # a waiter got it
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
            await limiter.close()

    asyncio.run(main())
