"""Signed webhooks: one verifier per signature scheme (github, stripe, standard), the
replay cache, and the service that takes a delivery to an async invocation."""

from __future__ import annotations

from donjon.triggers.webhooks.interface import (
    TOLERANCE_S,
    BadDelivery,
    Verified,
    Verifier,
    WebhookError,
    WebhookMisconfigured,
)
from donjon.triggers.webhooks.service import VERIFIERS, OffLoop, WebhookService

__all__ = [
    "TOLERANCE_S",
    "VERIFIERS",
    "BadDelivery",
    "OffLoop",
    "Verified",
    "Verifier",
    "WebhookError",
    "WebhookMisconfigured",
    "WebhookService",
]
