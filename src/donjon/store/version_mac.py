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

Rows written before MACs: a node's first start with them MACs every row that has none,
then writes `DATA_DIR/versions-sealed`, outside the database (out of that writer's
reach); from then on a row without a MAC is one that lost it, and it is not served.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from donjon.secret import Secret

__all__ = ["SEALED_MARKER", "sealed", "version_mac", "write_sealed"]

#: The file, in the data dir, that says every version row has its MAC.
SEALED_MARKER = "versions-sealed"


def version_mac(
    key: Secret[bytes], name: str, version: int, digest: str, manifest: str, created_by: str
) -> str:
    """The row's MAC over what the node serves from it (hex)."""
    body = json.dumps([name, version, digest, manifest, created_by], ensure_ascii=True)
    return hmac.new(key.reveal(), body.encode(), hashlib.sha256).hexdigest()


def sealed(data_dir: Path) -> bool:
    """Whether every version row of this data dir's database was given its MAC."""
    return (data_dir / SEALED_MARKER).exists()


def write_sealed(data_dir: Path) -> None:
    """Record (durably) that every version row has its MAC."""
    path = data_dir / SEALED_MARKER
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        os.write(fd, b"every function version row carries its MAC (store/version_mac.py)\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
