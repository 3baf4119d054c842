"""The node's ceiling on pending invocations, every function's together (DONJON_QUEUE_MAX_PENDING).

Each function's pending invocations are bounded by its `limits.queued` (bound.py), up to
1,000,000 a function, and a principal may own up to DONJON_MAX_FUNCTIONS_PER_OWNER
functions, so what one developer key could have the node keep (each event up to the
request body's limit, sealed at rest) had no bound the operator could set short of the
disk. An enqueue is refused (`NodeQueueFull`, 503, nothing queued) when the node's
pending invocations and the ones asked for would pass the ceiling.

The count is read at most once a `HINT_S` (a read of at most the ceiling's index
entries, not a write lock) and grows by what this node takes meanwhile, so a ceiling
holds within about a second's enqueues of every node sharing the database: a bound on
the disk, not an exact quota (the per-function bound under its lock is exact).
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

from sqlalchemy import Engine, Integer, bindparam, func, select

from donjon.store.tables import invocations as inv
from donjon.triggers.queue.bound import PENDING_VALUES

__all__ = ["DEFAULT_MAX_PENDING", "HINT_S", "NodePending"]

#: Pending invocations a node holds, all functions together, by default.
DEFAULT_MAX_PENDING = 100_000
#: Seconds a count read stands for the next enqueues (plus what they took).
HINT_S = 1.0


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
        self._lock = threading.Lock()

    def has_room(self, engine: Engine, wanted: int) -> bool:
        """Whether `wanted` more fit under the ceiling, as last seen (read again if older
        than `HINT_S`)."""
        with self._lock:
            seen = self._seen
            if seen is None or time.monotonic() - seen[1] >= HINT_S:
                with engine.connect() as conn:
                    count = conn.execute(_pending_up_to(), {"q_limit": self.ceiling + 1})
                    seen = self._seen = (int(count.scalar_one()), time.monotonic())
            return seen[0] + wanted <= self.ceiling

    def taken(self, wanted: int) -> None:
        """`wanted` more were queued by this node: the count seen grows by them."""
        with self._lock:
            if self._seen is not None:
                self._seen = (self._seen[0] + wanted, self._seen[1])
