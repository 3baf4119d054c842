"""A real SQLite audit log built by hand, and an independent RFC 6962 verifier.

The log is written the way the v2 writer stores it (records, their leaf hashes,
signed checkpoints), without the writer, so proofs and exports are tested on
exactly the rows they read. The verifier below is written from RFC 6962's
recursive definitions, not from donjon.audit.merkle, so the two check each other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from sqlalchemy import Engine, text

from donjon.audit.checkpoint import Checkpoint, SigningKey
from donjon.store import connect, create_schema


def h_leaf(data: bytes) -> bytes:
    return sha256(b"\x00" + data).digest()


def h_node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 2.1: MTH, recursively."""
    if not leaves:
        return sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _k(len(leaves))
    return h_node(mth(leaves[:k]), mth(leaves[k:]))


def path_root(leaf: bytes, m: int, n: int, path: Sequence[bytes]) -> bytes:
    """The root an audit path (bottom-up) leads to, by RFC 6962 2.1.1's recursion."""
    if n == 1:
        if path:
            raise ValueError("path too long")
        return leaf
    if not path:
        raise ValueError("path too short")
    k = _k(n)
    top, rest = path[-1], path[:-1]
    if m < k:
        return h_node(path_root(leaf, m, k, rest), top)
    return h_node(top, path_root(leaf, m - k, n - k, rest))


def subproof(m: int, leaves: Sequence[bytes], whole: bool = True) -> list[bytes]:
    """RFC 6962 2.1.2 SUBPROOF(m, D[n], b)."""
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = _k(n)
    if m <= k:
        return [*subproof(m, leaves[:k], whole), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def record_bytes(seq: int) -> bytes:
    body = {
        "action": "function.invoke",
        "actor": f"key:k{seq % 3}",
        "detail": {"request_id": f"r{seq}"},
        "outcome": "ok",
        "seq": seq,
        "target": "hello@1",
        "ts": 1_800_000_000.0 + seq,
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


@dataclass
class BuiltLog:
    engine: Engine
    key: SigningKey
    records: list[bytes]
    leaves: list[bytes]
    notes: dict[int, str]

    def add_checkpoint(self, size: int) -> str:
        cp = Checkpoint(self.key.origin, size, mth(self.leaves[:size]), 1_800_000_000_000 + size)
        note = self.key.sign(cp)
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO audit_checkpoints (size, root, ts, note) VALUES (:s, :r, :t, :n)"
                ),
                {"s": size, "r": cp.root, "t": cp.timestamp_ms / 1000, "n": note},
            )
        self.notes[size] = note
        return note


def build_log(path: Path, count: int, checkpoints: Sequence[int]) -> BuiltLog:
    """A SQLite file holding records 1..count and the checkpoints of these sizes."""
    engine = connect(f"sqlite:///{path}")
    create_schema(engine)
    records = [record_bytes(s) for s in range(1, count + 1)]
    leaves = [h_leaf(r) for r in records]
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO audit_log (seq, record, hash) VALUES (:s, :r, :h)"),
            [
                {"s": i + 1, "r": r, "h": h}
                for i, (r, h) in enumerate(zip(records, leaves, strict=True))
            ],
        )
    log = BuiltLog(engine, SigningKey.generate(), records, leaves, {})
    for size in checkpoints:
        log.add_checkpoint(size)
    return log
