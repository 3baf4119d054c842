"""The Frontier: the writer's compact range agrees with merkle.root at every size."""

from __future__ import annotations

import pytest

from donjon.audit.frontier import Frontier
from donjon.audit.merkle import EMPTY_ROOT, MerkleError, leaf_hash, root


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(b"record %d" % i) for i in range(n)]


def test_empty_frontier_has_the_empty_root() -> None:
    """A frontier of no leaves has SHA-256("") as its root."""
    assert Frontier().root() == EMPTY_ROOT
    assert Frontier().size == 0


def test_root_matches_merkle_root_at_every_size() -> None:
    """Appending one leaf at a time gives RFC 6962's root at each size up to 300."""
    leaves = _leaves(300)
    frontier = Frontier()
    for n, h in enumerate(leaves, start=1):
        frontier.append(h)
        assert frontier.size == n
        assert len(frontier.hashes) == n.bit_count()
        assert frontier.root() == root(leaves[:n])


def test_from_leaves_and_copy_are_independent() -> None:
    """from_leaves builds the same frontier; a copy does not follow later appends."""
    leaves = _leaves(37)
    frontier = Frontier.from_leaves(leaves[:20])
    copy = frontier.copy()
    assert copy == frontier and copy.hashes is not frontier.hashes
    frontier.extend(leaves[20:])
    assert copy.root() == root(leaves[:20])
    assert frontier.root() == root(leaves)
    assert Frontier.from_leaves(leaves) == frontier
    # ... nor the original a copy's appends (the writer extends a copy of its tip)
    tip = frontier.copy()
    tip.extend(_leaves(40)[37:])
    assert frontier.size == 37 and frontier.root() == root(leaves)
    assert tip.root() == root(_leaves(40))


def test_json_round_trip() -> None:
    """A frontier saved as JSON reads back equal, and goes on to the same root."""
    leaves = _leaves(45)
    saved = Frontier.from_leaves(leaves[:30]).to_json()
    restored = Frontier.from_json(saved)
    restored.extend(leaves[30:])
    assert restored.root() == root(leaves)


@pytest.mark.parametrize(
    ("size", "count"),
    [(-1, 0), (3, 1), (4, 2), (0, 1)],
)
def test_frontier_with_wrong_hash_count_is_refused(size: int, count: int) -> None:
    """A frontier whose hashes do not match its size's bits is refused."""
    with pytest.raises(MerkleError):
        Frontier(size, [bytes(32)] * count)


def test_bad_leaf_and_bad_json_are_refused() -> None:
    """A leaf hash of the wrong length and a damaged saved frontier are refused."""
    with pytest.raises(MerkleError):
        Frontier().append(b"short")
    bad: object
    for bad in ([], {"size": 1}, {"size": 1, "hashes": ["zz"]}, {"size": True, "hashes": []}):
        with pytest.raises(MerkleError):
            Frontier.from_json(bad)


def test_extend_in_chunks_builds_the_tree_append_builds() -> None:
    """Leaves added in blocks of any size (folded level by level where aligned) give the
    same frontier and root as one append per leaf."""
    import random

    from donjon.audit.merkle import leaf_hash as lh
    from donjon.audit.merkle import root as mth

    rng = random.Random(14)  # noqa: S311 - chunk sizes for a test, not a secret
    for n in [0, 1, 2, 15, 16, 17, 100, 1024, 1025, 2500]:
        leaves = [lh(str(i).encode()) for i in range(n)]
        chunked, i = Frontier(), 0
        while i < n:
            k = rng.choice([1, 3, 16, 64, 513, 1024, 4096])
            chunked.extend(leaves[i : i + k])
            i += k
        one_by_one = Frontier()
        for leaf in leaves:
            one_by_one.append(leaf)
        assert chunked == one_by_one
        assert chunked.root() == mth(leaves)


def test_graft_joins_ranges_folded_apart_at_aligned_splits() -> None:
    """Leaves split at any multiple of a power of two no smaller than what follows,
    folded apart and grafted, give merkle.root of all of them, at every size up to 70."""
    leaves = _leaves(70)
    for cut in range(0, 70):
        for n in range(1, 71 - cut):
            if cut and cut % (1 << (n.bit_length() - 1)):
                continue  # not aligned: refused (below)
            joined = Frontier.from_leaves(leaves[:cut])
            joined.graft(n, Frontier.from_leaves(leaves[cut : cut + n]).hashes)
            assert joined == Frontier.from_leaves(leaves[: cut + n]), (cut, n)
            assert joined.root() == root(leaves[: cut + n])


def test_graft_refuses_what_would_not_be_the_trees_subtrees() -> None:
    """A range whose largest block is not aligned at the frontier's size, a count of
    hashes that is not the size's, or a hash of the wrong length: MerkleError, nothing
    changed."""
    leaves = _leaves(12)
    frontier = Frontier.from_leaves(leaves[:6])
    four = Frontier.from_leaves(leaves[6:10]).hashes
    for size, hashes in ((4, four), (2, four + four), (3, [four[0], b"x" * 31])):
        with pytest.raises(MerkleError):
            frontier.graft(size, hashes)
        assert frontier == Frontier.from_leaves(leaves[:6])
