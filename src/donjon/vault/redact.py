"""Redaction: a function's granted secret values taken out of what it printed.

Applied in the node to the captured stdout/stderr, the error line and the
trace of every call before any of it is stored or answered (gateway/invoke.py).
Each value is replaced by `[secret:NAME]` as it appears verbatim and in the
escaped forms a print of a `repr` or of JSON gives it. What it cannot catch:
a value the function transforms (encodes, reverses, splits) before printing,
and the part of a value cut at the start of the kept 64 KiB output tail.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

__all__ = ["Redactor"]


class Redactor:
    """Replaces each of `values` (name -> value), longest first, in any text it is given."""

    __slots__ = ("_pairs",)

    def __init__(self, values: Mapping[str, str]) -> None:
        pairs: dict[str, str] = {}
        for name, value in values.items():
            for form in (value, json.dumps(value)[1:-1], repr(value)[1:-1]):
                if form:
                    pairs.setdefault(form, f"[secret:{name}]")
        self._pairs = sorted(pairs.items(), key=lambda p: -len(p[0]))

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def __call__(self, text: str) -> str:
        for form, mark in self._pairs:
            if form in text:
                text = text.replace(form, mark)
        return text

    def __repr__(self) -> str:
        return f"Redactor({len(self._pairs)} forms)"
