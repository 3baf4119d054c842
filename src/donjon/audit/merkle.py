"""Merkle trees over the audit log, as RFC 6962 / RFC 9162 define them.

leaf   = SHA-256(0x00 || record)
node   = SHA-256(0x01 || left || right)
MTH({}) = SHA-256("")

The tree over n leaves splits at k, the largest power of two below n: the
left subtree holds leaves [0, k), the right one [k, n). Producers take the
leaf hashes in log order; verifiers follow RFC 9162 sections 2.1.3.2
(inclusion) and 2.1.4.2 (consistency) and raise `InvalidProof` on any
mismatch, so a caller cannot forget to look at a returned flag.

Pure functions, no I/O: the audit log, the CLI and the offline verifier share
them.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256

from donjon.errors import Error

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "InvalidProof",
    "MerkleError",
    "consistency_proof",
    "consistency_ranges",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = sha256(b"").digest()


class MerkleError(Error):
    """A Merkle tree, proof or its parameters are not what they must be."""

    title = "Merkle tree error"


class InvalidProof(MerkleError):
    """A proof does not show what it claims against the given root(s)."""

    title = "Invalid Merkle proof"


def leaf_hash(data: bytes) -> bytes:
    """The hash of one leaf: SHA-256(0x00 || data)."""
    return sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: SHA-256(0x01 || left || right)."""
    return sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_leaves(leaf_hashes: Sequence[bytes]) -> None:
    for i, h in enumerate(leaf_hashes):
        if len(h) != HASH_SIZE:
            raise MerkleError(
                f"leaf hash {i} is {len(h)} bytes, not {HASH_SIZE}",
                hint="pass leaf hashes (merkle.leaf_hash(record)), not the records",
            )


def _root(leaves: Sequence[bytes]) -> bytes:
    """MTH of a non-empty range, level by level: a lone last node moves up unchanged,
    which gives the same tree as RFC 6962's split at the largest power of two."""
    level = list(leaves)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of these leaves (SHA-256 of nothing for no leaves)."""
    _check_leaves(leaf_hashes)
    if not leaf_hashes:
        return EMPTY_ROOT
    return _root(leaf_hashes)


def inclusion_ranges(size: int, index: int) -> list[tuple[int, int]]:
    """The leaf ranges [lo, hi) whose tree hashes are the audit path of leaf `index` in a
    tree of `size` leaves (RFC 9162 2.1.3.1), from the leaf's sibling up: disjoint, and
    with the leaf they cover the tree."""
    if not 0 <= index < size:
        raise MerkleError(
            f"leaf index {index} is outside a tree of {size} leaves",
            hint=f"ask for an index from 0 to {size - 1}" if size else "the tree is empty",
        )
    ranges: list[tuple[int, int]] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m = lo + k, m - k
    ranges.reverse()
    return ranges


def consistency_ranges(size: int, old_size: int) -> list[tuple[int, int]]:
    """The leaf ranges [lo, hi) whose tree hashes are the proof that the tree of the first
    `old_size` leaves is a prefix of the tree of `size` (RFC 9162 2.1.4.1), in proof
    order. Empty when old_size is 0 or the full size."""
    if not 0 <= old_size <= size:
        raise MerkleError(
            f"old size {old_size} is outside a tree of {size} leaves",
            hint=f"ask for an old size from 0 to {size}",
        )
    if old_size in (0, size):
        return []
    ranges: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, size, old_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf `index` in the tree of these leaves (RFC 9162 2.1.3.1),
    from the leaf's sibling up to the root's child."""
    _check_leaves(leaf_hashes)
    return [_root(leaf_hashes[lo:hi]) for lo, hi in inclusion_ranges(len(leaf_hashes), index)]


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """The proof that the tree of the first `old_size` leaves is a prefix of the tree
    of all of them (RFC 9162 2.1.4.1). Empty when old_size is 0 or the full size."""
    _check_leaves(leaf_hashes)
    ranges = consistency_ranges(len(leaf_hashes), old_size)
    return [_root(leaf_hashes[lo:hi]) for lo, hi in ranges]


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise InvalidProof(
            f"{what} is {len(value)} bytes, not {HASH_SIZE}",
            hint="hashes are raw SHA-256 digests; decode hex or base64 before verifying",
        )


def _fail(what: str) -> InvalidProof:
    return InvalidProof(
        what,
        hint="the log, the proof or the checkpoint was altered, or they are of different trees",
    )


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes
) -> None:
    """Check that `leaf` (a leaf hash) is leaf `index` of the tree of `size` leaves
    whose root is `root_hash` (RFC 9162 2.1.3.2). Raise InvalidProof if not."""
    _check_hash("the leaf hash", leaf)
    _check_hash("the root hash", root_hash)
    for i, p in enumerate(proof):
        _check_hash(f"proof hash {i}", p)
    if not 0 <= index < size:
        raise _fail(f"leaf index {index} is outside a tree of {size} leaves")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise _fail("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise _fail("the inclusion proof is shorter than the tree is deep")
    if r != root_hash:
        raise _fail(f"leaf {index} is not in the tree of {size} leaves with this root")


def _verify_trivial_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Every tree extends the empty one; a tree extends itself only unchanged.
    Either way the proof is empty."""
    if proof:
        raise _fail(f"a proof from size {old_size} to {new_size} must be empty")
    expected = EMPTY_ROOT if old_size == 0 else new_root
    if old_root != expected:
        raise _fail(f"the old root is not the root of a tree of {old_size} leaves here")


def _consistency_roots(old_size: int, new_size: int, path: Sequence[bytes]) -> tuple[bytes, bytes]:
    """Walk a consistency path (the old root prepended when old_size is a power of
    two) and return the old and new roots it leads to."""
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise _fail("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise _fail("the consistency proof is shorter than the tree is deep")
    return fr, sr


def verify_consistency(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """Check that the tree of `old_size` leaves with root `old_root` is a prefix of
    the tree of `new_size` leaves with root `new_root` (RFC 9162 2.1.4.2).
    Raise InvalidProof if not."""
    _check_hash("the old root hash", old_root)
    _check_hash("the new root hash", new_root)
    for i, p in enumerate(proof):
        _check_hash(f"proof hash {i}", p)
    if not 0 <= old_size <= new_size:
        raise _fail(f"old size {old_size} is not between 0 and the new size {new_size}")
    if old_size in (0, new_size):
        _verify_trivial_consistency(old_size, new_size, old_root, new_root, proof)
        return
    if not proof:
        raise _fail(f"a proof from size {old_size} to {new_size} cannot be empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fr, sr = _consistency_roots(old_size, new_size, path)
    if fr != old_root:
        raise _fail(f"the proof does not lead to the old root of {old_size} leaves")
    if sr != new_root:
        raise _fail(f"the proof does not lead to the new root of {new_size} leaves")
