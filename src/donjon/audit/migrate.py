"""Migrating a v1 audit log (hash chain, HMAC'd head) to v2 (Merkle tree, signed head).

Done once, at the first start of a data dir made by an older Donjon: the v1
chain is checked in full with the master key's subkey first, and a log that
does not verify is refused with a clear error (never silently re-signed: that
would launder a tampered log). Then, in one transaction, each row's hash
becomes its leaf hash and the head becomes the signed head of the tree. The
caller then appends an `audit.migrate` record carrying the v1 head, so the new
tree vouches for the old chain's end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from hashlib import sha256

from sqlalchemy import Engine, text

from donjon.audit.chain import check_chain
from donjon.audit.checkpoint import SigningKey
from donjon.audit.errors import AuditError
from donjon.audit.frontier import Frontier
from donjon.audit.tree import HEAD_FORMAT, as_bytes, sign_head
from donjon.secret import Secret

__all__ = ["Migration", "migrate_v1"]

_UPDATE_LEAF = text("UPDATE audit_log SET hash = :hash WHERE seq = :seq")
_UPDATE_HEAD = text(
    "UPDATE audit_head SET seq = :seq, hash = :hash, mac = :mac, format = :format,"
    " ts_ms = :ts_ms WHERE id = 1"
)


@dataclass(frozen=True)
class Migration:
    """What a migration did: how many records, and the v1 chain's last hash."""

    records: int
    v1_head: bytes


def migrate_v1(engine: Engine, mac_key: Secret[bytes], key: SigningKey) -> Migration | None:
    """Migrate a v1 log to v2 in place; None when there is nothing to migrate."""
    with engine.begin() as conn:
        head_row = conn.exec_driver_sql(
            "SELECT seq, hash, mac, format FROM audit_head WHERE id = 1"
        ).first()
        if head_row is None or head_row[3] == HEAD_FORMAT:
            return None
        rows = [
            (int(seq), as_bytes(record), as_bytes(stored))
            for seq, record, stored in conn.exec_driver_sql(
                "SELECT seq, record, hash FROM audit_log ORDER BY seq"
            )
        ]
        head = (int(head_row[0]), as_bytes(head_row[1]), as_bytes(head_row[2]))
        check = check_chain(rows, head, mac_key.reveal())
        if not check.ok:
            raise AuditError(
                f"the v1 audit log does not verify, so it was not migrated to v2: "
                f"{check.reason} (record {check.bad_seq})",
                hint="find out what changed it (with the master key it was written under); "
                "Donjon will not re-sign a log it cannot vouch for",
            )
        frontier = Frontier()
        leaves = []
        for seq, record, _ in rows:
            leaf = sha256(b"\x00" + record).digest()
            frontier.append(leaf)
            leaves.append({"seq": seq, "hash": leaf})
        if leaves:
            conn.execute(_UPDATE_LEAF, leaves)
        now_ms = int(time.time() * 1000)
        signed = sign_head(key, frontier.size, frontier.root(), now_ms)
        conn.execute(
            _UPDATE_HEAD,
            {
                "seq": signed.size,
                "hash": signed.root,
                "mac": signed.signature,
                "format": HEAD_FORMAT,
                "ts_ms": now_ms,
            },
        )
    return Migration(check.records, check.head)
