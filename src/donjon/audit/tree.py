"""The v2 log's signed head, and its state rebuilt at start.

The head row (store/tables.py `audit_head`, format 2) holds the tree's size and
root and an Ed25519 signature of the checkpoint body (origin, size, root, time)
made in the same transaction as the records it covers. At start the writer
reads every stored leaf hash once, rebuilds its Frontier and checks that it
ends at the signed head (about 0.3 s per 100k records): a writer never extends
a tree that is not the one it signed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, insert, select

from donjon.audit.checkpoint import Checkpoint, SigningKey, VerifierKey
from donjon.audit.errors import AuditError
from donjon.audit.frontier import Frontier
from donjon.audit.merkle import EMPTY_ROOT
from donjon.store.tables import audit_checkpoints, audit_head

__all__ = ["HEAD_FORMAT", "SignedHead", "TreeState", "as_bytes", "load_tree", "sign_head"]

HEAD_FORMAT = 2
_BATCH = 20_000


def as_bytes(value: object) -> bytes:
    """A column value as stored; tampering may have changed its SQL type (TEXT for BLOB)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


@dataclass(frozen=True)
class SignedHead:
    size: int
    root: bytes
    ts_ms: int
    signature: bytes

    def checkpoint(self, origin: str) -> Checkpoint:
        return Checkpoint(origin, self.size, self.root, self.ts_ms)

    def valid(self, key: VerifierKey) -> bool:
        return key.verify(self.checkpoint(key.origin).body(), self.signature)


def sign_head(key: SigningKey, size: int, root: bytes, ts_ms: int) -> SignedHead:
    body = Checkpoint(key.origin, size, root, ts_ms).body()
    return SignedHead(size, root, ts_ms, key.sign_body(body))


@dataclass
class TreeState:
    frontier: Frontier
    head: SignedHead
    #: The newest checkpoint's size and time; None: none yet.
    last_checkpoint: tuple[int, float] | None


def load_tree(engine: Engine, key: SigningKey, now_ms: int) -> TreeState:
    """The frontier and head of the stored log (a signed empty head for a new one)."""
    with engine.begin() as conn:
        row = conn.execute(select(audit_head).where(audit_head.c.id == 1)).first()
        if row is None:
            if conn.exec_driver_sql("SELECT seq FROM audit_log LIMIT 1").first() is not None:
                raise AuditError(
                    "the audit log has records but no signed head: it was tampered with",
                    hint="run `donjon audit verify`",
                )
            head = sign_head(key, 0, EMPTY_ROOT, now_ms)
            conn.execute(
                insert(audit_head).values(
                    id=1,
                    seq=0,
                    hash=EMPTY_ROOT,
                    mac=head.signature,
                    format=HEAD_FORMAT,
                    ts_ms=now_ms,
                )
            )
            return TreeState(Frontier(), head, None)
        if row.format != HEAD_FORMAT:
            raise AuditError(
                "the audit log is in the v1 format (a hash chain) and was not migrated",
                hint="start the node (`donjon serve`): it checks the v1 chain and migrates it",
            )
        head = SignedHead(int(row.seq), as_bytes(row.hash), int(row.ts_ms or 0), as_bytes(row.mac))
        frontier = Frontier()
        cursor = conn.exec_driver_sql("SELECT seq, hash FROM audit_log ORDER BY seq")
        while rows := cursor.fetchmany(_BATCH):
            leaves = []
            expected = frontier.size + 1
            for seq, stored in rows:
                if seq != expected:
                    raise AuditError(
                        f"audit record {expected} is missing: the log was tampered with",
                        hint="run `donjon audit verify`",
                    )
                leaf = stored if type(stored) is bytes else as_bytes(stored)
                if len(leaf) != 32:
                    raise AuditError(
                        f"audit record {seq}'s leaf hash is malformed: the log was tampered with",
                        hint="run `donjon audit verify`",
                    )
                leaves.append(leaf)
                expected += 1
            frontier.extend(leaves)
        last = conn.execute(
            select(audit_checkpoints.c.size, audit_checkpoints.c.ts)
            .order_by(audit_checkpoints.c.size.desc())
            .limit(1)
        ).first()
    if not head.valid(key.verifier):
        raise AuditError(
            "the audit log's head is not signed by this node's audit signing key",
            hint="restore DATA_DIR/audit-signing.key, or run `donjon audit verify`",
        )
    if head.size != frontier.size or head.root != frontier.root():
        raise AuditError(
            f"the audit log ({frontier.size} records) does not end at its signed head "
            f"({head.size} records): it was tampered with",
            hint="run `donjon audit verify`",
        )
    return TreeState(frontier, head, None if last is None else (int(last.size), float(last.ts)))
