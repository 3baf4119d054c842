"""JSON for the runtime through `_json`, the C half of the `json` package.

`json.loads` and `json.dumps` (indent None, the only form the runtime uses)
already run `_json`'s scanner and encoder; the package around them compiles
six regular expressions and builds its decoder and encoder classes at
import, about 4.7 M instructions (callgrind) of every sandbox start, before
the first worker exists. This module makes the same scanner and encoder
from `_json` directly, with the same settings as `json`'s defaults, and
imports nothing else: what it reads and writes is what `json.loads` and
`json.dumps` read and write (bytes in UTF-8, -16 or -32, as json detects
them). A function's own `import json` is untouched. Its encoders are made once
per setting, not per document as json.dumps makes them (a warm worker encodes
two documents a call): an encoder is taken while it writes, so an encoding
that runs code which encodes meanwhile gets a new one, and its markers (the
circular-reference check) are cleared after each document, failed or not.

Errors are json's: `ValueError` for what is not one JSON document (the
scanner raises json's own `JSONDecodeError` from inside if `json` is
imported, or `loads` raises a plain `ValueError` where json would raise that
subclass; also for a document nested past the recursion limit, where json
raises `RecursionError`), `TypeError` for a
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

__all__ = ["dumps", "loads", "quote"]

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


#: Encoders not in use, each with its markers (the ids it is inside, for circular
#: references), by (compact, allow_nan): made once, not per document.
_idle: dict[tuple[bool, bool], tuple[_json.make_encoder, dict[int, object]]] = {}


def _encoder(
    item_separator: str, key_separator: str, allow_nan: bool
) -> tuple[_json.make_encoder, dict[int, object]]:
    markers: dict[int, object] = {}  # circular references are checked, as json.dumps does
    encoder = _json.make_encoder(
        markers,
        _no_json_form,
        _json.encode_basestring_ascii,
        None,
        key_separator,
        item_separator,
        False,
        False,
        allow_nan,
    )
    return encoder, markers


def _encoding(data: bytes) -> str:
    """The encoding json.loads reads `data` in (json.detect_encoding's rules: RFC 8259's
    UTF-8, UTF-16 and UTF-32, by their byte order marks or their zero bytes)."""
    if b"\x00" < data[:1] < b"\x80" and data[1:2] != b"\x00":
        return "utf-8"  # an ASCII first byte starts no byte order mark; no zero second byte
    if data.startswith((b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")):
        return "utf-32"
    if data.startswith((b"\xfe\xff", b"\xff\xfe")):
        return "utf-16"
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if len(data) >= 4:
        if not data[0]:
            return "utf-16-be" if data[1] else "utf-32-be"
        if not data[1]:
            return "utf-16-le" if data[2] or data[3] else "utf-32-le"
    elif len(data) == 2:
        if not data[0]:
            return "utf-16-be"
        if not data[1]:
            return "utf-16-le"
    return "utf-8"


def loads(data: bytes | str) -> Any:
    """The value of the one JSON document `data`, as json.loads reads it."""
    if isinstance(data, bytes):
        # ASCII first, no zero second: no byte order mark, UTF-8 (_encoding, at no call).
        plain = b"\x00" < data[:1] < b"\x80" and data[1:2] != b"\x00"
        text = data.decode("utf-8" if plain else _encoding(data), "surrogatepass")
    elif data.startswith("\ufeff"):
        raise ValueError("Unexpected UTF-8 BOM (decode using utf-8-sig): char 0")
    else:
        text = data
    start = 0
    if text[:1] in _WHITESPACE:  # the empty text too: the scanner then says so
        start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as e:
        raise ValueError(f"Expecting value: char {e.value}") from None
    except SystemError:
        # The scanner raises json.decoder's JSONDecodeError, looked up in sys.modules
        # only: where `json` was never imported (the supervisor) it returns NULL instead.
        raise ValueError("not one JSON document") from None
    except RecursionError:  # json lets it through: a worker's report must not end us
        raise ValueError("nested too deeply") from None
    if end != len(text) and text[end:].lstrip(_WHITESPACE):
        raise ValueError(f"Extra data: char {end}")
    return value


#: A str as its JSON string, as dumps writes it (ASCII, escaped as json.dumps escapes).
quote = _json.encode_basestring_ascii


def dumps(obj: Any, *, compact: bool = False, allow_nan: bool = True) -> str:
    """`obj` as JSON text, as json.dumps(obj) (`compact`: separators "," and ":")."""
    if isinstance(obj, str):
        return quote(obj)
    # An idle encoder of these settings, or a new one: a document whose encoding runs the
    # function's code (a dict subclass's `items`) may encode another meanwhile.
    settings = (compact, allow_nan)
    taken = _idle.pop(settings, None)
    if taken is None:
        item, key = (",", ":") if compact else (", ", ": ")
        taken = _encoder(item, key, allow_nan)
    encoder, markers = taken
    try:
        return "".join(encoder(obj, 0))
    finally:
        markers.clear()  # a failed encoding can leave ids in it (json makes new markers)
        _idle[settings] = taken
