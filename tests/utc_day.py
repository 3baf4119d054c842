"""Tests that spend a daily quota stay inside one UTC day.

A quota's count starts again at UTC midnight (gateway/quota_check.py): a test that
spends one and then expects its 429, or counts what it used, would see the count go
back to 0 if the day rolled over between two of its steps.
"""

from __future__ import annotations

import time

__all__ = ["clear_of_utc_midnight"]


def clear_of_utc_midnight(margin_s: float = 60.0) -> None:
    """Wait out the last `margin_s` seconds of the UTC day, if it is in them (and a
    second past midnight), so that a test shorter than `margin_s` runs in one day."""
    left = 86400 - time.time() % 86400
    if left < margin_s:
        time.sleep(left + 1)
