"""Each function version's row carries a MAC: a version the node did not write is not served.

A version's row says what the node runs under a function's name: its bundle's digest and
its manifest (grants, triggers and their auth, limits), all checked at deploy (the gate,
the deployer's right to each grant). Whoever can write the database but does not hold the
master key (a PostgreSQL server's admin, a restored or edited copy) could change a row:
grant the function another tenant's secrets, make a trigger public, point it at another
tree; the next start served it, unchecked. Each row now carries an HMAC-SHA256 (a
subkey of the master key, vault/master.py's `VERSION_MAC_PURPOSE`) of its name, version,
digest, manifest and deployer, written in the deploy's transaction, and a start serves a
current version only if its MAC matches; one that does not is skipped, logged and
audited (`function.load`, `skipped`: lifecycle/registry.py's `load_registry`), as any
record that does not load.

The `functions` row that points at a name's current version and names its owner carries
a MAC too (`pointer_mac`), written with every deploy: without it, that writer pointed a
function back at an older version (a public trigger or a grant a newer one dropped), put
a removed function back, or wrote another developer in as its owner, and each was served.
A row replayed whole (an old pointer and its MAC, from a backup) is the one rollback no
MAC can tell from the real thing: docs/security.md.

Rows written before MACs: a node's first start with them MACs every row that has none,
then writes `DATA_DIR/versions-sealed` (`DATA_DIR/functions-sealed` for the pointers),
outside the database (out of that writer's reach); from then on a row without a MAC is
one that lost it, and it is not served.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from donjon.durable import sync_directory
from donjon.secret import Secret

__all__ = [
    "POINTERS_SEALED",
    "SEALED_MARKER",
    "UNKNOWN_OWNER",
    "pointer_mac",
    "sealed",
    "version_mac",
    "write_sealed",
]

#: The file, in the data dir, that says every version row has its MAC.
SEALED_MARKER = "versions-sealed"
#: The file that says every `functions` row (current version, owner) has its MAC.
POINTERS_SEALED = "functions-sealed"
#: The owner of a function whose `functions` row's MAC fails: no principal's label (a
#: label is `kind:id`), so only a role free of owners (the admin) may deploy it again.
UNKNOWN_OWNER = "(unauthenticated)"


def version_mac(
    key: Secret[bytes], name: str, version: int, digest: str, manifest: str, created_by: str
) -> str:
    """The row's MAC over what the node serves from it (hex)."""
    return _mac(key, [name, version, digest, manifest, created_by])


def pointer_mac(key: Secret[bytes], name: str, version: int, owner: str | None) -> str:
    """The MAC of a `functions` row: the version it serves and its owner (hex)."""
    return _mac(key, ["current", name, version, owner or ""])


def _mac(key: Secret[bytes], fields: list[object]) -> str:
    """HMAC-SHA256 of `fields` as a JSON list (no field can run into the next one)."""
    body = json.dumps(fields, ensure_ascii=True)
    return hmac.new(key.reveal(), body.encode(), hashlib.sha256).hexdigest()


def sealed(data_dir: Path, marker: str = SEALED_MARKER) -> bool:
    """Whether every row `marker` stands for in this data dir's database has its MAC."""
    return (data_dir / marker).exists()


def write_sealed(data_dir: Path, marker: str = SEALED_MARKER) -> None:
    """Record (durably) that every row `marker` stands for has its MAC."""
    path = data_dir / marker
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        os.write(fd, f"every row {marker} stands for carries its MAC (version_mac.py)\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    sync_directory(data_dir)
