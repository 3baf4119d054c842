"""LimitedCallers: who is over a limit of its own, for how long, and how many are kept."""

from __future__ import annotations

from donjon.gateway.limited_callers import MAX_KEPT, LimitedCallers


def test_a_callers_own_rate_covers_every_function_its_share_only_that_one() -> None:
    """Refused by its own rate: limited for every function; by its share of f's: for f
    alone; another caller is not limited; nothing is, before any refusal."""
    limited = LimitedCallers()
    assert not limited.limited("key:a", "f")
    limited.refused("key:a", None, 60)
    limited.refused("key:b", "f", 60)
    assert limited.limited("key:a", "f") and limited.limited("key:a", "g")
    assert limited.limited("key:b", "f") and not limited.limited("key:b", "g")
    assert not limited.limited("key:c", "f")


def test_a_refusal_ends_with_its_retry_after() -> None:
    """A refusal for no time at all limits nothing (its Retry-After is past)."""
    limited = LimitedCallers()
    limited.refused("key:a", None, 0)
    assert not limited.limited("key:a", "f")


def test_at_most_max_kept_the_oldest_refusal_goes_first() -> None:
    """Past MAX_KEPT callers, the one refused longest ago is forgotten (it counts again
    until its next refusal), the newest are kept, and the count stays bounded."""
    limited = LimitedCallers()
    for i in range(MAX_KEPT + 10):
        limited.refused(f"key:{i}", None, 60)
    assert not limited.limited("key:0", "f")
    assert limited.limited(f"key:{MAX_KEPT + 9}", "f")
    assert len(limited._until) == MAX_KEPT
    limited.refused("key:10", None, 60)  # refused again: now the newest
    for i in range(MAX_KEPT + 10, MAX_KEPT + 20):
        limited.refused(f"key:{i}", None, 60)
    assert limited.limited("key:10", "f") and not limited.limited("key:11", "f")


def test_expired_refusals_go_before_any_kept_one() -> None:
    """Full of refusals, some of them over: those go, none still running does, and the
    new refusal is kept under its own name."""
    limited = LimitedCallers()
    for i in range(MAX_KEPT):
        limited.refused(f"key:{i}", None, 0 if i % 2 else 60)
    limited.refused("key:new", "f", 60)
    assert limited.limited("key:new", "f") and limited.limited("key:0", "f")
    assert len(limited._until) == MAX_KEPT // 2 + 1
