"""Cheap gates in front of detect-secrets' detectors (speed only: the same findings).

Most lines that pass the secret scanner's first filter reach none of the detectors'
patterns, and running 25 detectors on each of them was most of a scan's time. Two gates
say when a detector family cannot match, from the detectors' own patterns:

- per file, `for_text`: each format detector's patterns are searched once in the file's
  lines joined by newlines, with MULTILINE so that ``^``/``$`` still mean a line's start
  and end; a detector none of whose patterns matches anywhere cannot match any one line
  (a joined text only adds matches that span lines, so the gate can open, never close,
  wrongly). A pattern whose meaning changes next to a newline (a negative look-behind, a
  negative look-ahead that a newline satisfies) keeps its detector on every line.
- per line, `for_line`: detect-secrets' keyword detector only reports a line holding one
  of its DENYLIST words (every one of its regexes embeds that alternation).

Before a file-level pattern is searched, the literal text any match of it must contain
(a run of literal characters, or an alternation of literal words, at the top level of
the pattern, read from its parsed form) is looked for with `in`: a pattern with
``(?:key|pwd|password|pass|token)`` in it cannot match a text holding none of those
words. Case-insensitive patterns are checked in the lower-cased text, ASCII text only
(the regex engine folds a few non-ASCII letters to ASCII ones; ``str.lower`` does not).
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from detect_secrets.plugins.base import BasePlugin, RegexBasedDetector
from detect_secrets.plugins.keyword import DENYLIST, KeywordDetector

__all__ = ["for_line", "for_text"]

#: The parsed form of a pattern (the standard library's own parser; untyped).
sre_parse: Any = importlib.import_module("re._parser")
sre_constants: Any = importlib.import_module("re._constants")
_KEYWORDS_ANY_CASE = re.compile("|".join(DENYLIST), re.IGNORECASE)
_KEYWORDS_LOWER = re.compile("|".join(DENYLIST))
#: A file-level pattern, and the words one of which each of its matches contains (None:
#: not known), lower-cased when the pattern ignores case.
_Gate = tuple[re.Pattern[str], frozenset[str] | None]
_GATES: dict[int, tuple[BasePlugin, list[_Gate] | None]] = {}


def _lookahead_bodies(pattern: str) -> list[str] | None:
    """The bodies of the negative look-aheads in `pattern`; None if it has a look-behind."""
    if "(?<!" in pattern:
        return None
    bodies = []
    for start in (m.end() for m in re.finditer(r"\(\?!", pattern)):
        depth, end = 1, start
        while end < len(pattern) and depth:
            depth += {"(": 1, ")": -1}.get(pattern[end], 0) if pattern[end - 1] != "\\" else 0
            end += 1
        bodies.append(pattern[start : end - 1])
    return bodies


def _multiline(pattern: re.Pattern[str]) -> re.Pattern[str] | None:
    """`pattern` for a joined text, or None when a newline beside a match changes it."""
    if not isinstance(pattern.pattern, str):
        return None
    bodies = _lookahead_bodies(pattern.pattern)
    try:
        if bodies is None or any(re.fullmatch(b, "\n", pattern.flags) for b in bodies):
            return None
        return re.compile(pattern.pattern, pattern.flags | re.MULTILINE)
    except re.error:
        return None


def _words(item: tuple[object, object]) -> list[str] | None:
    """The literal words a top-level item of a parsed pattern matches, if that is all."""
    op, arg = item
    if op is sre_constants.BRANCH and isinstance(arg, tuple):
        words = []
        for alt in arg[1]:
            if not alt or any(o is not sre_constants.LITERAL for o, _ in alt):
                return None
            words.append("".join(chr(c) for _, c in alt))
        return words
    if op is sre_constants.SUBPATTERN and isinstance(arg, tuple):
        _, added, removed, inner = arg
        if added or removed or len(inner) != 1:
            return None
        return _words(inner[0])
    return None


def _required(pattern: re.Pattern[str]) -> frozenset[str] | None:
    """Words one of which every match of `pattern` contains (lower-cased if it ignores
    case), the longest such set found at its top level; None if none is known."""
    try:
        parsed = list(sre_parse.parse(pattern.pattern, pattern.flags))
    except (re.error, TypeError, ValueError):
        return None
    found: list[list[str]] = []
    run = ""
    for item in [*parsed, (None, None)]:
        if item[0] is sre_constants.LITERAL and isinstance(item[1], int):
            run += chr(item[1])
            continue
        if run:
            found.append([run])
            run = ""
        words = _words(item) if item[0] is not None else None
        if words:
            found.append(words)
    found = [w for w in found if all(x and x.isascii() for x in w)]
    if not found:
        return None
    best = max(found, key=lambda w: min(len(x) for x in w))
    if pattern.flags & re.IGNORECASE:
        best = [x.lower() for x in best]
    return frozenset(best)


def _gate(plugin: BasePlugin) -> list[_Gate] | None:
    """The file-level patterns of a format detector (None: it runs on every line)."""
    known = _GATES.get(id(plugin))
    if known is None or known[0] is not plugin:  # detectors are not hashable: keyed by id
        patterns: list[_Gate] | None = []
        for pattern in getattr(plugin, "denylist", ()):
            multiline = _multiline(pattern)
            if multiline is None or patterns is None:
                patterns = None
                continue
            patterns.append((multiline, _required(multiline)))
        known = _GATES[id(plugin)] = (plugin, patterns)
    return known[1]


def _may_match(gate: _Gate, text: str, lower: str | None) -> bool:
    pattern, words = gate
    if words is not None:
        folded = bool(pattern.flags & re.IGNORECASE)
        where = lower if folded else text
        if where is not None and not any(w in where for w in words):
            return False
    return pattern.search(text) is not None


def for_text(plugins: tuple[BasePlugin, ...], text: str) -> tuple[BasePlugin, ...]:
    """The detectors that may match some line of `text` (lines joined by newlines)."""
    lower = text.lower() if text.isascii() else None
    kept = []
    for plugin in plugins:
        if isinstance(plugin, RegexBasedDetector):
            gate = _gate(plugin)
            if gate is not None and not any(_may_match(g, text, lower) for g in gate):
                continue
        kept.append(plugin)
    return tuple(kept)


def for_line(plugins: tuple[BasePlugin, ...], line: str) -> tuple[BasePlugin, ...]:
    """`plugins` without the keyword detector when `line` holds none of its words."""
    if line.isascii():
        possible = _KEYWORDS_LOWER.search(line.lower()) is not None
    else:  # str.lower() and the regex engine's case folding differ outside ASCII
        possible = _KEYWORDS_ANY_CASE.search(line) is not None
    if possible:
        return plugins
    return tuple(p for p in plugins if not isinstance(p, KeywordDetector))
