"""Sizes written in a manifest: ``512KiB``, ``2MiB``, ``1048576B``; parsed strictly.

One integer (no sign, no leading zero, no fraction, no space) and one unit of
B, KiB or MiB, case as written here. Anything else is refused rather than
guessed: ``1mb`` or ``1.5MiB`` could mean several things, a body limit must
mean one.
"""

from __future__ import annotations

import functools
import re

__all__ = ["DEFAULT_BODY_BYTES", "MAX_SIZE_BYTES", "format_size", "parse_size"]

#: A function's request body limit when its manifest says none (`limits.body`).
DEFAULT_BODY_BYTES = 1024 * 1024
#: No size a manifest writes is larger than this (a node's maximum is lower anyway).
MAX_SIZE_BYTES = 1024 * 1024 * 1024

_SIZE_RE = re.compile(r"^([1-9][0-9]{0,9})(B|KiB|MiB)$")
_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 * 1024}


@functools.lru_cache(maxsize=256)
def parse_size(text: str) -> int:
    """The number of bytes `text` names; ValueError if it is not ``<int>B|KiB|MiB`` in range."""
    m = _SIZE_RE.fullmatch(text)
    if m is None:
        raise ValueError(
            f"a size must look like 512KiB, 2MiB or 4096B (a whole number and B, KiB or MiB), "
            f"got {text[:64]!r}"
        )
    size = int(m.group(1)) * _UNITS[m.group(2)]
    if size > MAX_SIZE_BYTES:
        raise ValueError(f"the size {text} is over {format_size(MAX_SIZE_BYTES)}")
    return size


def format_size(size: int) -> str:
    """`size` bytes as a person reads it: ``1 MiB``, ``512 KiB``, ``1000 B``."""
    for unit in ("MiB", "KiB"):
        scale = _UNITS[unit]
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"
