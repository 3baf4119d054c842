"""Inclusion and consistency proofs from a real SQLite log, checked by two verifiers."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from donjon.audit.checkpoint import Checkpoint, SigningKey
from donjon.audit.proofs import (
    ProofError,
    ProofInvalid,
    check_consistency,
    check_document,
    check_inclusion,
)
from donjon.audit.prover import CheckpointNotFound, Prover, records_before
from proof_support import BuiltLog, build_log, h_leaf, mth, path_root, subproof

SIZES = (1, 5, 8, 13)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[BuiltLog]:
    built = build_log(tmp_path / "audit.db", 13, SIZES)
    yield built
    built.engine.dispose()


@pytest.fixture
def prover(log: BuiltLog) -> Prover:
    return Prover(log.engine, log.key.verifier)


def _independent_inclusion(doc: dict[str, Any], log: BuiltLog) -> None:
    seq, size = doc["seq"], doc["tree_size"]
    path = [bytes.fromhex(h) for h in doc["path"]]
    leaf = h_leaf(doc["record"].encode())
    assert path_root(leaf, seq - 1, size, path) == mth(log.leaves[:size])


def test_every_record_is_proved_against_every_checkpoint_covering_it(
    log: BuiltLog, prover: Prover
) -> None:
    """Each (record, covering checkpoint) proof passes Donjon's and the independent verifier."""
    for size in SIZES:
        for seq in range(1, size + 1):
            doc = prover.prove(seq, size)
            assert check_inclusion(doc, log.key.verifier).kind == "inclusion"
            _independent_inclusion(doc, log)
            assert doc["record"].encode() == log.records[seq - 1]


def test_prove_without_size_uses_the_newest_checkpoint(prover: Prover) -> None:
    """`prove SEQ` proves against the newest checkpoint that covers SEQ."""
    assert prover.prove(3)["tree_size"] == 13


def test_consistency_between_every_pair_of_checkpoints(log: BuiltLog, prover: Prover) -> None:
    """Every old/new pair proves, and its path is RFC 6962's SUBPROOF of the true leaves."""
    for old in SIZES:
        for new in SIZES:
            if old > new:
                continue
            doc = prover.consistency(old, new)
            check_consistency(doc, log.key.verifier)
            want = subproof(old, log.leaves[:new]) if old else []
            assert [bytes.fromhex(h) for h in doc["path"]] == want


def test_no_checkpoint_covering_the_record_is_a_clear_error(log: BuiltLog, prover: Prover) -> None:
    """A record past the newest checkpoint, or a size that is no checkpoint, is refused."""
    with log.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_checkpoints WHERE size = 13"))
    with pytest.raises(CheckpointNotFound, match="no checkpoint covers record 9"):
        prover.prove(9)
    # A record that is not in the log is named so, not "not covered yet".
    with pytest.raises(CheckpointNotFound, match="no record 99999: the log holds 13 records"):
        prover.prove(99999)
    with pytest.raises(CheckpointNotFound, match="no checkpoint of size 7"):
        prover.prove(3, 7)
    with pytest.raises(CheckpointNotFound, match="does not cover record 6"):
        prover.prove(6, 5)


def test_a_proof_is_not_served_from_an_edited_record(log: BuiltLog, prover: Prover) -> None:
    """An edited record no longer matches its leaf hash: no proof is made."""
    with log.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET record = :r WHERE seq = 4"), {"r": b'{"seq":4}'})
    with pytest.raises(ProofError, match="record 4 does not match its stored leaf hash"):
        prover.prove(4)


def test_a_proof_is_not_served_when_records_and_leaf_hashes_were_rewritten(
    log: BuiltLog, prover: Prover
) -> None:
    """A record rewritten with its leaf hash no longer hashes to the signed root."""
    forged = b'{"seq":4,"forged":true}'
    with log.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_log SET record = :r, hash = :h WHERE seq = 4"),
            {"r": forged, "h": h_leaf(forged)},
        )
    with pytest.raises(ProofError, match="do not hash to the root"):
        prover.prove(4)
    with pytest.raises(ProofError, match="do not hash to the root"):
        prover.consistency(5, 13)


