"""The append-only audit log: an RFC 6962 Merkle tree with signed checkpoints (log v2)."""

from __future__ import annotations

from donjon.audit.chain import GENESIS, chain_hash, leaf_hash
from donjon.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    SigningKey,
    VerifierKey,
    open_checkpoint,
)
from donjon.audit.errors import AuditError
from donjon.audit.frontier import Frontier
from donjon.audit.log import AuditEvent, AuditLog
from donjon.audit.verify import VerifyResult, verify_log

__all__ = [
    "GENESIS",
    "AuditError",
    "AuditEvent",
    "AuditLog",
    "Checkpoint",
    "CheckpointError",
    "Frontier",
    "SigningKey",
    "VerifierKey",
    "VerifyResult",
    "chain_hash",
    "leaf_hash",
    "open_checkpoint",
    "verify_log",
]
