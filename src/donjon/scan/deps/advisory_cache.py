"""A compact cache of the parsed advisory database, keyed by the digest of its source.

Parsing 3,000 YAML records takes about a second; the fields a scan needs, written once as
one JSON document, load in a tenth of that. The cache file is named after the SHA-256 of
every source file's path and content (and the cache format), so any change to the
database, even one that keeps sizes and times, misses the cache and the source is parsed
again. The cache is an optimisation only: a missing, unreadable or malformed cache file
is ignored (and rewritten), a cache directory that cannot be written is skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["CACHE_FORMAT", "cache_dir_for", "read_cache", "source_digest", "write_cache"]

#: Bumped whenever the compact record changes shape.
CACHE_FORMAT = 1
_PREFIX = "advisories-"
_KEEP = 2  # cache files kept per directory (the current one and the one before)


def cache_dir_for(data_dir: Path) -> Path:
    """Where a node's data directory keeps the parsed advisory database."""
    return data_dir / "cache" / "advisories"


def _walk(top: str) -> Iterator[os.DirEntry[str]]:
    """Regular files under `top`, symbolic links not followed (one scandir per directory)."""
    with os.scandir(top) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(entry.path)
        elif entry.is_file(follow_symlinks=False):
            yield entry


def source_digest(path: Path, max_bytes: int) -> str:
    """SHA-256 over the relative path and content of every file the source is read from
    (zips, and OSV records under `max_bytes`), and the cache format."""
    digest = hashlib.sha256(f"donjon-advisories/{CACHE_FORMAT}\0".encode())
    if path.is_file():
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()
    base = len(str(path)) + 1
    for entry in _walk(str(path)):
        suffix = os.path.splitext(entry.name)[1]
        if suffix not in (".zip", ".json", ".yaml", ".yml"):
            continue
        with open(entry.path, "rb") as f:
            data = f.read() if suffix == ".zip" else f.read(max_bytes)
        if suffix != ".zip" and len(data) >= max_bytes:
            continue  # skipped by the loader too
        digest.update(entry.path[base:].encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def _cache_file(cache_dir: Path, digest: str) -> Path:
    return cache_dir / f"{_PREFIX}{digest[:40]}.json"


def read_cache(cache_dir: Path, digest: str) -> list[dict[str, Any]] | None:
    """The compact records cached for `digest`, or None when there are none to trust."""
    try:
        data = json.loads(_cache_file(cache_dir, digest).read_bytes())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(data, dict)
        or data.get("format") != CACHE_FORMAT
        or data.get("digest") != digest
        or not isinstance(data.get("records"), list)
        or not all(isinstance(r, dict) for r in data["records"])
    ):
        return None
    return list(data["records"])


def write_cache(cache_dir: Path, digest: str, records: list[dict[str, Any]]) -> None:
    """Store `records` for `digest` atomically (owner-only), dropping older cache files."""
    body = json.dumps(
        {"format": CACHE_FORMAT, "digest": digest, "records": records}, separators=(",", ":")
    ).encode()
    try:
        cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-", suffix=".json", dir=cache_dir)
    except OSError:
        return  # a read-only data directory: scans still work, without the cache
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        os.replace(tmp, _cache_file(cache_dir, digest))
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return
    old = sorted(
        (p for p in cache_dir.glob(f"{_PREFIX}*.json") if p != _cache_file(cache_dir, digest)),
        key=lambda p: p.stat().st_mtime,
    )
    for stale in old[: max(len(old) - (_KEEP - 1), 0)]:
        with contextlib.suppress(OSError):
            stale.unlink()
