"""Concurrency slots in process memory: one node, no I/O, bounded waiting.

Each key has at most `cap` slots held. A call that finds them all held waits
(first come, first served) at most `wait_s` for one to be released, then gets
None. Waiting is bounded in count as well as time: at most `max_waiters` calls
wait per key, and `max_waiting` over every key; past either a call gets None at
once. A released slot is handed straight to the oldest waiter, so a newcomer
never overtakes a call that waited. Every slot is leased: one not released
within its `lease_s` (its holder leaked it) is freed when its lease ends if a
call waits for it (the waiters wake then), else the next time its key is looked
at. Keys with nothing held or waiting are swept once there are more
than `max_idle_keys`.

`try_acquire` and `release_now` are the same without a coroutine, for the
gateway's calls when this is the node's limiter (a free slot is granted at
once; a full key goes through `acquire`, which waits or refuses).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from donjon.ratelimit.interface import BucketKey, ConcurrencyLimiter, Slot

__all__ = ["MemoryConcurrencyLimiter"]


@dataclass(slots=True)
class _Key:
    #: Held slots: token -> when its lease ends (monotonic).
    held: dict[str, float] = field(default_factory=dict)
    #: Calls waiting, oldest first: (future the slot's token is handed through, lease_s).
    waiters: deque[tuple[asyncio.Future[str], float]] = field(default_factory=deque)


class MemoryConcurrencyLimiter(ConcurrencyLimiter):
    """Slots per key for one node. Runs on the event loop only."""

    def __init__(
        self,
        *,
        max_waiters: int = 64,
        max_waiting: int = 512,
        max_idle_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_waiters = max(0, max_waiters)
        self._max_waiting = max(0, max_waiting)
        self._clock = clock
        #: Keys with nothing held or waiting are kept for reuse up to this many, then swept.
        self._max_idle_keys = max(0, max_idle_keys)
        #: Keys' states, by the key's `parts` (its fields: a tuple's hash is C's).
        self._keys: dict[tuple[object, ...], _Key] = {}
        self._tokens = itertools.count(1)
        #: Calls waiting now, over every key.
        self.waiting = 0

    def try_acquire(self, key: BucketKey, cap: int, *, lease_s: float) -> Slot | None:
        """A slot at once if one of `key`'s is free and no call waits for one; else None
        (then `acquire` decides: it waits its turn or refuses). Never suspends."""
        state = self._keys.get(key.parts)
        now = self._clock()
        if state is None:
            state = self._keys[key.parts] = _Key()
        else:
            held = state.held
            if held and min(held.values()) <= now:  # (`_expire`'s test: rarely true)
                self._expire(key, state)
            while state.waiters and len(state.held) < cap:  # a cap raised since they came
                self._hand_on(state)
        if len(state.held) < cap and not state.waiters:
            token = str(next(self._tokens))
            state.held[token] = now + lease_s
            return Slot(key, token)
        return None

    async def acquire(
        self, key: BucketKey, cap: int, *, wait_s: float, lease_s: float
    ) -> Slot | None:
        slot = self.try_acquire(key, cap, lease_s=lease_s)
        if slot is not None:
            return slot
        state = self._keys[key.parts]  # (made by try_acquire)
        if (
            wait_s <= 0
            or len(state.waiters) >= self._max_waiters
            or self.waiting >= self._max_waiting
        ):
            self._forget_if_idle(key, state)
            return None
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        entry = (future, lease_s)
        state.waiters.append(entry)
        self.waiting += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        try:
            while not future.done():
                left = deadline - loop.time()
                if left <= 0:
                    break
                # Wake when the nearest lease ends too: a leaked slot is freed then, not
                # only when a call comes by (its holder died and will never release it).
                lease_left = min(state.held.values(), default=math.inf) - self._clock()
                await asyncio.wait((future,), timeout=min(left, max(lease_left, 0.001)))
                self._expire(key, state)  # a lease that ran out goes to the oldest waiter
            return Slot(key, future.result()) if _handed(future) else None
        except BaseException:  # cancelled: a slot handed to us meanwhile goes on
            if _handed(future):  # (its key's state is `state`: our slot holds it)
                self.release_now(Slot(key, future.result()))
            raise
        finally:
            self.waiting -= 1
            if entry in state.waiters:
                state.waiters.remove(entry)
            self._forget_if_idle(key, state)

    async def release(self, slot: Slot) -> None:
        self.release_now(slot)

    def release_now(self, slot: Slot) -> None:
        """`release`, at once (it never waits)."""
        key = slot.key
        state = self._keys.get(key.parts)
        if state is None or state.held.pop(slot.token, None) is None:
            return  # released already, or its lease ran out
        if state.waiters:  # (`_hand_on` and `_forget_if_idle`, asked only when they act)
            self._hand_on(state)
        if len(self._keys) > self._max_idle_keys:
            self._forget_if_idle(key, state)

    async def held(self, key: BucketKey) -> int:
        state = self._keys.get(key.parts)
        if state is None:
            return 0
        self._expire(key, state)
        return len(state.held)

    def _hand_on(self, state: _Key) -> None:
        """Give a free slot to the oldest waiter still waiting (one per free slot)."""
        while state.waiters:
            future, lease_s = state.waiters.popleft()
            if future.done():
                continue
            token = str(next(self._tokens))
            state.held[token] = self._clock() + lease_s
            future.set_result(token)
            return

    def _expire(self, key: BucketKey, state: _Key) -> None:
        if not state.held:
            return
        now = self._clock()
        if min(state.held.values()) > now:  # the common case: every lease still runs
            return
        for token in [t for t, until in state.held.items() if until <= now]:
            del state.held[token]
            self._hand_on(state)

    def _forget_if_idle(self, key: BucketKey, state: _Key) -> None:
        """Past `max_idle_keys` keys, drop every idle one (their state is empty): memory
        stays bounded by the keys in use, and a busy key's state is not remade per call."""
        if len(self._keys) > self._max_idle_keys and not state.held and not state.waiters:
            for k in [k for k, s in self._keys.items() if not s.held and not s.waiters]:
                del self._keys[k]


def _handed(future: asyncio.Future[str]) -> bool:
    return future.done() and not future.cancelled()
