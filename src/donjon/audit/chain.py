"""Hashing of the chain, with RFC 6962 domain separation.

leaf_i  = SHA-256(0x00 || record_i)
chain_i = SHA-256(0x01 || chain_{i-1} || leaf_i),  chain_0 = 32 zero bytes

The head (last seq and chain hash) is kept beside the log with an HMAC under
a subkey of the master key, so truncating the log's tail is detected too.
"""

from __future__ import annotations

import hmac
from hashlib import sha256

__all__ = ["GENESIS", "chain_hash", "head_mac", "leaf_hash"]

GENESIS = bytes(32)


def leaf_hash(record: bytes) -> bytes:
    return sha256(b"\x00" + record).digest()


def chain_hash(previous: bytes, record: bytes) -> bytes:
    return sha256(b"\x01" + previous + sha256(b"\x00" + record).digest()).digest()


def head_mac(key: bytes, seq: int, head: bytes) -> bytes:
    return hmac.new(key, seq.to_bytes(8, "big") + head, sha256).digest()
