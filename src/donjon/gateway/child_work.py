"""`ChildWork`: work whose C code holds the GIL for long, done in a child process, a bounded
number at once.

json's parser and encoder (and a regular expression over megabytes) run as one C call
that holds the GIL for the whole document: done on the event loop it stalls every other
caller, and done on a thread it is no better, since the loop waits for the GIL. Such work
is done here in a child process (its own interpreter and GIL, spawned at the first use),
by a thread of these waiting for it without the GIL; the work is bounded as the audit
reads are (donjon/own_threads.py): `slots` at once, `waiting` more, half of those places
one caller's, the rest refused at once (503, Retry-After). The stored views
(gateway/stored_views.py) and large events (gateway/large_events.py) are two of these.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import ParamSpec, TypeVar

from donjon.own_threads import OwnThreads

__all__ = ["ChildWork"]

P = ParamSpec("P")
T = TypeVar("T")


class ChildWork(OwnThreads):
    """`slots` children (and their threads), `waiting` more places, half of them one
    caller's; `noun` names the work in refusals."""

    def __init__(self, slots: int, waiting: int, retry_after_s: float, name: str) -> None:
        share = max(1, (slots + waiting) // 2)
        super().__init__(slots, waiting, share, retry_after_s, name)
        self._children = slots
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        #: `close` has run: no child is started after it (nothing would end that one).
        self._closed = False

    def in_child(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` (a module's function, its arguments picklable) in a child process,
        started at the first use; run on a thread of these, which waits without the GIL.
        A child that died (killed for its memory) is replaced."""
        with self._pool_lock:
            if self._closed:  # its thread began as the node stopped
                raise self._busy("this node is stopping")
            if self._pool is None:
                # Spawned, not forked: a fork of the node would copy its threads' locks.
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(self._children, mp_context=context)
            pool = self._pool
        try:
            return pool.submit(fn, *args, **kwargs).result()
        except BrokenProcessPool:
            with self._pool_lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise self._busy(f"the process doing {self.noun} ended") from None
        except RuntimeError:  # (a broken pool's is above) `close` shut the pool meanwhile
            if not self._closed:
                raise
            raise self._busy("this node is stopping") from None

    def close(self) -> None:
        """Refuse new work, drop what waits, and end the child."""
        super().close()
        with self._pool_lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
