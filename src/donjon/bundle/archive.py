"""Packing and unpacking bundles, and their content digest.

The digest is over the tree, not the archive: sha256 of the sorted lines
``path NUL mode NUL sha256(content)``, so the same files always give the
same digest however they were packed. Unpacking (unpack.py) accepts regular
files and directories only, within depth, count and size limits.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

from donjon.bundle.tree import walk_files
from donjon.errors import Error

__all__ = ["MAX_BUNDLE_BYTES", "BundleError", "pack", "tree_digest"]

#: The largest archive a deploy may send (the request body).
MAX_BUNDLE_BYTES = 256 * 1024 * 1024


class BundleError(Error):
    """A bundle is malformed, too large or unsafe."""

    status = 422
    title = "Invalid bundle"


def tree_digest(root: Path) -> str:
    """The content digest of the bundle tree under `root`."""
    outer = hashlib.sha256()
    for path in walk_files(root):
        rel = path.relative_to(root).as_posix()
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"{rel} is not a regular file")
        inner = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                inner.update(chunk)
        mode = "x" if st.st_mode & 0o111 else "-"
        outer.update(f"{rel}\0{mode}\0{inner.hexdigest()}\n".encode())
    return outer.hexdigest()


def pack(root: Path) -> bytes:
    """A deterministic tar.gz of the regular files under `root`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for path in walk_files(root):
            rel = path.relative_to(root).as_posix()
            if not path.is_file() or path.is_symlink():
                raise BundleError(f"{rel} is not a regular file (links are not allowed)")
            info = tarfile.TarInfo(rel)
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
