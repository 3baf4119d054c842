"""Who a call's audit records name (one rule for admission, rate buckets, slots, quotas)."""

from __future__ import annotations

from donjon.identity import Principal

__all__ = ["actor_of"]

#: Triggers whose calls, having no principal, are recorded under the trigger's kind.
_SOURCES = frozenset({"schedule", "webhook", "s3", "postgres"})


def actor_of(principal: Principal | None, trigger: str) -> str:
    """Who a call's records name: its principal, else the event source's trigger kind
    (`schedule`, `webhook`, `s3`, `postgres`), else `public`."""
    if principal is not None:
        return principal.label
    return trigger if trigger in _SOURCES else "public"
