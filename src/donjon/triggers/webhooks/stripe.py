"""Stripe's webhook signature: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]``,
each v1 an HMAC-SHA256 under the endpoint's secret of ``f"{t}.{raw body}"``.

The timestamp must be within 5 minutes of the node's clock. The event's id and type
are the body's ``id`` and ``type``, read only once the signature checked out; the
id is the replay cache's key (Stripe's retries of one event carry the same id).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

from donjon import boundedjson
from donjon.triggers.webhooks.interface import (
    TOLERANCE_S,
    BadDelivery,
    Verified,
    Verifier,
    any_matches,
    check_timestamp,
    check_token,
    header,
)

__all__ = ["StripeVerifier"]

#: At most this many v1 signatures are looked at (Stripe sends one per active secret).
_MAX_SIGNATURES = 8


class StripeVerifier(Verifier):
    scheme = "stripe"
    event_headers = ()
    reads_body = True

    def check(
        self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float
    ) -> Verified:
        raw_ts, offered = _parse(header(headers, "stripe-signature", 2048))
        ts = check_timestamp(raw_ts, now)
        signed = raw_ts.encode() + b"." + body
        expected = [
            hmac.new(secret.encode(), signed, hashlib.sha256).digest() for secret in secrets
        ]
        if not any_matches(expected, offered):
            raise BadDelivery("signature", "no v1 signature matches the body")
        return Verified("", "", float(ts + TOLERANCE_S))

    def read(self, signed: Verified, body: bytes) -> Verified:
        # Signed: now, and only now, is the body read.
        try:
            event = boundedjson.loads(body)
        except (ValueError, boundedjson.JSONTooDeep):
            raise BadDelivery("malformed", "the signed body is not a JSON event") from None
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            raise BadDelivery("malformed", "the signed body is not a Stripe event (no id)")
        kind = event.get("type")
        return Verified(
            check_token(event["id"], "event id"),
            check_token(kind, "event type") if isinstance(kind, str) else "",
            signed.remember_until,
        )


def _parse(value: str) -> tuple[str, list[bytes]]:
    """The header's timestamp and its v1 signatures (other schemes' entries ignored)."""
    ts: str | None = None
    offered: list[bytes] = []
    for item in value.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            raise BadDelivery("malformed", "Stripe-Signature must read t=<unix>,v1=<hex>")
        if key == "t":
            if ts is not None:
                raise BadDelivery("malformed", "Stripe-Signature names two timestamps")
            ts = val
        elif key == "v1" and len(offered) < _MAX_SIGNATURES:
            try:
                offered.append(bytes.fromhex(val))
            except ValueError:
                raise BadDelivery("malformed", "a v1 signature is not hex") from None
    if ts is None or not offered:
        raise BadDelivery("malformed", "Stripe-Signature needs t= and at least one v1=")
    return ts, offered
