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
"""

from __future__ import annotations

import re

from detect_secrets.plugins.base import BasePlugin, RegexBasedDetector
from detect_secrets.plugins.keyword import DENYLIST, KeywordDetector

__all__ = ["for_line", "for_text"]

_KEYWORDS_ANY_CASE = re.compile("|".join(DENYLIST), re.IGNORECASE)
_KEYWORDS_LOWER = re.compile("|".join(DENYLIST))
_GATES: dict[int, tuple[BasePlugin, list[re.Pattern[str]] | None]] = {}


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


def _gate(plugin: BasePlugin) -> list[re.Pattern[str]] | None:
    """The file-level patterns of a format detector (None: it runs on every line)."""
    known = _GATES.get(id(plugin))
    if known is None or known[0] is not plugin:  # detectors are not hashable: keyed by id
        patterns: list[re.Pattern[str]] | None = []
        for pattern in getattr(plugin, "denylist", ()):
            multiline = _multiline(pattern)
            if multiline is None or patterns is None:
                patterns = None
                continue
            patterns.append(multiline)
        known = _GATES[id(plugin)] = (plugin, patterns)
    return known[1]


def for_text(plugins: tuple[BasePlugin, ...], text: str) -> tuple[BasePlugin, ...]:
    """The detectors that may match some line of `text` (lines joined by newlines)."""
    kept = []
    for plugin in plugins:
        if isinstance(plugin, RegexBasedDetector):
            gate = _gate(plugin)
            if gate is not None and not any(p.search(text) for p in gate):
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
