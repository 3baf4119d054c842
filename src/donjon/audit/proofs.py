"""Inclusion and consistency proofs of the audit log, and their offline check.

A proof file is a JSON object (docs/security.md, "Audit log v2: format,
checkpoints and proofs"):

    {"format": "donjon-inclusion-proof/1", "seq": 5, "record": "<record bytes>",
     "leaf_hash": "<hex>", "tree_size": 1000, "path": ["<hex>", ...],
     "checkpoint": "<signed note>"}
    {"format": "donjon-consistency-proof/1", "old_checkpoint": "<signed note>",
     "new_checkpoint": "<signed note>", "path": ["<hex>", ...]}

Building (`inclusion_document`, `consistency_document`) takes the roots folded
from the stored leaf hashes and a signed checkpoint; checking (`check_inclusion`,
`check_consistency`, `check_document`) needs only the document and the
verifier key: no node, no settings, no database. Every failure raises
`ProofInvalid` naming what does not hold; the checks never return a flag to
forget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from donjon import boundedjson
from donjon.audit import merkle
from donjon.audit.checkpoint import Checkpoint, CheckpointError, VerifierKey, open_checkpoint
from donjon.errors import Error

__all__ = [
    "CONSISTENCY_FORMAT",
    "INCLUSION_FORMAT",
    "Checked",
    "LogTampered",
    "ProofError",
    "ProofInvalid",
    "check_consistency",
    "check_document",
    "check_inclusion",
    "consistency_document",
    "hex_list",
    "inclusion_document",
    "open_note",
    "record_bytes",
]

INCLUSION_FORMAT = "donjon-inclusion-proof/1"
CONSISTENCY_FORMAT = "donjon-consistency-proof/1"
#: A path longer than this is no proof of a tree Donjon can hold (2**64 leaves).
MAX_PATH = 128


class ProofError(Error):
    """A proof could not be made or read."""

    title = "Audit proof error"


class LogTampered(ProofError):
    """The stored log no longer matches what its checkpoints signed: no proof is served."""

    title = "Audit log tampered"


class ProofInvalid(ProofError):
    """A proof, a checkpoint or an export does not show what it claims."""

    title = "Invalid audit proof"


@dataclass(frozen=True)
class Checked:
    """What a valid document showed, for a person to read."""

    kind: str
    summary: str


def _invalid(message: str, hint: str = "") -> ProofInvalid:
    return ProofInvalid(
        message,
        hint=hint or "the proof, its checkpoint or the log it came from was altered",
    )


def hex_list(hashes: Sequence[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


# -- building -----------------------------------------------------------------


def inclusion_document(
    seq: int,
    record: bytes,
    stored_leaf: bytes,
    root: bytes,
    path: Sequence[bytes],
    checkpoint: Checkpoint,
    note: str,
) -> dict[str, Any]:
    """The proof that record `seq` is in the tree of `checkpoint`.

    `stored_leaf` is the record's stored leaf hash, `root` the tree hash of the stored
    leaf hashes of records 1..checkpoint.size and `path` the audit path read from them
    (audit/prover.py folds them). The record must hash to its leaf and the leaves to the
    checkpoint's root, or the database no longer matches what was signed: refused
    rather than served.
    """
    size = checkpoint.size
    if not 1 <= seq <= size:
        raise ProofError(
            f"record {seq} is not in a checkpoint of {size}",
            hint="ask for a record the checkpoint covers",
        )
    leaf = merkle.leaf_hash(record)
    if leaf != stored_leaf:
        raise _tampered(f"record {seq} does not match its stored leaf hash")
    if root != checkpoint.root:
        raise _tampered(f"the stored leaves do not hash to the root of checkpoint {size}")
    return {
        "format": INCLUSION_FORMAT,
        "seq": seq,
        "record": record.decode(),
        "leaf_hash": leaf.hex(),
        "tree_size": size,
        "path": hex_list(path),
        "checkpoint": note,
    }


def consistency_document(
    roots: tuple[bytes, bytes],
    path: Sequence[bytes],
    old: Checkpoint,
    old_note: str,
    new: Checkpoint,
    new_note: str,
) -> dict[str, Any]:
    """The proof that the tree of `old` is a prefix of the tree of `new`.

    `roots` are the tree hashes of the stored leaf hashes of records 1..old.size and
    1..new.size, `path` the proof read from them: both roots must be the signed ones
    before the proof is served.
    """
    if old.size > new.size:
        raise ProofError(
            f"no consistency proof from size {old.size} to size {new.size}",
            hint="name the older checkpoint first",
        )
    if roots[0] != old.root:
        raise _tampered(f"the stored leaves do not hash to the root of checkpoint {old.size}")
    if roots[1] != new.root:
        raise _tampered(f"the stored leaves do not hash to the root of checkpoint {new.size}")
    return {
        "format": CONSISTENCY_FORMAT,
        "old_checkpoint": old_note,
        "new_checkpoint": new_note,
        "path": hex_list(path),
    }


def _tampered(message: str) -> LogTampered:
    return LogTampered(message, hint="the database was altered: run `donjon audit verify`")


# -- checking (offline) ---------------------------------------------------------


def open_note(note: object, key: VerifierKey, what: str = "the checkpoint") -> Checkpoint:
    """The checkpoint of a signed note, its signature checked against `key`."""
    if not isinstance(note, str):
        raise _invalid(f"{what} is not a signed note (text)")
    try:
        return open_checkpoint(note, key)
    except CheckpointError as e:
        raise _invalid(f"{what} is not validly signed by this key: {e.message}", e.hint) from e


def _field(doc: Mapping[str, Any], name: str, kind: type) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _invalid(
            f"the proof's {name!r} is missing or not {kind.__name__}",
            "a proof is what `donjon audit prove` or `consistency` printed, unchanged",
        )
    return value


def _hashes(doc: Mapping[str, Any], name: str) -> list[bytes]:
    raw = _field(doc, name, list)
    if len(raw) > MAX_PATH:
        raise _invalid(f"the proof's {name!r} has {len(raw)} hashes, more than a tree holds")
    return [_hex(h, f"{name}[{i}]") for i, h in enumerate(raw)]


def _hex(value: object, what: str) -> bytes:
    if isinstance(value, str) and len(value) == 2 * merkle.HASH_SIZE:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    raise _invalid(f"{what} is not a hex SHA-256 hash")


def record_bytes(record: str, what: str) -> bytes:
    """The UTF-8 bytes of a record carried as text; text no UTF-8 holds (a lone surrogate
    escape) is no record the node wrote."""
    try:
        return record.encode()
    except UnicodeEncodeError as e:
        raise _invalid(f"{what} is not UTF-8 text: it was edited") from e


def check_inclusion(doc: Mapping[str, Any], key: VerifierKey) -> Checked:
    """Check an inclusion proof document; raise ProofInvalid if it does not hold."""
    seq = _field(doc, "seq", int)
    record = record_bytes(_field(doc, "record", str), "the proof's record")
    size = _field(doc, "tree_size", int)
    path = _hashes(doc, "path")
    checkpoint = open_note(doc.get("checkpoint"), key)
    if size != checkpoint.size:
        raise _invalid(
            f"the proof is for a tree of {size} but its checkpoint is of {checkpoint.size}"
        )
    leaf = merkle.leaf_hash(record)
    if "leaf_hash" in doc and _hex(doc["leaf_hash"], "leaf_hash") != leaf:
        raise _invalid("the record does not hash to the proof's leaf_hash: the record was edited")
    try:
        body = boundedjson.loads(record)
    except (ValueError, boundedjson.JSONTooDeep) as e:
        raise _invalid("the record is not JSON: it was edited") from e
    if not isinstance(body, dict) or body.get("seq") != seq:
        raise _invalid(f"the record is not record {seq} (its own seq says otherwise)")
    try:
        merkle.verify_inclusion(leaf, seq - 1, size, path, checkpoint.root)
    except merkle.InvalidProof as e:
        raise _invalid(f"record {seq} is not in the signed tree of {size}: {e.message}") from e
    return Checked(
        "inclusion",
        f"record {seq} is in the log of {size} records signed by {checkpoint.origin}",
    )


def check_consistency(doc: Mapping[str, Any], key: VerifierKey) -> Checked:
    """Check a consistency proof document; raise ProofInvalid if it does not hold."""
    path = _hashes(doc, "path")
    old = open_note(doc.get("old_checkpoint"), key, "the old checkpoint")
    new = open_note(doc.get("new_checkpoint"), key, "the new checkpoint")
    if old.size > new.size:
        raise _invalid(f"the old checkpoint ({old.size}) is larger than the new one ({new.size})")
    try:
        merkle.verify_consistency(old.size, new.size, old.root, new.root, path)
    except merkle.InvalidProof as e:
        raise _invalid(
            f"the log of {new.size} records does not extend the log of {old.size}: {e.message}"
        ) from e
    return Checked(
        "consistency",
        f"the log of {new.size} records extends the log of {old.size} "
        f"(both signed by {new.origin}): nothing before record {old.size + 1} changed",
    )


def check_document(doc: object, key: VerifierKey) -> Checked:
    """Check a proof document of either format."""
    if not isinstance(doc, dict):
        raise _invalid("a proof is a JSON object")
    fmt = doc.get("format")
    if fmt == INCLUSION_FORMAT:
        return check_inclusion(doc, key)
    if fmt == CONSISTENCY_FORMAT:
        return check_consistency(doc, key)
    raise _invalid(
        f"unknown proof format {fmt!r}",
        f"this verifier reads {INCLUSION_FORMAT}, {CONSISTENCY_FORMAT} and audit exports",
    )
