"""Which triggers of a manifest would accept unauthenticated events, and which vault
secrets its triggers name: one definition for the deploy gate and the docs.

Every trigger authenticates its source or says why not (invariant 1). A trigger that
would run the function for anyone is refused at deploy unless an admin deploys it
with ``--unsafe-allow-public`` (audited, warned every time):

- a webhook without a `secret` (its deliveries could not be verified);
- an s3 trigger with ``source: push`` without a `secret` (its bearer token);
- an http trigger with ``auth: public`` and no ``limits.rate`` (anyone may call it,
  as often as they like: only the node's per-address bucket would slow them).
"""

from __future__ import annotations

from donjon.manifest.model import Manifest

__all__ = ["public_triggers", "trigger_secrets"]


def public_triggers(manifest: Manifest) -> list[str]:
    """Each trigger that would accept unauthenticated events, said as what and why."""
    out = [
        f"webhook {w.path} has no secret: its deliveries cannot be verified"
        for w in manifest.webhooks
        if w.secret is None
    ]
    out += [
        f"s3 push trigger {s.path} has no secret: anyone may push events to it"
        for s in manifest.storage_events
        if s.source == "push" and s.secret is None
    ]
    if manifest.limits.rate is None:
        out += [
            f"http trigger {h.path} is auth: public without limits.rate"
            for h in manifest.http_triggers
            if h.auth == "public"
        ]
    return out


def trigger_secrets(manifest: Manifest) -> list[str]:
    """The vault secrets the manifest's triggers name (the platform's, not the function's)."""
    names = [w.secret for w in manifest.webhooks if w.secret is not None]
    names += [s.secret for s in manifest.storage_events if s.secret is not None]
    names += [p.dsn for p in manifest.database_events]
    return sorted(set(names))
