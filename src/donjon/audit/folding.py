"""Folding a log's leaf hashes, given page by page in log order, into roots.

A proof needs the root of the whole tree (checked against the signed one) and the
tree hashes of a few ranges of leaves (merkle.inclusion_ranges,
merkle.consistency_ranges). Each is a Frontier fed the leaves it covers as they go
by, so folding a log of any length holds one page of leaf hashes and O(log n)
hashes per range, never the log (audit/prover.py reads the pages).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from donjon.audit.frontier import Frontier
from donjon.audit.merkle import MerkleError

__all__ = ["Folded", "LeafFold"]


@dataclass(frozen=True)
class Folded:
    #: The compact range of every leaf folded (its root is the tree's).
    frontier: Frontier
    #: The tree hash of each range asked for, in the order asked.
    roots: list[bytes]


class LeafFold:
    """The leaves from index 0 on, folded into the tree and into each of `ranges`
    ([lo, hi) leaf indexes, any order, overlaps allowed)."""

    def __init__(self, ranges: Sequence[tuple[int, int]] = ()) -> None:
        self._whole = Frontier()
        self._ranges = list(ranges)
        self._parts = [Frontier() for _ in self._ranges]

    def add(self, leaves: Sequence[bytes]) -> None:
        """Fold the next leaves (their leaf hashes, 32 bytes each)."""
        start = self._whole.size
        end = start + len(leaves)
        for (lo, hi), part in zip(self._ranges, self._parts, strict=True):
            first, last = max(lo, start), min(hi, end)
            if first < last:
                part.extend(leaves[first - start : last - start])
        self._whole.extend(leaves)

    def done(self) -> Folded:
        """The folded tree and the ranges' roots; a range not wholly folded is an error."""
        for (lo, hi), part in zip(self._ranges, self._parts, strict=True):
            if part.size != hi - lo:
                raise MerkleError(
                    f"leaves {lo}..{hi - 1} were not all folded",
                    hint="fold every leaf of the tree the ranges lie in",
                )
        return Folded(self._whole, [part.root() for part in self._parts])
