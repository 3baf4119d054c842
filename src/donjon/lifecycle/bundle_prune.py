"""Old versions' bundle trees removed: a function keeps its newest DONJON_KEEP_BUNDLES.

Every deploy of new code unpacks a tree (bundles/<digest>/, up to 256 MiB) and stores
a version that names it. Only the current version serves; its history (the version
rows, their SBOMs and signed provenance, the audit records) is in the database and is
never removed. The trees were, until now, never removed either, so a developer key
redeploying its function filled the disk at 256 MiB a deploy, with nothing refused.

A prune removes every tree that none of these needs:
- the current version, and the newest `keep` versions, of a deployed function (a
  removed function keeps none; trees are shared by content, so a tree stays while any
  function keeps a version of it);
- a deploy in flight: from the moment the store gave it the tree (bundle/store.py counts
  them until each deploy releases it, after its version is stored; the kept versions are
  read under the same lock, so a deploy that has just stored is seen either way) and
  while it holds its claim (lifecycle/bundle_claims.py): exact counts, not an age, so a
  key redeploying new code as fast as the node takes it keeps no more trees;
- a sandbox still running it (a replaced version's, draining its calls): the pool's pin.

It runs after a deploy switched to a new version, after a removal, at a node's start
and with the hourly retention purge (gateway/node.py), one at a time, off the loop. What
it is about to remove is audited first (`bundle.prune`, by `system`); a prune whose
record is not written removes nothing (and the node's housekeeping goes on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from donjon.audit.log import AuditEvent, AuditLog
from donjon.bundle.store import BundleStore
from donjon.lifecycle.bundle_claims import BundleClaims
from donjon.store.functions import FunctionStore

__all__ = ["KEEP_BUNDLES", "BundlePrune"]

log = logging.getLogger("donjon")

#: Versions whose trees a deployed function keeps, by default (DONJON_KEEP_BUNDLES).
KEEP_BUNDLES = 5
#: Digests named in one `bundle.prune` record (the count is always whole).
_NAMED = 100


class _Pins(Protocol):
    def holds(self, digest: str) -> bool: ...


class BundlePrune:
    """Removes the bundle trees no kept version, deploy or sandbox needs."""

    def __init__(
        self,
        functions: FunctionStore,
        bundles: BundleStore,
        claims: BundleClaims,
        audit: AuditLog,
        keep: int = KEEP_BUNDLES,
    ) -> None:
        self.keep = keep
        #: The node's sandbox pool, once started: a draining version's tree stays.
        self.pins: _Pins | None = None
        self._functions = functions
        self._bundles = bundles
        self._claims = claims
        self._audit = audit
        self._one = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._again = False

    async def run(self) -> list[str]:
        """Prune now (after any prune under way); the digests removed."""
        async with self._one:
            pins, claims = self.pins, self._claims

            def wanted(digest: str) -> bool:
                return claims.holds(digest) or (pins is not None and pins.holds(digest))

            def kept() -> set[str]:  # read under the store's lock (bundle/store.py)
                return self._functions.kept_digests(self.keep)

            try:
                unkept = await asyncio.to_thread(self._bundles.unkept, wanted, kept)
            except Exception:  # a busy database: nothing is removed, the next one does
                log.exception("cannot tell which bundles are kept; none removed")
                return []
            if not unkept:
                return []
            detail = {"count": len(unkept), "digests": unkept[:_NAMED], "keep": self.keep}
            try:  # recorded before anything is removed: a prune unrecorded removes nothing
                await self._audit.record(
                    AuditEvent("system", "bundle.prune", "bundles", "ok", detail)
                )
            except Exception:
                log.exception("the bundle prune's record was not written; nothing removed")
                return []
            try:  # those of them still unkept now (asked again under the store's lock)
                removed = await asyncio.to_thread(self._bundles.remove_unkept, wanted, kept, unkept)
            except Exception:
                log.exception("cannot tell which bundles are kept; none removed")
                return []
        log.info("removed %d bundle tree(s) no kept version runs", len(removed))
        return removed

    def soon(self) -> None:
        """Prune in the background (a deploy or removal has just ended), once more after
        the one under way if there is one (it may have read the kept versions before
        this change); a failure is logged, never the deploy's."""
        self._again = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._runs(), name="bundle-prune")
            self._task.add_done_callback(_logged)

    async def _runs(self) -> None:
        while self._again:
            self._again = False
            await self.run()

    async def stop(self) -> None:
        """Wait for a prune under way (its removals run to their end on their thread)."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
            self._task = None


def _logged(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a bundle prune failed", exc_info=task.exception())
