"""GitHub's webhook signature: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret,
raw body)>``, the delivery's id in ``X-GitHub-Delivery`` and its event in
``X-GitHub-Event``.

GitHub signs no timestamp, so a captured delivery stays valid forever: the replay
cache (kept DONJON_WEBHOOK_REPLAY_TTL_S, 7 days by default) is the only defence
against a replay, and a delivery replayed after that is accepted. GitHub does not
sign its delivery id either, so the cache remembers the signed body's digest, not
the id: a captured delivery sent again under a fresh X-GitHub-Delivery is still a
replay (two deliveries with byte-identical bodies are taken for one).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

from donjon.triggers.webhooks.interface import (
    BadDelivery,
    Verified,
    Verifier,
    any_matches,
    check_token,
    header,
)

__all__ = ["GitHubVerifier"]

_PREFIX = "sha256="


class GitHubVerifier(Verifier):
    scheme = "github"
    event_headers = ("x-github-delivery", "x-github-event", "x-github-hook-id")

    def check(
        self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float
    ) -> Verified:
        signature = header(headers, "x-hub-signature-256", 256)
        if not signature.startswith(_PREFIX):
            raise BadDelivery("malformed", "X-Hub-Signature-256 must read sha256=<hex>")
        try:
            offered = bytes.fromhex(signature[len(_PREFIX) :])
        except ValueError:
            raise BadDelivery("malformed", "X-Hub-Signature-256 is not hex") from None
        expected = [hmac.new(secret.encode(), body, hashlib.sha256).digest() for secret in secrets]
        if not any_matches(expected, [offered]):
            raise BadDelivery("signature", "the signature does not match the body")
        delivery = check_token(header(headers, "x-github-delivery"), "X-GitHub-Delivery")
        event = check_token(header(headers, "x-github-event"), "X-GitHub-Event")
        digest = hashlib.sha256(body).hexdigest()
        return Verified(delivery, event, None, replay_key=f"sha256:{digest}")
