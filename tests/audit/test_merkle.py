"""RFC 6962 / RFC 9162 Merkle trees: roots, inclusion and consistency proofs, verifiers.

The known answers below are spelled out node by node with hashlib; the properties
compare the module with a naive recursive transcription of RFC 9162 2.1.1-2.1.4.1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from hashlib import sha256

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from donjon.audit.merkle import (
    EMPTY_ROOT,
    InvalidProof,
    MerkleError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from donjon.errors import Error

#: No deadline (a loaded 2-core machine), no example database written, the same examples
#: every run, few of them: each example builds trees of up to 300 leaves (fewer still in
#: the fast subset, whose hypothesis profile caps the count: tests/conftest.py).
PROPERTY = settings(
    deadline=None,
    database=None,
    derandomize=True,
    max_examples=min(40, settings().max_examples),
)

MAX_SIZE = 300


def L(i: int) -> bytes:
    """The RFC's leaf of the one-byte record i."""
    return sha256(b"\x00" + bytes([i])).digest()


def N(left: bytes, right: bytes) -> bytes:
    """The RFC's interior node."""
    return sha256(b"\x01" + left + right).digest()


def leaves(n: int) -> list[bytes]:
    """Leaf hashes of n distinct one-byte records."""
    return [L(i) for i in range(n)]


def distinct(n: int, start: int = 0) -> list[bytes]:
    """Leaf hashes of n distinct two-byte records, numbered from `start`."""
    return [leaf_hash(i.to_bytes(2, "big")) for i in range(start, start + n)]


# Hand-built subtrees of the eight-leaf example.
N01, N23, N45, N67 = N(L(0), L(1)), N(L(2), L(3)), N(L(4), L(5)), N(L(6), L(7))
N0123, N4567 = N(N01, N23), N(N45, N67)

KNOWN_ROOTS = [
    sha256(b"").digest(),
    L(0),
    N01,
    N(N01, L(2)),
    N0123,
    N(N0123, L(4)),
    N(N0123, N45),
    N(N0123, N(N45, L(6))),
    N(N0123, N4567),
]


# A naive transcription of the RFC's recursive definitions.
def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_root(d: Sequence[bytes]) -> bytes:
    if not d:
        return sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return N(naive_root(d[:k]), naive_root(d[k:]))


def naive_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*naive_path(m, d[:k]), naive_root(d[k:])]
    return [*naive_path(m - k, d[k:]), naive_root(d[:k])]


def naive_subproof(m: int, d: Sequence[bytes], whole: bool) -> list[bytes]:
    if m == len(d):
        return [] if whole else [naive_root(d)]
    k = _k(len(d))
    if m <= k:
        return [*naive_subproof(m, d[:k], whole), naive_root(d[k:])]
    return [*naive_subproof(m - k, d[k:], False), naive_root(d[:k])]


def flip(value: bytes, bit: int) -> bytes:
    bit %= len(value) * 8
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_leaf_and_node_hashes_carry_their_domain_prefix() -> None:
    """A leaf is SHA-256(0x00 || data), a node SHA-256(0x01 || left || right)."""
    assert leaf_hash(b"") == sha256(b"\x00").digest()
    assert leaf_hash(b"\x07") == L(7)
    assert node_hash(L(0), L(1)) == sha256(b"\x01" + L(0) + L(1)).digest()
    assert leaf_hash(b"\x01" + L(0) + L(1)) != node_hash(L(0), L(1))


@pytest.mark.parametrize("n", range(9))
def test_roots_of_sizes_0_to_8_are_the_hand_built_trees(n: int) -> None:
    """The root splits at the largest power of two below the size; no leaves hash to SHA-256('')."""
    assert root(leaves(n)) == KNOWN_ROOTS[n]
    assert KNOWN_ROOTS[0] == EMPTY_ROOT


@pytest.mark.parametrize(
    ("index", "size", "path"),
    [
        (0, 1, []),
        (0, 2, [L(1)]),
        (2, 3, [N01]),
        (0, 5, [L(1), N23, L(4)]),
        (4, 5, [N0123]),
        (0, 7, [L(1), N23, N(N45, L(6))]),
        (3, 7, [L(2), N01, N(N45, L(6))]),
        (4, 7, [L(5), L(6), N0123]),
        (6, 7, [N45, N0123]),
        (5, 8, [L(4), N67, N0123]),
    ],
)
def test_inclusion_proofs_are_the_hand_built_audit_paths(
    index: int, size: int, path: list[bytes]
) -> None:
    """The audit path runs from the leaf's sibling to the root's child, and verifies."""
    proof = inclusion_proof(leaves(size), index)
    assert proof == path
    verify_inclusion(L(index), index, size, proof, KNOWN_ROOTS[size])


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        (0, 5, []),
        (5, 5, []),
        (1, 2, [L(1)]),
        (1, 3, [L(1), L(2)]),
        (2, 3, [L(2)]),
        (3, 7, [L(2), L(3), N01, N(N45, L(6))]),
        (4, 7, [N(N45, L(6))]),
        (6, 7, [N45, L(6), N0123]),
        (4, 8, [N4567]),
        (5, 8, [L(4), L(5), N67, N0123]),
    ],
)
def test_consistency_proofs_are_the_hand_built_subproofs(
    old: int, new: int, path: list[bytes]
) -> None:
    """A power-of-two old tree is left out of its proof; the rest follows RFC 9162 2.1.4.1."""
    proof = consistency_proof(leaves(new), old)
    assert proof == path
    verify_consistency(old, new, KNOWN_ROOTS[old], KNOWN_ROOTS[new], proof)


