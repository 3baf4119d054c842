"""Redaction: a function's granted secret values taken out of what it printed.

Applied in the node to the captured stdout/stderr, the error line and the
trace of every call before any of it is stored or answered (gateway/invoke.py).
Each value is replaced by `[secret:NAME]` as it appears verbatim and in the
escaped forms a print of a `repr`, of JSON (ASCII or not: `ensure_ascii=False`),
of its UTF-8 bytes or of a URL or form holding it (percent-encoded, for a value
of at most `URL_FORM_MAX` characters) gives it. The texts reach the node already
cut (the runtime keeps the error line's first 2,000 characters, the trace's last
8,000 and the output's last 64 KiB), and a cut may fall inside a value: the error
line then ends with its first part and the trace begins with the rest, neither of
them the whole value. So a piece of a value at an edge of the text (or just after
a leading "[N earlier ... dropped]" note) is replaced too, from `PIECE`
characters on (half the value, if that is fewer, and at least 3). A value
repeating itself enough to put its first (or last) piece at more than
`MAX_TRIES` places near an edge is not searched further: the text from the
farthest such place to the edge is replaced (fail closed; the search was
quadratic in the value's length, and ran on the node's event loop). What it
cannot catch: a value the function transforms otherwise (base64, hashes,
reverses, splits) before printing, and the fewer than `PIECE` characters of a
value a cut leaves at an edge.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

__all__ = ["MAX_TRIES", "PIECE", "URL_FORM_MAX", "Redactor"]

#: The shortest piece of a value taken out where a cut left it at an edge of a text.
PIECE = 6
#: The most places near one edge where a piece of one value is tried (see above).
MAX_TRIES = 8
#: The longest value whose percent-encoded (URL) forms are replaced too (`_url_forms`).
URL_FORM_MAX = 1024
#: Each byte as `urllib.parse.quote` writes it: unreserved ones as they are, others %XX.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_IN_PART = tuple(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in range(256))
_IN_PATH = tuple("/" if b == ord("/") else text for b, text in enumerate(_IN_PART))
_IN_QUERY = tuple("+" if b == ord(" ") else text for b, text in enumerate(_IN_PART))
_URL_TABLES = (_IN_PATH, _IN_PART, _IN_QUERY)
#: The note a cap puts before what it kept (sandbox/runtime/call.py, gateway/calllog.py).
_DROPPED = re.compile(r"\[[0-9]+ earlier [a-z]+ dropped[^\]\n]*\]\n")


class Redactor:
    """Replaces each of `values` (name -> value), longest first, in any text it is given."""

    __slots__ = ("_edges", "_pairs")

    def __init__(self, values: Mapping[str, str]) -> None:
        pairs: dict[str, str] = {}
        for name, value in values.items():
            for form in _forms(value):
                if form:
                    pairs.setdefault(form, f"[secret:{name}]")
        self._pairs = sorted(pairs.items(), key=lambda p: -len(p[0]))
        #: (form, mark, its first and last pieces of the shortest length taken out at an edge)
        self._edges: list[tuple[str, str, str, str]] = []
        for form, mark in self._pairs:
            if len(form) > 3:
                least = max(3, min(PIECE, len(form) // 2))
                self._edges.append((form, mark, form[:least], form[-least:]))

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def __call__(self, text: str) -> str:
        for form, mark in self._pairs:
            if form in text:
                text = text.replace(form, mark)
        if not text:
            return text
        note = _DROPPED.match(text) if text[0] == "[" else None
        at = note.end() if note else 0
        for form, mark, head, tail in self._edges:
            if head in text[1 - len(form) :] and (end := _piece_at_end(text, form, head)):
                text = text[:-end] + mark
            if tail in text[at : at + len(form) - 1] and (
                start := _piece_at_start(text[at : at + len(form) - 1], form, tail)
            ):
                text = text[:at] + mark + text[at + start :]
        return text

    def __repr__(self) -> str:
        return f"Redactor({len(self._pairs)} forms)"


def _forms(value: str) -> tuple[str, ...]:
    """`value` and what a print of its `repr`, its JSON or its UTF-8 bytes shows of it,
    and the value percent-encoded as a URL or a form carries it (`quote`, `urlencode`)."""
    forms = (value, json.dumps(value)[1:-1], repr(value)[1:-1], *_url_forms(value))
    if value.isascii():  # JSON without ensure_ascii, and the bytes' repr, are the same
        return forms
    return (
        *forms,
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value.encode("utf-8", "surrogatepass"))[2:-1],
    )


def _url_forms(value: str) -> tuple[str, ...]:
    """`value` in a URL's path (`quote`, "/" kept), as one of its parts (`safe=""`) and in
    a query or form (`quote_plus`, as `urlencode` writes it), of its UTF-8 bytes: a logged
    URL is a print of these (an HTTP library's debug log prints every URL it fetches).
    No forms for a value longer than `URL_FORM_MAX` (a password, a token or an API key is
    shorter): each call's redactor is built on the node's event loop, and encoding
    4 x 64 KiB of values three ways took it 90 ms a call."""
    if len(value) > URL_FORM_MAX:
        return ()
    data = value.encode("utf-8", "surrogatepass")
    return tuple("".join(map(table.__getitem__, data)) for table in _URL_TABLES)


def _piece_at_end(text: str, form: str, head: str) -> int:
    """The length of the longest `form[:k]` (len(head) <= k < len(form)) that ends `text`;
    past MAX_TRIES places, all from the first place `head` is at."""
    first = at = text.find(head, max(0, len(text) - len(form) + 1))
    for _ in range(MAX_TRIES):
        if at < 0:
            return 0
        if form.startswith(text[at:]):
            return len(text) - at
        at = text.find(head, at + 1)
    return len(text) - first if at >= 0 else 0


def _piece_at_start(text: str, form: str, tail: str) -> int:
    """The length of the longest `form[-k:]` (len(tail) <= k < len(form)) that begins `text`
    (`text` is at most len(form) - 1 long); past MAX_TRIES places, all up to the end of
    the last place `tail` is at."""
    at = text.rfind(tail)
    last = at + len(tail)
    for _ in range(MAX_TRIES):
        if at < 0:
            return 0
        piece = at + len(tail)
        if form.endswith(text[:piece]):
            return piece
        at = text.rfind(tail, 0, piece - 1)
    return last if at >= 0 else 0
