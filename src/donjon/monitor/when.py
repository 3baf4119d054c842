"""Reading a point in time as people write it: `--since 2h`, ISO 8601, or Unix seconds."""

from __future__ import annotations

import datetime
import math
import re

from donjon.errors import Error

__all__ = ["TimeError", "parse_since"]

_RELATIVE = re.compile(r"^(\d{1,9})([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_USAGE = (
    "a time: Unix seconds (1764547200), ISO 8601 (2025-12-01T09:00:00Z)"
    " or an age (90s, 15m, 2h, 7d)"
)


class TimeError(Error):
    """A time that cannot be read."""

    title = "Invalid time"


def parse_since(text: str, now: float) -> float:
    """Unix seconds of `text`: an age before `now` (`15m`), ISO 8601 (UTC without a
    zone), or Unix seconds."""
    raw = text.strip()
    if len(raw) > 64:
        raise TimeError("the time is too long", hint=_USAGE)
    m = _RELATIVE.match(raw)
    if m:
        return now - int(m.group(1)) * _UNIT_S[m.group(2)]
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or value < 0:
            raise TimeError(f"{raw!r} is not a time", hint=_USAGE)
        return value
    try:
        when = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise TimeError(f"{raw!r} is not a time", hint=_USAGE) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()
