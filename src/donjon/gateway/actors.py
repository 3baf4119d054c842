"""Who a call's audit records name (one rule for admission, rate buckets, slots, quotas)."""

from __future__ import annotations

from donjon.identity import Principal

__all__ = ["actor_of"]


def actor_of(principal: Principal | None, trigger: str) -> str:
    """Who a call's records name: its principal, else `schedule` or `public`."""
    return principal.label if principal else ("schedule" if trigger == "schedule" else "public")
