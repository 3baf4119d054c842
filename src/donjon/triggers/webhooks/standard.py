"""The Standard Webhooks signature (standardwebhooks.com): ``webhook-id``,
``webhook-timestamp`` and ``webhook-signature: v1,<base64> [v1,<base64> ...]``, each
an HMAC-SHA256 of ``f"{id}.{timestamp}.{raw body}"`` under the base64-decoded secret
(the vault value ``whsec_<base64>``).

The timestamp must be within 5 minutes of the node's clock; `webhook-id` is the
replay cache's key. The event type is the body's ``type`` when it is a JSON object
naming one (read only once the signature checked out).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import replace

from donjon import boundedjson
from donjon.triggers.webhooks.interface import (
    TOLERANCE_S,
    BadDelivery,
    Verified,
    Verifier,
    WebhookMisconfigured,
    any_matches,
    check_timestamp,
    check_token,
    header,
)

__all__ = ["StandardVerifier", "signing_key"]

_PREFIX = "whsec_"
_MAX_SIGNATURES = 8


def signing_key(value: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the prefix is optional)."""
    raw = value.strip().removeprefix(_PREFIX)
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise WebhookMisconfigured(
            "the webhook's secret is not a Standard Webhooks key",
            hint="set it to whsec_<base64 of random bytes>: `donjon secret rotate NAME`",
        )
    return key


class StandardVerifier(Verifier):
    scheme = "standard"
    event_headers = ("webhook-id", "webhook-timestamp")
    reads_body = True

    def check(
        self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float
    ) -> Verified:
        msg_id = check_token(header(headers, "webhook-id"), "webhook-id")
        raw_ts = header(headers, "webhook-timestamp", 32)
        offered = _signatures(header(headers, "webhook-signature"))
        ts = check_timestamp(raw_ts, now)
        signed = f"{msg_id}.{raw_ts}.".encode() + body
        expected = [
            hmac.new(signing_key(secret), signed, hashlib.sha256).digest() for secret in secrets
        ]
        if not any_matches(expected, offered):
            raise BadDelivery("signature", "no v1 signature matches the body")
        return Verified(msg_id, "", float(ts + TOLERANCE_S))

    def read(self, signed: Verified, body: bytes) -> Verified:
        return replace(signed, event_type=_event_type(body))


def _signatures(value: str) -> list[bytes]:
    """The v1 signatures of the header (entries of other versions ignored)."""
    out: list[bytes] = []
    for item in value.split():
        version, sep, sig = item.partition(",")
        if not sep:
            raise BadDelivery("malformed", "webhook-signature must read v1,<base64>")
        if version != "v1" or len(out) >= _MAX_SIGNATURES:
            continue
        try:
            out.append(base64.b64decode(sig, validate=True))
        except (binascii.Error, ValueError):
            raise BadDelivery("malformed", "a v1 signature is not base64") from None
    if not out:
        raise BadDelivery("malformed", "webhook-signature holds no v1 signature")
    return out


def _event_type(body: bytes) -> str:
    """The body's ``type``, if it is a JSON object naming a short one; else ""."""
    try:
        event = boundedjson.loads(body)
    except (ValueError, boundedjson.JSONTooDeep):
        return ""
    kind = event.get("type") if isinstance(event, dict) else None
    if isinstance(kind, str) and 0 < len(kind) <= 255 and kind.isprintable() and " " not in kind:
        return kind
    return ""
