"""The right edge of the audit log's Merkle tree, in O(log n) hashes.

The leaves [0, size) split into perfect subtrees, one per set bit of `size`,
largest first (a compact range). Appending a leaf merges equal-sized subtrees
like a binary counter carries; the root folds them from the smallest up, which
is RFC 6962's tree hash (merkle.root) of all the leaves. The writer keeps one
so each commit costs O(log n) hashes, and the incremental verifier stores one
so it reads only the leaves added since.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import sha256

from donjon.audit.merkle import EMPTY_ROOT, HASH_SIZE, MerkleError, node_hash

__all__ = ["Frontier"]

#: Blocks of at least this many leaves are folded level by level.
_FOLD_AT = 16


def _perfect_root(level: list[bytes]) -> bytes:
    """The root of a perfect subtree (a power of two of leaf hashes)."""
    while len(level) > 1:
        it = iter(level)
        level = [sha256(b"\x01" + a + b).digest() for a, b in zip(it, it, strict=True)]
    return level[0]


def _check_sizes(hashes: Sequence[bytes], hint: str) -> None:
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise MerkleError(f"a frontier hash is {len(h)} bytes, not {HASH_SIZE}", hint=hint)


class Frontier:
    """The compact range [0, size): the roots of its perfect subtrees, largest first."""

    __slots__ = ("hashes", "size")

    size: int
    hashes: list[bytes]

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise MerkleError(
                f"a frontier of size {size} has {max(size, 0).bit_count()} hashes, "
                f"not {len(hashes)}",
                hint="pass the hashes of Frontier.hashes as they were saved",
            )
        _check_sizes(hashes, "pass the hashes of Frontier.hashes as they were saved")
        self.size = size
        self.hashes = [bytes(h) for h in hashes]

    def __repr__(self) -> str:
        return f"Frontier(size={self.size})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frontier):
            return NotImplemented
        return self.size == other.size and self.hashes == other.hashes

    __hash__ = None  # type: ignore[assignment]  # mutable

    def append(self, leaf_hash: bytes) -> None:
        """Add the next leaf (its leaf hash, merkle.leaf_hash(record))."""
        if len(leaf_hash) != HASH_SIZE:
            raise MerkleError(
                f"a leaf hash is {HASH_SIZE} bytes, not {len(leaf_hash)}",
                hint="pass merkle.leaf_hash(record), not the record",
            )
        h = leaf_hash
        size = self.size
        hashes = self.hashes
        # Each trailing 1 bit of size is a subtree as large as what we carry: merge.
        while size & 1:
            h = node_hash(hashes.pop(), h)
            size >>= 1
        hashes.append(h)
        self.size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaves. The same tree as `append` one by one; where the size is
        a multiple of a large power of two, that many leaves are first folded into
        their perfect subtree level by level (fewer interpreter steps per hash)."""
        leaves = list(leaf_hashes)
        for h in leaves:
            if len(h) != HASH_SIZE:
                raise MerkleError(
                    f"a leaf hash is {HASH_SIZE} bytes, not {len(h)}",
                    hint="pass merkle.leaf_hash(record), not the record",
                )
        i, n = 0, len(leaves)
        while i < n:
            size = self.size
            block = 1 << ((n - i).bit_length() - 1)  # the largest power of two that fits
            if size:
                block = min(block, size & -size)  # ... at which the size is aligned
            if block < _FOLD_AT:
                self._push(leaves[i], 0)
                i += 1
                continue
            self._push(_perfect_root(leaves[i : i + block]), block.bit_length() - 1)
            i += block

    def graft(self, size: int, hashes: Sequence[bytes]) -> None:
        """Append the `size` leaves that follow this frontier's, given as their own compact
        range (the `hashes` of a Frontier built from those leaves alone). The same tree as
        extending with the leaves, provided the range's perfect subtrees are the whole
        tree's: this frontier's size must be a multiple of the largest (`size` rounded
        down to a power of two), which holds when both sides split at an aligned block.
        So the leaves of a long log can be folded in separate processes, each from a
        block boundary, and joined here (verify_split.py)."""
        if size < 0 or len(hashes) != size.bit_count():
            raise MerkleError(
                f"a compact range of {size} leaves has {max(size, 0).bit_count()} hashes, "
                f"not {len(hashes)}",
                hint="pass the hashes of a Frontier built from those leaves alone",
            )
        if size and self.size % (1 << (size.bit_length() - 1)):
            raise MerkleError(
                f"{size} leaves cannot follow {self.size}: their subtrees would not be the tree's",
                hint="split the leaves at a multiple of the largest block's size",
            )
        _check_sizes(hashes, "pass the hashes of a Frontier built from those leaves alone")
        heights = [bit for bit in range(size.bit_length() - 1, -1, -1) if size >> bit & 1]
        for h, height in zip(hashes, heights, strict=True):
            self._push(bytes(h), height)

    def _push(self, h: bytes, height: int) -> None:
        """Add the root of a perfect subtree of 2**height leaves (size is a multiple)."""
        hashes = self.hashes
        n = self.size >> height
        while n & 1:
            h = sha256(b"\x01" + hashes.pop() + h).digest()  # merkle.node_hash
            n >>= 1
        hashes.append(h)
        self.size += 1 << height

    def root(self) -> bytes:
        """The tree hash of all the leaves so far (SHA-256("") when there are none)."""
        if not self.hashes:
            return EMPTY_ROOT
        it = reversed(self.hashes)
        acc = next(it)
        for h in it:
            acc = sha256(b"\x01" + h + acc).digest()  # merkle.node_hash(h, acc)
        return acc

    @classmethod
    def from_leaves(cls, leaf_hashes: Iterable[bytes]) -> Frontier:
        frontier = cls()
        frontier.extend(leaf_hashes)
        return frontier

    def copy(self) -> Frontier:
        # Not through __init__: this frontier's hashes were checked when they came in,
        # and no frontier changes a hash in place, so the copy needs only a list of its own.
        twin = Frontier.__new__(Frontier)
        twin.size = self.size
        twin.hashes = self.hashes.copy()
        return twin

    def to_json(self) -> dict[str, object]:
        """{"size": n, "hashes": [hex, ...]} (the incremental verifier's state)."""
        return {"size": self.size, "hashes": [h.hex() for h in self.hashes]}

    @classmethod
    def from_json(cls, data: object) -> Frontier:
        hint = "the saved frontier is damaged: verify in full (without --incremental)"
        if not isinstance(data, dict):
            raise MerkleError("a saved frontier is an object", hint=hint)
        size, hashes = data.get("size"), data.get("hashes")
        if not isinstance(size, int) or isinstance(size, bool) or not isinstance(hashes, list):
            raise MerkleError("a saved frontier has a size and a list of hashes", hint=hint)
        try:
            raw = [bytes.fromhex(h) for h in hashes]
        except (TypeError, ValueError):
            raise MerkleError("a saved frontier's hashes are not hex", hint=hint) from None
        return cls(size, raw)
