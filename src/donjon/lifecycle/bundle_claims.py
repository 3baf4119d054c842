"""Bundle trees a deploy has unpacked but not yet stored a version of.

A deploy unpacks its bundle under its digest (bundle/store.py) before it is judged in
full: the name's owner, grants, trigger secrets, its handler's import (prestart), the
store. A deploy refused at any of those left its tree on the node for ever (up to 256
MiB, DONJON's bundle limit): a key refused again and again (a name another key owns,
a handler that fails at import) filled the disk and changed something after all. A
claim holds the tree while its deploy runs; a deploy that does not end stored gives it
back, and the tree goes unless a version row names it (content-addressed: another
function may run the same tree) or another deploy holds it: from the moment the store
gave it the tree (bundle/store.py counts them, under the lock its keeping and this
removal share), not only once that deploy reached its claim.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from donjon.bundle.store import BundleStore

__all__ = ["BundleClaims"]

log = logging.getLogger("donjon")


class BundleClaims:
    """The digests deploys in flight hold; the unstored ones removed when refused."""

    def __init__(self, bundles: BundleStore, stored: Callable[[str], bool]) -> None:
        self._bundles = bundles
        #: Whether a version row names the digest (blocking: run off the loop).
        self._stored = stored
        self._held: collections.Counter[str] = collections.Counter()

    @contextlib.asynccontextmanager
    async def claim(self, digest: str) -> AsyncIterator[None]:
        """Hold `digest`'s tree for the block; if the block raises (the deploy was
        refused, failed or was cancelled before it stored), remove the tree unless it is
        stored or held by another deploy."""
        self._held[digest] += 1
        ended = False
        try:
            yield
            ended = True
        finally:
            self._held[digest] -= 1
            if self._held[digest] <= 0:
                del self._held[digest]
            discard = not ended and digest not in self._held
            # Off the loop: the store's lock may be a prune's, reading the database.
            await asyncio.shield(asyncio.to_thread(self._end, digest, discard))

    def holds(self, digest: str) -> bool:
        """Whether a deploy in flight holds `digest` (a dict lookup: safe off the loop)."""
        return digest in self._held

    def _end(self, digest: str, discard: bool) -> None:
        """The deploy's tree released (`add` gave it) and, if `discard`, removed."""
        self._bundles.release(digest)
        if not discard:
            return
        try:  # kept if another deploy was given it or a version runs it (bundle/store.py)
            self._bundles.discard(digest, self._stored)
        except Exception:  # a busy database: keep it (a leak, never a loss)
            log.exception("cannot tell whether bundle %s is stored; kept", digest)
