"""Packing and unpacking bundles, and their content digest.

The digest is over the tree, not the archive: sha256 of the sorted lines
``path NUL mode NUL sha256(content)``, so the same files always give the
same digest however they were packed. Unpacking accepts regular files and
directories only, within size and count limits.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path, PurePosixPath

from donjon.errors import Error

__all__ = ["BundleError", "pack", "tree_digest", "unpack"]

MAX_BUNDLE_BYTES = 256 * 1024 * 1024
MAX_FILES = 20_000


class BundleError(Error):
    """A bundle is malformed, too large or unsafe."""

    status = 422
    title = "Invalid bundle"


def _files(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            out.append(Path(dirpath, name))
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def tree_digest(root: Path) -> str:
    """The content digest of the bundle tree under `root`."""
    outer = hashlib.sha256()
    for path in _files(root):
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
        for path in _files(root):
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


def unpack(data: bytes, dest: Path) -> None:
    """Unpack a bundle archive into the empty directory `dest`, safely."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"bundle archive is larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115 - closed below
    except tarfile.TarError as e:
        raise BundleError(f"not a tar archive: {e}") from e
    with tar:
        total = 0
        members: list[tarfile.TarInfo] = []
        try:
            for member in tar:
                name = PurePosixPath(member.name)
                if member.name.startswith("/") or ".." in name.parts or not name.parts:
                    raise BundleError(f"unsafe path in bundle: {member.name!r}")
                if not (member.isfile() or member.isdir()):
                    raise BundleError(f"{member.name}: only regular files and directories allowed")
                total += member.size
                if total > MAX_BUNDLE_BYTES or len(members) >= MAX_FILES:
                    raise BundleError(
                        f"bundle unpacks to more than {MAX_BUNDLE_BYTES} bytes or {MAX_FILES} files"
                    )
                # What the "data" extraction filter does, for Pythons that lack it
                # (before 3.11.4): no special bits, no owner taken from the archive.
                member.mode = (member.mode & 0o755) | (0o700 if member.isdir() else 0o600)
                member.uid = member.gid = 0
                member.uname = member.gname = ""
                members.append(member)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, numeric_owner=True, filter="data")
            else:
                # members were checked above: regular files and directories, safe names
                tar.extractall(dest, members=members, numeric_owner=True)  # noqa: S202  # nosec B202
        except (tarfile.TarError, OSError, EOFError) as e:
            raise BundleError(f"cannot unpack bundle: {e}") from e
