"""Log v1: the linear hash chain, kept to verify a v1 log before it is migrated.

leaf_i  = SHA-256(0x00 || record_i)
chain_i = SHA-256(0x01 || chain_{i-1} || leaf_i),  chain_0 = 32 zero bytes

The v1 head (last seq and chain hash) carries an HMAC under a subkey of the
master key. Log v2 (audit/log.py) replaces the chain with an RFC 6962 tree and
the HMAC with Ed25519 signatures; audit/migrate.py checks a v1 log with
`check_chain` before it rewrites it.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import sha256

__all__ = ["GENESIS", "ChainCheck", "chain_hash", "check_chain", "head_mac", "leaf_hash"]

GENESIS = bytes(32)


def leaf_hash(record: bytes) -> bytes:
    return sha256(b"\x00" + record).digest()


def chain_hash(previous: bytes, record: bytes) -> bytes:
    return sha256(b"\x01" + previous + sha256(b"\x00" + record).digest()).digest()


def head_mac(key: bytes, seq: int, head: bytes) -> bytes:
    return hmac.new(key, seq.to_bytes(8, "big") + head, sha256).digest()


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    records: int
    bad_seq: int | None = None
    reason: str = ""
    #: The chain's last hash (the v1 head) when ok.
    head: bytes = GENESIS


def check_chain(
    rows: Iterable[tuple[int, bytes, bytes]], head: tuple[int, bytes, bytes] | None, mac_key: bytes
) -> ChainCheck:
    """Recompute the v1 chain over (seq, record, stored hash) rows in order, and compare
    it with the HMAC'd head (seq, hash, mac)."""
    expected, prev, count = 1, GENESIS, 0
    for seq, record, stored in rows:
        if seq != expected:
            return ChainCheck(False, count, expected, f"v1 record {expected} is missing")
        prev = chain_hash(prev, record)
        if not hmac.compare_digest(prev, stored):
            return ChainCheck(False, count, seq, f"v1 record {seq} does not match its chain hash")
        expected += 1
        count += 1
    if head is None:
        if count:
            return ChainCheck(False, count, 1, "the v1 head is missing")
        return ChainCheck(True, 0)
    seq, head_hash, mac = head
    if not hmac.compare_digest(mac, head_mac(mac_key, seq, head_hash)):
        return ChainCheck(False, count, seq, "the v1 head's HMAC does not match (master key?)")
    if seq != count or head_hash != prev:
        return ChainCheck(
            False, count, min(seq, count) + 1, f"the v1 head says {seq} records, {count} remain"
        )
    return ChainCheck(True, count, head=prev)
