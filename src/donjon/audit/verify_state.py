"""The incremental verifier's saved state: the newest checkpoint a verify passed.

`DATA_DIR/audit-verified.json` (0600) holds its size and Frontier, the verifier key it
was checked under and the root; `donjon audit verify --incremental` starts from it
(audit/verify.py). Written whole or not at all (a temporary file, fsynced, renamed), and
never through a link: the verifier may run as another user than the node's.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from donjon import boundedjson
from donjon.audit.checkpoint import VerifierKey
from donjon.audit.errors import AuditError
from donjon.audit.frontier import Frontier
from donjon.audit.merkle import MerkleError

__all__ = ["load_state", "save_state"]

_STATE_FORMAT = "donjon-audit-verified/1"


def load_state(path: Path, key: VerifierKey) -> Frontier:
    hint = "run `donjon audit verify` without --incremental once"
    try:
        data = boundedjson.loads(path.read_bytes())
    except FileNotFoundError:
        return Frontier()
    except (ValueError, boundedjson.JSONTooDeep):
        raise AuditError(f"{path} is not JSON", hint=hint) from None
    if not isinstance(data, dict) or data.get("format") != _STATE_FORMAT:
        raise AuditError(f"{path} is not a verify state file", hint=hint)
    if data.get("verifier_key") != str(key):
        raise AuditError(f"{path} was written for another verifier key", hint=hint)
    try:
        return Frontier.from_json(data)
    except MerkleError as e:
        raise AuditError(f"{path}: {e.message}", hint=hint) from None


def save_state(path: Path, key: VerifierKey, frontier: Frontier) -> None:
    state = {
        "format": _STATE_FORMAT,
        "verifier_key": str(key),
        "root": frontier.root().hex(),
        "verified_at": round(time.time(), 3),
        **frontier.to_json(),
    }
    tmp = path.with_name(path.name + ".tmp")
    # Whoever writes the data dir (the node's user) may have left a link of that name to a
    # file of the one who verifies: it is removed, and the new file made, never followed.
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # no half-written copy left beside the state
        raise
