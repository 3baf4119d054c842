"""Unpacking a bundle archive from an untrusted deployer, within limits checked as it goes.

The archive is read as one stream, member by member, and each member is
checked before anything of it is written: its name (no absolute path, no
``..``, at most MAX_DEPTH levels, MAX_NAME_BYTES per component), its type
(regular files and directories only) and its declared size against what is
left of the unpacked budget. The budget is MAX_UNPACKED_BYTES, and no more
than UNPACK_RATIO times the archive's own size beyond a small floor, so a
compression bomb is refused on its first large member. The decompressed
stream itself is bounded too, headers included.

Every error names the member (shortened), never a path on this host.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
import threading
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from donjon.bundle.archive import MAX_BUNDLE_BYTES, BundleError

__all__ = [
    "MAX_DEPTH",
    "MAX_MEMBERS",
    "MAX_META_BYTES",
    "MAX_UNPACKED_BYTES",
    "UNPACK_RATIO",
    "unpack",
]

MAX_UNPACKED_BYTES = 256 * 1024 * 1024
#: Beyond RATIO_FLOOR bytes, a bundle unpacks to at most this many times its archive.
UNPACK_RATIO = 50
RATIO_FLOOR = 16 * 1024 * 1024
MAX_MEMBERS = 20_000
MAX_DEPTH = 32
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 1024
#: Tar headers, long-name records and padding allowed on top of the contents.
_HEADER_ALLOWANCE = MAX_MEMBERS * 2048
_CHUNK = 1 << 20
_FILE_TYPES = frozenset({tarfile.REGTYPE, tarfile.AREGTYPE})
_CORRUPT = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)
#: Extended (pax) headers and GNU long-name records: what a bundle needs is a long
#: path or two, never megabytes, and tarfile reads and parses each one whole, in
#: Python, before any member check could run.
MAX_META_BYTES = 64 * 1024
_META_TYPES = frozenset(
    {
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
    }
)
#: Such headers in a row before the member they describe: a real archive has at most a
#: global and a member's pax header, or a GNU long name and long link. tarfile reads the
#: header after each one by calling itself, so thousands in a row (13 KB gzipped) ended
#: the deploy in a RecursionError, a 500.
MAX_META_RUN = 8
#: The headers read in a row so far, on this thread (each unpack runs on one thread).
_meta_run = threading.local()


class _BoundedTarInfo(tarfile.TarInfo):
    """A header whose metadata records are refused past MAX_META_BYTES before they are read,
    and past MAX_META_RUN of them in a row.

    `fromtarfile` is tarfile's own three steps (read a block, parse it, process the
    member), with the size check between the second and the third; the extended
    header's processing reads the member after it through this method too.
    """

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> _BoundedTarInfo:
        fileobj: Any = tarfile_.fileobj
        buf = fileobj.read(tarfile.BLOCKSIZE)
        obj = cls.frombuf(buf, tarfile_.encoding, tarfile_.errors)
        run: int = getattr(_meta_run, "count", 0)
        if obj.type in _META_TYPES:
            if obj.size > MAX_META_BYTES:
                raise tarfile.HeaderError(
                    f"an extended or long-name header of {obj.size} bytes "
                    f"(at most {MAX_META_BYTES})"
                )
            if run >= MAX_META_RUN:
                raise tarfile.HeaderError(
                    f"more than {MAX_META_RUN} extended or long-name headers in a row"
                )
            _meta_run.count = run + 1
        obj.offset = fileobj.tell() - tarfile.BLOCKSIZE
        try:
            # tarfile's own third step (private, unchanged since Python 3.2):
            member: _BoundedTarInfo = obj._proc_member(tarfile_)  # type: ignore[attr-defined]  # private in tarfile
        finally:
            _meta_run.count = run
        return member


def unpack(data: bytes, dest: Path) -> None:
    """Unpack a bundle archive (tar, optionally gz/bz2/xz) into the empty directory `dest`."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"bundle archive is larger than {MAX_BUNDLE_BYTES} bytes")
    budget = min(MAX_UNPACKED_BYTES, max(RATIO_FLOOR, UNPACK_RATIO * len(data)))
    stream = _Bounded(_decompressor(data), budget + _HEADER_ALLOWANCE)
    try:
        tar = tarfile.open(  # noqa: SIM115 - closed below
            fileobj=stream, mode="r|", tarinfo=_BoundedTarInfo
        )
    except _CORRUPT as e:
        raise BundleError(f"not a tar archive: {_reason(e)}") from e
    except OSError as e:  # a decompressor's complaint
        raise BundleError(f"not a tar archive: {_reason(e)}") from e
    writer = _Writer(dest, budget)
    with tar:
        try:
            for member in tar:
                writer.add(tar, member)
        except _CORRUPT as e:
            raise BundleError(
                f"cannot read the bundle archive: {_reason(e)}",
                hint="send a tar.gz made by `donjon deploy`",
            ) from e


