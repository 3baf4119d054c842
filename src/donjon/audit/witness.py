"""What the verifier compares the records against: checkpoints and the signed head.

Checkpoints come from two places, the `audit_checkpoints` table and the
append-only file; each is opened with the verifier key (audit/checkpoint.py)
and its stored size and root must be the ones its signed note states. The
file is read BEFORE the database snapshot: the writer appends to it only after
its commit, so every checkpoint the file holds is then in the snapshot too, and
a checkpoint in the file beyond the database means a rollback, not a race.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from donjon.audit.checkpoint import CheckpointError, VerifierKey, open_checkpoint
from donjon.audit.checkpoints import CheckpointFile
from donjon.audit.tree import SignedHead

__all__ = ["Witnesses", "read_file_checkpoints", "read_table_checkpoints"]


@dataclass
class Witnesses:
    """Roots by tree size, from one source, with where each came from."""

    #: size -> (root, where: "the database" / "line N of the checkpoint file")
    roots: dict[int, tuple[bytes, str]] = field(default_factory=dict)
    #: Entries that are not validly signed, or whose fields disagree with their note.
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _as_bytes(value: object) -> bytes:
    """Column values as stored; tampering may have changed their SQL type."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def read_file_checkpoints(path: Path | None, key: VerifierKey) -> Witnesses:
    out = Witnesses()
    if path is None:
        return out
    if not path.exists():
        out.warnings.append(f"there is no checkpoint file at {path}")
        return out
    read = CheckpointFile(path).read()
    out.problems += read.problems
    out.warnings += read.warnings
    for line, entry in read.entries:
        where = f"line {line} of {path.name}"
        _add(out, where, entry["size"], entry["root"], entry["note"], key)
    return out


def read_table_checkpoints(rows: list[Any], key: VerifierKey) -> Witnesses:
    """(size, root, note) rows of audit_checkpoints."""
    out = Witnesses()
    for size, root, note in rows:
        where = f"the checkpoint row of size {size}"
        _add(out, where, int(size), _as_bytes(root).hex(), str(note), key)
    return out


def _add(
    out: Witnesses, where: str, size: int, root_hex: object, note: str, key: VerifierKey
) -> None:
    try:
        checkpoint = open_checkpoint(note, key)
    except CheckpointError as e:
        out.problems.append(f"{where} is not a checkpoint signed by this log's key: {e.message}")
        return
    if checkpoint.size != size or root_hex != checkpoint.root.hex():
        out.problems.append(
            f"{where} was edited: its size or root is not what its signed note says"
        )
        return
    seen = out.roots.get(size)
    if seen is not None and seen[0] != checkpoint.root:
        out.problems.append(
            f"{seen[1]} and {where} are two signed checkpoints of size {size} with different "
            "roots: the log was rolled back to an older copy and then written on"
        )
        return
    out.roots.setdefault(size, (checkpoint.root, where))


def read_head(row: Any) -> SignedHead | None:
    """The head row (seq, hash, mac, format, ts_ms) as a SignedHead; None if absent."""
    if row is None:
        return None
    return SignedHead(int(row[0]), _as_bytes(row[1]), int(row[4] or 0), _as_bytes(row[2]))
