"""A refused deploy's bundle tree goes, unless another deploy was given the same tree
(the same content, deployed at once) and has not ended, or a version runs it."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from donjon.bundle import BundleStore, build_bundle
from donjon.lifecycle.bundle_claims import BundleClaims


class Refused(Exception):
    pass


def _archive(root: Path) -> bytes:
    root.mkdir()
    (root / "donjon.yaml").write_text("name: same\nhandler: main.handler\n")
    (root / "main.py").write_text("def handler(e, c):\n    return 1\n")
    return build_bundle(root)[1]


async def _refused(claims: BundleClaims, digest: str) -> None:
    with pytest.raises(Refused):
        async with claims.claim(digest):
            raise Refused


def test_a_tree_given_to_a_deploy_not_yet_claiming_it_is_not_discarded(tmp_path: Path) -> None:
    """Two deploys of one bundle: the first is refused before the second reached its
    claim; the tree stays for the second, and goes once the second is refused too."""
    store = BundleStore(tmp_path / "bundles")
    archive = _archive(tmp_path / "src")
    first, _ = store.add(archive, lambda p: None)
    second, _ = store.add(archive, lambda p: None)
    assert first == second
    claims = BundleClaims(store, lambda digest: False)
    asyncio.run(_refused(claims, first))
    assert store.path(first).is_dir(), "removed under a deploy it was given to"
    asyncio.run(_refused(claims, second))
    assert not store.path(first).exists()


def test_a_stored_tree_is_never_discarded(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "bundles")
    digest, _ = store.add(_archive(tmp_path / "src"), lambda p: None)
    claims = BundleClaims(store, lambda d: d == digest)
    asyncio.run(_refused(claims, digest))
    assert store.path(digest).is_dir()


def test_a_deploy_ending_during_a_prune_does_not_stall_the_loop(tmp_path: Path) -> None:
    """A deploy ends (its tree released) while a prune holds the store's lock (reading the
    kept versions from a busy database, removing trees): the event loop serves on
    meanwhile; the release waited for the lock on the loop, and every call stalled."""
    store = BundleStore(tmp_path / "bundles")
    digest, _ = store.add(_archive(tmp_path / "src"), lambda p: None)
    claims = BundleClaims(store, lambda d: True)
    reading, served = threading.Event(), threading.Event()
    answered: list[bool] = []

    def kept() -> set[str]:  # the database answers once the loop has served
        reading.set()
        answered.append(served.wait(10))
        return set()

    async def serve() -> None:
        await asyncio.to_thread(reading.wait, 10)
        await asyncio.sleep(0.05)  # the deploy below has reached its release
        served.set()

    async def deploy_ends() -> None:
        async with claims.claim(digest):
            await asyncio.to_thread(reading.wait, 10)

    async def main() -> None:
        prune = asyncio.create_task(
            asyncio.to_thread(store.remove_unkept, lambda d: False, kept, [digest])
        )
        await asyncio.gather(deploy_ends(), serve())
        await prune

    asyncio.run(main())
    assert answered == [True], "the loop stalled while the prune held the store's lock"
    assert store.path(digest).is_dir()  # still given when the prune decided: kept
