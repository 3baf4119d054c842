"""IAM's wildcards: ``*`` any run of characters, ``?`` one character.

Matched by the classic two-pointer walk (backtracking only to the last ``*``), so a
template cannot make the scan slow: a pattern such as ``*?*?*?*?*#`` turned into a
regular expression backtracks exponentially (a 70-byte policy held the deploy gate
past its time limit), here it costs at most len(pattern) x len(text) steps. Patterns
longer than IAM allows anywhere (2,048 characters, an ARN's limit) are refused by the
caller's `too_long`.
"""

from __future__ import annotations

__all__ = ["MAX_PATTERN", "glob_covers", "glob_match", "has_wildcard", "too_long"]

#: IAM's own longest: a resource ARN (actions are at most 128).
MAX_PATTERN = 2048


def has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


def too_long(pattern: str) -> bool:
    return len(pattern) > MAX_PATTERN


def glob_match(pattern: str, text: str) -> bool:
    """`text` (taken literally) matches `pattern` (``*`` and ``?`` are wildcards)."""
    p = t = 0
    star = -1  # the position in `pattern` just after the last ``*`` seen
    resume = 0  # where in `text` that ``*`` is currently taken to end
    while t < len(text):
        if p < len(pattern) and pattern[p] == "*":
            while p < len(pattern) and pattern[p] == "*":
                p += 1
            star, resume = p, t
        elif p < len(pattern) and pattern[p] in ("?", text[t]):
            p += 1
            t += 1
        elif star >= 0:
            resume += 1
            p, t = star, resume
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


def glob_covers(outer: str, inner: str) -> bool:
    """Every string `inner` (itself a pattern) can match, `outer` matches too.

    Exact for a literal `inner`; for a wildcard `inner`, only the shapes that are surely
    covered count (``*``, or a literal prefix followed by ``*`` that `inner` starts with),
    and anything else is "not covered": a Deny is never taken to remove more than it
    surely does (``Resource: "?"`` does not cover ``*``).
    """
    if not has_wildcard(inner):
        return glob_match(outer, inner)
    if outer == "*" or outer.strip("*") == "":
        return True
    prefix = outer[:-1]
    return outer.endswith("*") and not has_wildcard(prefix) and inner.startswith(prefix)
