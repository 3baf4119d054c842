"""JSON for the runtime through `_json`, the C half of the `json` package.

`json.loads` and `json.dumps` (indent None, the only form the runtime uses)
already run `_json`'s scanner and encoder; the package around them compiles
six regular expressions and builds its decoder and encoder classes at
import, about 4.7 M instructions (callgrind) of every sandbox start, before
the first worker exists. This module makes the same scanner and encoder
from `_json` directly, with the same settings as `json`'s defaults, and
imports nothing else: what it reads (UTF-8) and writes is what `json.loads`
and `json.dumps` read and write. A function's own `import json` is untouched.

Errors are json's: `ValueError` for what is not one JSON document (the
scanner raises json's own `JSONDecodeError` from inside, or `loads` raises a
plain `ValueError` where json would raise that subclass), `TypeError` for a
value with no JSON form, `ValueError` for a circular reference or, with
`allow_nan=False`, a float out of range.

Imports nothing from donjon (this runs inside the sandbox).
"""

from __future__ import annotations

import _json

#: Not typing's: importing typing costs a sandbox start 3-8 ms (mypy reads this as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["dumps", "loads"]

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Context:
    """What `_json.make_scanner` reads of a decoder: json.JSONDecoder's defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]  # a duck-typed context


def _no_json_form(obj: object) -> Any:
    raise TypeError(f"Object of type {obj.__class__.__name__} is not JSON serializable")


def _encoder(item_separator: str, key_separator: str, allow_nan: bool) -> _json.make_encoder:
    return _json.make_encoder(
        {},  # circular references are checked, as json.dumps does by default
        _no_json_form,
        _json.encode_basestring_ascii,
        None,
        key_separator,
        item_separator,
        False,
        False,
        allow_nan,
    )


def loads(data: bytes | str) -> Any:
    """The value of the one JSON document `data` (UTF-8 when bytes), as json.loads."""
    text = data.decode("utf-8", "surrogatepass") if isinstance(data, bytes) else data
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as e:
        raise ValueError(f"Expecting value: char {e.value}") from None
    if text[end:].lstrip(_WHITESPACE):
        raise ValueError(f"Extra data: char {end}")
    return value


def dumps(obj: Any, *, compact: bool = False, allow_nan: bool = True) -> str:
    """`obj` as JSON text, as json.dumps(obj) (`compact`: separators "," and ":")."""
    if isinstance(obj, str):
        return _json.encode_basestring_ascii(obj)
    item, key = (",", ":") if compact else (", ", ": ")
    return "".join(_encoder(item, key, allow_nan)(obj, 0))
