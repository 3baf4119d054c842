"""Text from outside made safe for a terminal: one gate for the CLI and the reports.

What Donjon shows people was often written by others: request paths, key names,
a function's output, a bundle's file names. `printable` shows as escapes the C0
and C1 control characters, DEL, the Unicode characters that reorder or break
lines (bidirectional overrides, U+2028/2029) and lone surrogates, so no escape
sequence (window title, OSC 52 clipboard write, erased line, cursor move)
reaches the terminal, no carriage return or newline in a one-line field makes a
line of its own, and no character the terminal's encoding cannot write ends the
command. It adds nothing: colours a caller adds around it stay its own.
"""

from __future__ import annotations

import re

__all__ = ["printable", "printable_json"]

#: Past C0: DEL, C1, bidirectional embeddings, overrides and isolates, the line and
#: paragraph separators, and lone surrogates (text decoded from a JSON \\ud800 escape:
#: no terminal encoding can write one, so it would end the command).
_BEYOND_C0 = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
#: C0 (but tab and newline, decided by the caller) and the rest.
_UNSAFE = re.compile(f"[\x00-\x08\x0a-\x1f{_BEYOND_C0}]")
_UNSAFE_BUT_NEWLINE = re.compile(f"[\x00-\x08\x0b-\x1f{_BEYOND_C0}]")
#: In JSON text these can only stand inside strings, where \\u escapes mean the same.
_UNSAFE_IN_JSON = re.compile(f"[{_BEYOND_C0}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object, *, multiline: bool = False) -> str:
    """`value` as text safe for a terminal: controls shown as \\xNN (\\n kept if `multiline`)."""
    text = value if isinstance(value, str) else str(value)
    return (_UNSAFE_BUT_NEWLINE if multiline else _UNSAFE).sub(_escape, text)


def printable_json(text: str) -> str:
    """JSON text from outside, safe for a terminal and still the same JSON when it was JSON.

    Valid JSON holds C0 controls only as escapes, except CR (and tab, newline)
    as whitespace between tokens; other controls can only stand inside strings,
    where a \\u escape means the same. Text that is not JSON is escaped as text.
    """
    text = _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text.replace("\r", " "))
    return printable(text, multiline=True)