def test_every_tree_extends_the_empty_tree_and_itself() -> None:
    """Size 0 to n and n to n take an empty proof; anything else there fails."""
    verify_consistency(0, 8, EMPTY_ROOT, KNOWN_ROOTS[8], [])
    verify_consistency(8, 8, KNOWN_ROOTS[8], KNOWN_ROOTS[8], [])
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    with pytest.raises(InvalidProof):
        verify_consistency(0, 8, KNOWN_ROOTS[1], KNOWN_ROOTS[8], [])
    with pytest.raises(InvalidProof):
        verify_consistency(8, 8, KNOWN_ROOTS[8], KNOWN_ROOTS[7], [])
    with pytest.raises(InvalidProof):
        verify_consistency(8, 8, KNOWN_ROOTS[8], KNOWN_ROOTS[8], [L(0)])
    with pytest.raises(InvalidProof):
        verify_consistency(4, 8, KNOWN_ROOTS[4], KNOWN_ROOTS[8], [])


def test_bad_requests_raise_errors_with_hints() -> None:
    """Out-of-range indexes and sizes, and records passed as leaf hashes, are refused."""
    calls: list[Callable[[], object]] = [
        lambda: inclusion_proof(leaves(3), 3),
        lambda: inclusion_proof(leaves(3), -1),
        lambda: inclusion_proof([], 0),
        lambda: consistency_proof(leaves(3), 4),
        lambda: consistency_proof(leaves(3), -1),
        lambda: root([b"record"]),
    ]
    for call in calls:
        with pytest.raises(MerkleError) as caught:
            call()
        assert isinstance(caught.value, Error)
        assert caught.value.message
        assert caught.value.hint


def test_malformed_verifier_inputs_are_invalid_proofs() -> None:
    """Short hashes, an index past the size, a new size below the old one: all refused."""
    proof = inclusion_proof(leaves(8), 5)
    calls: list[Callable[[], None]] = [
        lambda: verify_inclusion(L(5)[:31], 5, 8, proof, KNOWN_ROOTS[8]),
        lambda: verify_inclusion(L(5), 5, 8, [*proof[:2], b"x"], KNOWN_ROOTS[8]),
        lambda: verify_inclusion(L(5), 5, 8, proof, KNOWN_ROOTS[8] + b"\x00"),
        lambda: verify_inclusion(L(5), 8, 8, proof, KNOWN_ROOTS[8]),
        lambda: verify_inclusion(L(0), 1, 1, [], KNOWN_ROOTS[1]),
        lambda: verify_inclusion(L(5), -1, 8, proof, KNOWN_ROOTS[8]),
        lambda: verify_inclusion(L(0), 0, 0, [], EMPTY_ROOT),
        lambda: verify_consistency(8, 5, KNOWN_ROOTS[8], KNOWN_ROOTS[5], []),
        lambda: verify_consistency(-1, 5, EMPTY_ROOT, KNOWN_ROOTS[5], []),
        lambda: verify_consistency(3, 7, KNOWN_ROOTS[3][:16], KNOWN_ROOTS[7], [L(2)]),
    ]
    for call in calls:
        with pytest.raises(InvalidProof) as caught:
            call()
        assert caught.value.hint


# Properties against the naive tree, on distinct leaves (with equal leaves a proof for
# one index can honestly verify at its mirror image).
sizes = st.integers(min_value=1, max_value=MAX_SIZE)
#: Fewer drawn sizes where every index or old size is checked, plus the edges of the
#: power-of-two boundaries, where the split moves.
EVERY = settings(PROPERTY, max_examples=min(8, settings().max_examples))


def at_boundaries(test: Callable[[int], None]) -> Callable[[int], None]:
    for size in (1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 127, 128, 129, 255, 256, 257, MAX_SIZE):
        test = example(size)(test)
    return test


@pytest.mark.slow  # every index (every old size) of trees up to 300 leaves, naive side by side
@EVERY
@given(sizes)
@at_boundaries
def test_root_and_every_inclusion_proof_match_the_naive_tree(size: int) -> None:
    """Every index's proof is the naive audit path and verifies against the root."""
    d = distinct(size)
    r = root(d)
    assert r == naive_root(d)
    for index in range(size):
        proof = inclusion_proof(d, index)
        assert proof == naive_path(index, d)
        verify_inclusion(d[index], index, size, proof, r)


