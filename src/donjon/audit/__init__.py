"""The append-only, hash-chained audit log."""

from __future__ import annotations

from donjon.audit.chain import GENESIS, chain_hash, leaf_hash
from donjon.audit.log import AuditError, AuditEvent, AuditLog
from donjon.audit.verify import VerifyResult, verify_log

__all__ = [
    "GENESIS",
    "AuditError",
    "AuditEvent",
    "AuditLog",
    "VerifyResult",
    "chain_hash",
    "leaf_hash",
    "verify_log",
]
