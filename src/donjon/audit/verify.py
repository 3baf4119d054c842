"""Checking the whole chain: any edit, deletion, reordering or truncation shows."""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from sqlalchemy import Engine

from donjon.audit.chain import GENESIS, head_mac
from donjon.secret import Secret

__all__ = ["VerifyResult", "verify_log"]


@dataclass(frozen=True)
class _Head:
    seq: int
    hash: bytes
    mac: bytes


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    #: The first record found bad (its seq), when not ok.
    bad_seq: int | None = None
    reason: str = ""


def verify_log(engine: Engine, mac_key: Secret[bytes]) -> VerifyResult:
    """Recompute the chain from genesis and compare it with the signed head.

    The head and the records are read in one transaction, so a node appending
    meanwhile is seen at one instant (WAL gives the reader a snapshot).
    """
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if engine.dialect.name == "sqlite":
            cur.execute("BEGIN")
        cur.execute("SELECT seq, hash, mac FROM audit_head WHERE id = 1")
        found = cur.fetchone()
        head_row = (
            None
            if found is None
            else _Head(int(found[0]), _as_bytes(found[1]), _as_bytes(found[2]))
        )
        cur.execute("SELECT seq, record, hash FROM audit_log ORDER BY seq")
        expected_seq = 1
        prev = GENESIS
        count = 0
        while True:
            rows = cur.fetchmany(20000)
            if not rows:
                break
            for seq, raw_record, stored in rows:
                if seq != expected_seq:
                    return VerifyResult(
                        False,
                        count,
                        expected_seq,
                        f"record {expected_seq} is missing (next present is {seq})",
                    )
                record = _as_bytes(raw_record)
                h = sha256(b"\x01" + prev + sha256(b"\x00" + record).digest()).digest()
                if h != _as_bytes(stored):
                    return VerifyResult(False, count, seq, _why(seq, record))
                prev = h
                expected_seq += 1
                count += 1
        cur.close()
    finally:
        raw.rollback()
        raw.close()
    return _check_head(head_row, count, prev, mac_key.reveal())


def _check_head(head_row: _Head | None, count: int, prev: bytes, mac_key: bytes) -> VerifyResult:
    """Does the signed head vouch for exactly the `count` records ending in `prev`?"""
    if head_row is None:
        if count == 0:
            return VerifyResult(True, 0)
        return VerifyResult(False, count, 1, "the signed head of the log is missing")
    expected_mac = head_mac(mac_key, head_row.seq, head_row.hash)
    if not hmac.compare_digest(head_row.mac, expected_mac):
        return VerifyResult(False, count, int(head_row.seq), "the head's signature does not match")
    if head_row.seq > count:
        return VerifyResult(
            False,
            count,
            count + 1,
            f"the log was truncated: the head says {head_row.seq} records, {count} remain",
        )
    if head_row.seq < count:
        return VerifyResult(
            False,
            count,
            int(head_row.seq) + 1,
            "records after the signed head were not written by Donjon",
        )
    if head_row.hash != prev:
        return VerifyResult(
            False,
            count,
            None,
            "the chain does not end at the signed head: records were rewritten with new hashes",
        )
    return VerifyResult(True, count)


def _as_bytes(value: object) -> bytes:
    """Column values as stored; tampering may have changed their SQL type."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def _why(seq: int, record: bytes) -> str:
    try:
        body: Any = json.loads(record)
    except ValueError:
        return f"record {seq} is not valid JSON: it was edited"
    if isinstance(body, dict) and body.get("seq") != seq:
        return f"record {seq} holds the record of seq {body.get('seq')}: the log was reordered"
    return f"record {seq} does not match its hash: it was edited or a record before it changed"
