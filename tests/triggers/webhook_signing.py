"""Signing webhook deliveries as their senders do, for the tests: Standard Webhooks by
the `standardwebhooks` package (an implementation independent of Donjon's), GitHub's
and Stripe's by hand from their documented formats."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import time

from standardwebhooks import Webhook

__all__ = ["github_headers", "new_whsec", "standard_headers", "stripe_headers"]


def new_whsec() -> str:
    """A fresh Standard Webhooks secret, as senders hand them out."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def standard_headers(
    secret: str, body: bytes, msg_id: str | None = None, ts: float | None = None
) -> dict[str, str]:
    msg_id = msg_id or f"msg_{secrets.token_hex(8)}"
    when = dt.datetime.fromtimestamp(int(ts if ts is not None else time.time()), tz=dt.UTC)
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def github_headers(
    secret: str, body: bytes, delivery: str | None = None, event: str = "push"
) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "x-hub-signature-256": f"sha256={digest}",
        "x-github-delivery": delivery or secrets.token_hex(16),
        "x-github-event": event,
        "content-type": "application/json",
        "user-agent": "GitHub-Hookshot/test",
    }


def stripe_headers(secret: str, body: bytes, ts: float | None = None) -> dict[str, str]:
    t = str(int(ts if ts is not None else time.time()))
    digest = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"stripe-signature": f"t={t},v1={digest}", "content-type": "application/json"}
