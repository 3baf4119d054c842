"""JSON from outside, parsed with a bound on nesting that holds before the parser recurses.

`json.loads` recurses once per level of nesting: `"[" * 100000` ends in a
RecursionError wherever it is parsed. `loads` here measures the nesting first,
with a linear scan (regular expressions and C-level iteration, no recursion),
and refuses anything deeper than `MAX_DEPTH` before `json.loads` sees it.

`loads(..., finite=True)` also refuses what `json.loads` takes that is no JSON
(RFC 8259): the constants ``NaN``, ``Infinity`` and ``-Infinity``, and a number too
large for a float (``1e999``, which json makes infinite). An event checked against an
input_schema is read so: NaN fails no ``minimum`` or ``maximum`` comparison, so it
would pass any numeric bound and reach the handler as NaN.

The scan agrees with `json.loads` on every valid prefix of the input (it skips
string literals exactly as JSON defines them), so the depth json would reach
is never more than the depth measured here. It runs on the decoded text, as
json does, so no encoding (UTF-16 turns some characters into quote bytes) can
hide a bracket.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

from donjon.errors import Error

__all__ = [
    "MAX_DEPTH",
    "JSONTooDeep",
    "check_depth",
    "finite_float",
    "loads",
    "refuse_constant",
]

#: Levels of arrays and objects accepted. Far beyond what events need, far below
#: what json.loads can take at any stack depth of the gateway (~1000 frames).
MAX_DEPTH = 128

#: A string literal, or what is left of an unterminated one (to the end: json
#: parses nothing after it). Unrolled, so it is linear and never backtracks.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
#: What `json.loads` parses with when given no options (its own default decoder's).
_DECODER = json.JSONDecoder()


def refuse_constant(name: str) -> Any:
    """A `json.JSONDecoder` ``parse_constant`` refusing NaN, Infinity and -Infinity."""
    raise ValueError(f"{name} is not a JSON number")


def finite_float(text: str) -> float:
    """A `json.JSONDecoder` ``parse_float`` refusing a number no float holds (``1e999``)."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is out of range (no JSON number is infinite)")
    return value


#: `_DECODER`, refusing NaN, Infinity, -Infinity and numbers a float cannot hold.
_FINITE_DECODER = json.JSONDecoder(parse_constant=refuse_constant, parse_float=finite_float)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


class JSONTooDeep(Error):
    """JSON nested deeper than the platform parses."""

    title = "Bad request"


def _utf8(data: bytes | str) -> bytes:
    """`data` as UTF-8, where quotes, backslashes and brackets are single ASCII bytes."""
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")
    encoding = json.detect_encoding(data)  # what json.loads does with bytes
    if encoding == "utf-8":
        return data
    return data.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")


def check_depth(data: bytes, max_depth: int = MAX_DEPTH) -> None:
    """Raise `JSONTooDeep` if UTF-8 `data` nests arrays/objects deeper than `max_depth`."""
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return  # the common case: too few brackets to be too deep, two C-level counts
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    # The running depth; once it falls back to 0 json.loads stops parsing, so
    # the maximum over everything is an upper bound of the depth json reaches.
    depth = max(accumulate(map(_STEP.__getitem__, brackets)), default=0)
    if depth > max_depth:
        raise JSONTooDeep(
            f"the JSON is nested deeper than {max_depth} levels", hint="flatten the structure"
        )


def loads(data: bytes | str, max_depth: int = MAX_DEPTH, *, finite: bool = False) -> Any:
    """`json.loads(data)`, refusing nesting deeper than `max_depth` (`JSONTooDeep`) and, when
    `finite`, the non-finite numbers json takes and JSON has not (ValueError).

    Malformed JSON raises ValueError (or UnicodeDecodeError, a ValueError) as json does.
    """
    decoder = _FINITE_DECODER if finite else _DECODER
    if isinstance(data, str):
        check_depth(_utf8(data), max_depth)
        return decoder.decode(data)
    # One UTF-8 byte order mark is dropped by the decoding `_utf8` detects (utf-8-sig), as
    # json.loads(bytes) drops it, and no more: a second is not JSON there, nor here (nor in
    # the function's runtime, which reads the body as json.loads does: jsonwire.py).
    # Taken as it is where `json.detect_encoding` would answer UTF-8 (no call): no byte
    # order mark starts with an ASCII byte, and no NUL in the first two (UTF-16 or 32).
    utf8 = data if len(data) > 1 and 0 < data[0] < 0x80 and data[1] else _utf8(data)
    check_depth(utf8, max_depth)
    # What json.loads(data) parses: `data` decoded as detected (once, in `_utf8`).
    return decoder.decode(utf8.decode("utf-8", "surrogatepass"))