@pytest.mark.slow  # every index (every old size) of trees up to 300 leaves, naive side by side
@EVERY
@given(sizes)
@at_boundaries
def test_every_consistency_proof_matches_the_naive_tree(size: int) -> None:
    """Every old size's proof is the naive subproof and verifies between the two roots."""
    d = distinct(size)
    roots = [naive_root(d[:m]) for m in range(size + 1)]
    for old in range(size + 1):
        proof = consistency_proof(d, old)
        assert proof == (naive_subproof(old, d, True) if 0 < old < size else [])
        verify_consistency(old, size, roots[old], roots[size], proof)


@st.composite
def trees_with_index(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size = draw(sizes)
    return distinct(size), draw(st.integers(0, size - 1))


@PROPERTY
@given(trees_with_index(), st.integers(min_value=0), st.data())
def test_any_altered_inclusion_proof_fails(
    tree: tuple[list[bytes], int], bit: int, data: st.DataObject
) -> None:
    """A flipped bit, another index, another size, a shorter or longer proof: each fails."""
    d, index = tree
    size, r = len(d), root(d)
    proof = inclusion_proof(d, index)
    verify_inclusion(d[index], index, size, proof, r)
    with pytest.raises(InvalidProof):
        verify_inclusion(flip(d[index], bit), index, size, proof, r)
    with pytest.raises(InvalidProof):
        verify_inclusion(d[index], index, size, proof, flip(r, bit))
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1), label="flipped element")
        altered = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
        with pytest.raises(InvalidProof):
            verify_inclusion(d[index], index, size, altered, r)
        with pytest.raises(InvalidProof, match="shorter"):
            verify_inclusion(d[index], index, size, proof[:-1], r)
    with pytest.raises(InvalidProof, match="longer"):
        verify_inclusion(d[index], index, size, [*proof, d[0]], r)
    if size > 1:
        other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index), label="index")
        with pytest.raises(InvalidProof):
            verify_inclusion(d[index], other, size, proof, r)
    # Another size, with that size's root (a checkpoint binds a size to its root).
    wrong = data.draw(st.integers(index + 1, MAX_SIZE + 1).filter(lambda n: n != size))
    grown = [*d, *distinct(MAX_SIZE + 1 - size, start=size)]
    with pytest.raises(InvalidProof):
        verify_inclusion(d[index], index, wrong, proof, root(grown[:wrong]))
    # Another size with this root: fails whenever that size's path has another length.
    if len(naive_path(index, grown[:wrong])) != len(proof):
        with pytest.raises(InvalidProof):
            verify_inclusion(d[index], index, wrong, proof, r)


@st.composite
def growing_trees(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size = draw(st.integers(min_value=2, max_value=MAX_SIZE))
    return distinct(size), draw(st.integers(1, size - 1))


@PROPERTY
@given(growing_trees(), st.integers(min_value=0), st.data())
def test_any_altered_consistency_proof_fails(
    tree: tuple[list[bytes], int], bit: int, data: st.DataObject
) -> None:
    """A flipped bit, other sizes, a shorter or longer proof: each fails."""
    d, old = tree
    new = len(d)
    old_root, new_root = root(d[:old]), root(d)
    proof = consistency_proof(d, old)
    verify_consistency(old, new, old_root, new_root, proof)
    with pytest.raises(InvalidProof):
        verify_consistency(old, new, flip(old_root, bit), new_root, proof)
    with pytest.raises(InvalidProof):
        verify_consistency(old, new, old_root, flip(new_root, bit), proof)
    at = data.draw(st.integers(0, len(proof) - 1), label="flipped element")
    altered = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
    with pytest.raises(InvalidProof):
        verify_consistency(old, new, old_root, new_root, altered)
    with pytest.raises(InvalidProof, match=r"shorter|cannot be empty"):
        verify_consistency(old, new, old_root, new_root, proof[:-1])
    with pytest.raises(InvalidProof):
        verify_consistency(old, new, old_root, new_root, proof[1:])
    with pytest.raises(InvalidProof, match="longer"):
        verify_consistency(old, new, old_root, new_root, [*proof, d[0]])
    # Other sizes, each with the root of its own tree over the same leaves.
    other_old = data.draw(st.integers(1, new).filter(lambda m: m != old), label="old size")
    with pytest.raises(InvalidProof):
        verify_consistency(other_old, new, root(d[:other_old]), new_root, proof)
    other_new = data.draw(st.integers(old, new - 1), label="new size")
    with pytest.raises(InvalidProof):
        verify_consistency(old, other_new, old_root, root(d[:other_new]), proof)