class _Writer:
    """Writes checked members under `dest`, keeping count of members and bytes."""

    def __init__(self, dest: Path, budget: int) -> None:
        self.dest = dest
        self.budget = budget
        self.members = 0
        self.total = 0
        self.dirs: set[PurePosixPath] = {PurePosixPath()}

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise BundleError(
                f"the bundle has more than {MAX_MEMBERS} members",
                hint="vendor fewer dependencies, or split the function",
            )
        rel = _checked_name(member.name)
        shown = _shown(member.name)
        try:
            if member.type == tarfile.DIRTYPE:
                self._mkdirs(rel, shown)
            elif member.type in _FILE_TYPES:
                left = self.budget - self.total
                if member.size > left:
                    raise BundleError(
                        f"{shown}: {member.size} bytes would take the bundle past "
                        f"{self.budget} bytes unpacked",
                        hint=f"a bundle unpacks to at most {MAX_UNPACKED_BYTES} bytes, and to "
                        f"at most {UNPACK_RATIO} times its archive's size beyond "
                        f"{RATIO_FLOOR} bytes",
                    )
                self._mkdirs(rel.parent, shown)
                self.total += self._write(tar, member, rel, shown)
            else:
                raise BundleError(f"{shown}: only regular files and directories are allowed")
        except OSError as e:
            if e.errno is None:  # a decompressor's complaint, not the file system's
                raise BundleError(f"cannot read the bundle archive: {_reason(e)}") from e
            raise BundleError(f"{shown}: cannot unpack ({os.strerror(e.errno)})") from e

    def _mkdirs(self, rel: PurePosixPath, shown: str) -> None:
        for d in [*reversed(rel.parents), rel]:
            if d in self.dirs:
                continue
            try:
                os.mkdir(self.dest / d, 0o700)
            except FileExistsError:
                raise BundleError(
                    f"{shown}: {_shown(str(d))} is both a file and a directory in the archive"
                ) from None
            self.dirs.add(d)

    def _write(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, rel: PurePosixPath, shown: str
    ) -> int:
        if rel in self.dirs:
            raise BundleError(f"{shown} is both a file and a directory in the archive")
        mode = 0o700 if member.mode & 0o111 else 0o600
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.dest / rel, flags, mode)
        except FileExistsError:
            raise BundleError(f"{shown} appears twice in the archive") from None
        source = tar.extractfile(member)
        written = 0
        with os.fdopen(fd, "wb") as out:
            while written < member.size and source is not None:
                chunk = source.read(min(_CHUNK, member.size - written))
                if not chunk:
                    raise BundleError(f"{shown}: the archive ends inside this member")
                out.write(chunk)
                written += len(chunk)
        return written


def _checked_name(name: str) -> PurePosixPath:
    shown = _shown(name)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as e:
        # tarfile reads names with surrogateescape; every later step (the digest, the
        # scan's report, the store) writes them as UTF-8 and failed with a 500.
        raise BundleError(
            f"{shown}: a member's name is not UTF-8", hint="rename the file in UTF-8"
        ) from e
    if len(name.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise BundleError(f"{shown}: a member's path is longer than {MAX_PATH_BYTES} bytes")
    path = PurePosixPath(name)
    if name.startswith("/") or ".." in path.parts or not path.parts:
        raise BundleError(f"unsafe path in bundle: {shown}")
    if len(path.parts) > MAX_DEPTH:
        raise BundleError(
            f"{shown} is {len(path.parts)} levels deep; a bundle's paths are "
            f"at most {MAX_DEPTH} levels deep"
        )
    for part in path.parts:
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise BundleError(
                f"{shown}: a file or directory name is longer than {MAX_NAME_BYTES} bytes"
            )
    return path


def _shown(name: str, limit: int = 80) -> str:
    """A member's name as errors show it: quoted and shortened."""
    return repr(name if len(name) <= limit else f"{name[: limit // 2]}...{name[-limit // 2 :]}")


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno is not None:
        return os.strerror(e.errno)  # never e.filename: errors name no host path
    return str(e)[:200] or type(e).__name__


def _decompressor(data: bytes) -> io.BufferedIOBase:
    raw = io.BytesIO(data)
    if data.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if data.startswith(b"BZh"):
        return bz2.BZ2File(raw, mode="rb")
    if data.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw, mode="rb")
    return raw


class _Bounded(io.RawIOBase):
    """Reads from `inner`, refusing to yield more than `limit` bytes in all."""

    def __init__(self, inner: io.BufferedIOBase, limit: int) -> None:
        self._inner = inner
        self._left = limit
        self._limit = limit

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        want = self._left + 1 if size < 0 else min(size, self._left + 1)
        data = self._inner.read(want)
        self._left -= len(data)
        if self._left < 0:
            raise BundleError(
                f"the bundle unpacks to more than {self._limit} bytes",
                hint=f"a bundle unpacks to at most {MAX_UNPACKED_BYTES} bytes",
            )
        return data
