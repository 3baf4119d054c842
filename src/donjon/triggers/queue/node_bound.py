"""The node's ceiling on pending invocations, every function's together (DONJON_QUEUE_MAX_PENDING).

Each function's pending invocations are bounded by its `limits.queued` (bound.py), up to
1,000,000 a function, and a principal may own up to DONJON_MAX_FUNCTIONS_PER_OWNER
functions, so what one developer key could have the node keep (each event up to the
request body's limit, sealed at rest) had no bound the operator could set short of the
disk. An enqueue is refused (`NodeQueueFull`, 503, nothing queued) when the node's
pending invocations and the ones asked for would pass the ceiling.

The count is read at most once a `HINT_S` (a read of at most the ceiling's index
entries, not a write lock) and grows by what this node takes meanwhile, and room given to
an enqueue still writing is counted too (concurrent batches each saw the same count, and
all went through: twenty batches of five under a ceiling of ten queued 35), so a ceiling
holds on a node, and within about a second's enqueues of every node sharing the
database: a bound on the disk, not an exact quota (the per-function bound under its lock
is exact).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine, Integer, bindparam, func, select

from donjon.store.tables import invocations as inv
from donjon.triggers.queue.bound import PENDING_VALUES
from donjon.triggers.queue.interface import NodeQueueFull

__all__ = ["DEFAULT_MAX_PENDING", "HINT_S", "NodePending"]

#: Pending invocations a node holds, all functions together, by default.
DEFAULT_MAX_PENDING = 100_000
#: Seconds a count read stands for the next enqueues (plus what they took).
HINT_S = 1.0

T = TypeVar("T")


@functools.cache
def _pending_up_to() -> Any:
    """The node's pending invocations, counted up to `q_limit` (built once)."""
    some = (
        select(inv.c.id)
        .where(inv.c.status.in_(PENDING_VALUES))
        .limit(bindparam("q_limit", type_=Integer()))
        .subquery()
    )
    return select(func.count()).select_from(some)


class NodePending:
    """Whether the node's queue has room under its ceiling (run on the queue's threads)."""

    def __init__(self, ceiling: int = DEFAULT_MAX_PENDING) -> None:
        self.ceiling = ceiling
        self._seen: tuple[int, float] | None = None
        #: Invocations given room and not yet written (or refused): enqueues at once on
        #: the queue's threads each saw the same count, and all were let through.
        self._reserved = 0
        self._lock = threading.Lock()

    def bounded(self, engine: Engine, function: str, wanted: int, write: Callable[[], T]) -> T:
        """`write()` (the enqueue of `wanted` invocations of `function`) if they fit under
        the ceiling, as last seen (read again if older than `HINT_S`) with the ones given
        room and not yet written; else `NodeQueueFull`, nothing written. It wrote them if it
        returns True."""
        with self._lock:
            seen = self._seen
            if seen is None or time.monotonic() - seen[1] >= HINT_S:
                with engine.connect() as conn:
                    count = conn.execute(_pending_up_to(), {"q_limit": self.ceiling + 1})
                    seen = self._seen = (int(count.scalar_one()), time.monotonic())
            if seen[0] + self._reserved + wanted > self.ceiling:
                raise NodeQueueFull(function, self.ceiling, wanted)
            self._reserved += wanted
        done: object = False
        try:
            done = write()
            return done
        finally:
            with self._lock:
                self._reserved -= wanted
                if done is True and self._seen is not None:  # the count seen grows by them
                    self._seen = (self._seen[0] + wanted, self._seen[1])
