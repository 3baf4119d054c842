"""Content-addressed bundle storage on the node: bundles/<sha256>/.

A bundle is unpacked into a staging directory (``bundles/.incoming-*``),
inspected, and renamed under its digest; whatever happens, the staging
directory is removed afterwards, and `sweep` removes any that a node which
stopped mid-deploy left behind. `remove_unkept` removes the trees no version kept
needs (lifecycle/bundle_prune.py says which), and `discard` the tree of a refused deploy
(lifecycle/bundle_claims.py); they and `add`'s keeping of a tree run one at a time, and
each tree `add` gives a deploy is counted until the deploy `release`s it, so a tree that
another deploy has just been given (the same content, deployed at once) is never
discarded under it. A tree is renamed out of its digest's name before it is removed, so a
removal cut short leaves no part of a tree for a deploy of the same bytes to reuse.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TypeVar

from donjon.bundle.archive import BundleError, tree_digest
from donjon.bundle.tree import make_read_only, remove_tree
from donjon.bundle.unpack import unpack
from donjon.errors import Error

__all__ = ["REMOVING_PREFIX", "STAGING_PREFIX", "BundleStore"]

STAGING_PREFIX = ".incoming-"
#: A tree being removed is renamed first: a removal cut short (a SIGKILL, a file that
#: would not go) never leaves part of a tree under its digest for a deploy to reuse.
REMOVING_PREFIX = ".removing-"

log = logging.getLogger("donjon")

T = TypeVar("T")

#: The name of a kept tree: its digest (bundle/archive.py's `tree_digest`).
_DIGEST = re.compile(r"[0-9a-f]{64}")


class BundleStore:
    """Unpacked, read-only bundle trees, one per content digest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        #: `_keep`, `release`, `discard` and `remove_unkept`, one at a time (never taken on
        #: the event loop: a prune holds it while it reads the database).
        self._trees = threading.Lock()
        #: The trees `add` gave deploys that have not released them yet.
        self._given: Counter[str] = Counter()

    def path(self, digest: str) -> Path:
        return self.root / digest

    def add(self, archive: bytes, inspect: Callable[[Path], T]) -> tuple[str, T]:
        """Unpack `archive`, run `inspect` on the tree (it raises to refuse the
        bundle), and keep it under its digest; returns (digest, inspect's result).

        Every failure is a `donjon.errors.Error` whose message names no path
        of this host (the staging directory is the bundle's own business).
        """
        staging: Path | None = None
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.root))
            unpack(archive, staging)
            verdict = inspect(staging)
            digest = tree_digest(staging)
            self._keep(staging, digest)
            return digest, verdict
        except BundleError:
            raise
        except Error as e:
            if staging is not None and str(staging) in e.message:
                # A message that names the staging path (a scanner's, say): say "the bundle".
                raise BundleError(e.message.replace(str(staging), "the bundle"), hint=e.hint) from e
            raise
        except OSError as e:
            reason = os.strerror(e.errno) if e.errno is not None else type(e).__name__
            raise BundleError(
                f"cannot store the bundle ({reason})", hint="the server log may say more"
            ) from e
        finally:
            if staging is not None and not remove_tree(staging):
                log.warning("a deploy's staging directory %s could not be removed", staging)

    def _keep(self, staging: Path, digest: str) -> None:
        final = self.path(digest)
        make_read_only(staging)
        with self._trees:
            # A tree another version runs (or ran) is this deploy's too: counted as given,
            # a prune leaves it to the deploy until a version row names it.
            if not final.exists():
                try:
                    os.rename(staging, final)
                except OSError:
                    if not final.is_dir():  # else a concurrent deploy of the same tree won
                        raise
            self._given[digest] += 1

    def release(self, digest: str) -> None:
        """The deploy `add` gave `digest` to has ended (stored, refused or failed)."""
        with self._trees:
            self._given[digest] -= 1
            if self._given[digest] <= 0:
                del self._given[digest]

    def discard(self, digest: str, stored: Callable[[str], bool]) -> bool:
        """Remove a refused deploy's tree (after its `release`) unless another deploy was
        given it and has not released it, or `stored` says a version runs it; whether
        it is gone."""
        with self._trees:
            if self._given[digest] > 0 or stored(digest):
                return False
            doomed = self._doom(digest)
        if doomed is None:
            return False
        remove_tree(doomed)  # renamed: what it cannot remove, the next start's sweep does
        return True

    def unkept(self, wanted: Callable[[str], bool], kept: Callable[[], set[str]]) -> list[str]:
        """The trees that no deploy was given and has yet to release, that `kept()` does
        not name and `wanted` does not want, by digest (what `remove_unkept` would remove
        now). `kept()` (the trees stored versions keep) is read under the lock `release`
        takes: a deploy has stored its version before its tree stops counting as given."""
        with self._trees:
            return self._unkept(wanted, kept)

    def remove_unkept(
        self, wanted: Callable[[str], bool], kept: Callable[[], set[str]], among: Collection[str]
    ) -> list[str]:
        """Remove the trees of `among` that are still `unkept` (asked again, under the
        lock); the digests removed. A tree that cannot be renamed is logged and left for
        the next time; the lock is not held while trees are removed."""
        chosen = set(among)
        with self._trees:
            doomed = {}
            for digest in self._unkept(wanted, kept):
                if digest in chosen and (renamed := self._doom(digest)) is not None:
                    doomed[digest] = renamed
        # Removed outside the lock (renamed, no deploy can be given them any more); what
        # cannot be removed is logged, and the next start's sweep removes it.
        for renamed in doomed.values():
            remove_tree(renamed)
        return list(doomed)

    def _unkept(self, wanted: Callable[[str], bool], kept: Callable[[], set[str]]) -> list[str]:
        try:
            with os.scandir(self.root) as entries:
                trees = [e.name for e in entries if _DIGEST.fullmatch(e.name)]
        except FileNotFoundError:
            return []
        except OSError as e:
            log.warning("cannot list the bundles in %s: %s", self.root, e.strerror)
            return []
        stored = kept()
        return [
            digest
            for digest in sorted(trees)
            if self._given[digest] <= 0 and digest not in stored and not wanted(digest)
        ]

    def _doom(self, digest: str) -> Path | None:
        """Rename a tree out of its digest's name (under `_trees`), so that a removal cut
        short leaves no part of it for a deploy to take as whole (`sweep` removes what is
        left); where it is now (a path that may not exist: it was gone), None if it stays."""
        doomed = self.root / f"{REMOVING_PREFIX}{digest}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self.path(digest), doomed)
        except FileNotFoundError:
            return doomed
        except OSError as e:
            log.warning("cannot remove bundle %s: %s", digest, e.strerror)
            return None
        return doomed

    def sweep(self) -> int:
        """Remove staging directories left by a node that stopped mid-deploy, and trees
        whose removal was cut short (`_doom`).

        Run at node start, when no deploy of this node is in flight; returns how
        many were removed.
        """
        prefixes = (STAGING_PREFIX, REMOVING_PREFIX)
        try:
            with os.scandir(self.root) as entries:
                stale = [e.path for e in entries if e.name.startswith(prefixes)]
        except FileNotFoundError:
            return 0
        except OSError as e:  # never a reason not to start
            log.warning(
                "cannot look for stale staging directories in %s: %s", self.root, e.strerror
            )
            return 0
        removed = 0
        for path in stale:
            if remove_tree(Path(path)):
                removed += 1
                log.warning("removed a stale staging or half-removed tree %s", path)
        return removed