def _flip(hex_hash: str) -> str:
    raw = bytearray(bytes.fromhex(hex_hash))
    raw[0] ^= 1
    return raw.hex()


def _inclusion_tampers(doc: dict[str, Any], other_key: SigningKey) -> Iterator[tuple[str, Any]]:
    def edited(**changes: Any) -> dict[str, Any]:
        out = copy.deepcopy(doc)
        out.update(changes)
        return out

    yield "flipped path hash", edited(path=[_flip(doc["path"][0]), *doc["path"][1:]])
    yield "truncated path", edited(path=doc["path"][:-1])
    yield "extended path", edited(path=[*doc["path"], doc["path"][0]])
    yield "other seq", edited(seq=doc["seq"] + 1)
    record = json.loads(doc["record"])
    record["outcome"] = "denied"
    forged = json.dumps(record, separators=(",", ":"), sort_keys=True)
    yield "edited record", edited(record=forged)
    yield (
        "edited record and leaf hash",
        edited(record=forged, leaf_hash=h_leaf(forged.encode()).hex()),
    )
    yield "other tree size", edited(tree_size=doc["tree_size"] + 1)
    note = doc["checkpoint"]
    lines = note.split("\n")
    yield "checkpoint size edited", edited(checkpoint="\n".join([lines[0], "12", *lines[2:]]))
    yield (
        "checkpoint signed by another key",
        edited(
            checkpoint=other_key.sign(Checkpoint(other_key.origin, doc["tree_size"], bytes(32), 1))
        ),
    )
    yield "no format", {k: v for k, v in doc.items() if k != "format"}
    yield "not an object", [doc]


def test_tampered_inclusion_proofs_are_refused(log: BuiltLog, prover: Prover) -> None:
    """Every alteration of an inclusion proof or its checkpoint is refused with a reason."""
    doc = prover.prove(6, 13)
    check_document(doc, log.key.verifier)
    for what, bad in _inclusion_tampers(doc, SigningKey.generate()):
        with pytest.raises(ProofInvalid) as caught:
            check_document(bad, log.key.verifier)
        assert caught.value.message, what


def test_a_proof_is_refused_under_another_key(prover: Prover) -> None:
    """The right proof checked against someone else's verifier key fails."""
    doc = prover.prove(6, 13)
    with pytest.raises(ProofInvalid, match="not validly signed"):
        check_document(doc, SigningKey.generate().verifier)


def test_tampered_consistency_proofs_are_refused(log: BuiltLog, prover: Prover) -> None:
    """Swapped checkpoints, flipped or cut paths and a forged new checkpoint are refused."""
    doc = prover.consistency(5, 13)
    key = log.key.verifier
    check_document(doc, key)
    swapped = {
        **doc,
        "old_checkpoint": doc["new_checkpoint"],
        "new_checkpoint": doc["old_checkpoint"],
    }
    flipped = {**doc, "path": [_flip(doc["path"][0]), *doc["path"][1:]]}
    cut = {**doc, "path": doc["path"][:-1]}
    other = {**doc, "old_checkpoint": log.notes[8]}
    # A checkpoint of a rewritten log, validly signed: no proof links it to the old one.
    forged_leaves = [*log.leaves[:4], h_leaf(b"forged"), *log.leaves[5:]]
    forged = log.key.sign(Checkpoint(log.key.origin, 13, mth(forged_leaves), 2))
    rewritten = {**doc, "new_checkpoint": forged}
    for bad in (swapped, flipped, cut, other, rewritten):
        with pytest.raises(ProofInvalid):
            check_document(bad, key)


def test_records_before_pages_back_through_the_log(log: BuiltLog) -> None:
    """`before` pages: each page holds the records just before the previous page."""
    seqs = [[r["seq"] for r in records_before(log.engine, b, 4)] for b in (None, 10, 3, 1)]
    assert seqs == [[10, 11, 12, 13], [6, 7, 8, 9], [1, 2], []]
