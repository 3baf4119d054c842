"""`WebhookService`: what taking one webhook delivery does, whoever serves the route.

verify the signature (against the secret's accepted versions, before anything parses
the body) -> claim the delivery id in the replay cache (a conflict is a replay) -> the
function's admission (quarantine, rates, quotas, capacity: the caller's) -> submit the
envelope. The claim comes before admission so that a replay spends nothing: a captured
GitHub delivery (its signature never expires) sent again and again must not use up the
function's rate buckets and daily quota. A delivery refused after its id was claimed
(admission or the submit failed) gives the id back, so the sender's retry is not taken
for a replay. Until its event is queued the id is this node process's, for at most
CLAIM_LEASE_S (store/webhook_replays.py): a node killed in between leaves an id the next
node takes again at the sender's retry, not a replay of a delivery that was never
queued. A kill after the queueing and before the settling runs the retried delivery
twice: like every event, a delivery runs at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import ParamSpec, Protocol, TypeVar

from donjon.manifest.event_triggers import WebhookSpec
from donjon.store.outbox_owner import current
from donjon.store.webhook_replays import ReplayStore
from donjon.triggers.envelope import Submit
from donjon.triggers.webhooks.event import event_head, event_json, webhook_envelope
from donjon.triggers.webhooks.github import GitHubVerifier
from donjon.triggers.webhooks.interface import (
    BadDelivery,
    Verified,
    Verifier,
    WebhookMisconfigured,
)
from donjon.triggers.webhooks.standard import StandardVerifier
from donjon.triggers.webhooks.stripe import StripeVerifier
from donjon.vault.errors import SecretNotFound
from donjon.vault.service import Vault

__all__ = [
    "CLAIM_LEASE_S",
    "PURGE_INTERVAL_S",
    "VERIFIERS",
    "OffLoop",
    "WebhookService",
    "read_delivery",
    "replay_scope",
]

log = logging.getLogger("donjon.webhooks")

#: The verifier of each manifest `scheme:`.
VERIFIERS: Mapping[str, Verifier] = {
    v.scheme: v for v in (GitHubVerifier(), StripeVerifier(), StandardVerifier())
}
#: Expired delivery ids are deleted from the replay cache this often.
PURGE_INTERVAL_S = 600.0
#: How long a delivery's id stays claimed before its event is queued, at most: past it
#: (a node on another host that died between the two), the sender's retry is taken.
CLAIM_LEASE_S = 300.0

P = ParamSpec("P")
T = TypeVar("T")


class OffLoop(Protocol):
    """Runs `fn(*args)` (a module's function, its arguments picklable) off the event loop,
    its answer the same: how the gateway has a large delivery's body read and its event
    made in a child process (gateway/large_events.py), the loop free for other callers."""

    def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
        """`fn(*args, **kwargs)`, awaited."""
        ...


class WebhookService:
    """Verifies, deduplicates and submits webhook deliveries."""

    def __init__(
        self,
        vault: Vault,
        replays: ReplayStore,
        *,
        grace_s: float,
        replay_ttl_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._vault = vault
        self._replays = replays
        self._grace_s = grace_s
        self._replay_ttl_s = replay_ttl_s
        self._clock = clock
        #: This node process, as the replay cache's unsettled claims name it.
        self._owner = str(current())
        self._purge_task: asyncio.Task[None] | None = None

    async def verify(
        self,
        spec: WebhookSpec,
        headers: Mapping[str, str],
        body: bytes,
        off_loop: OffLoop | None = None,
    ) -> Verified:
        """`BadDelivery` unless `body` is signed by one of the secret's accepted versions;
        what the signed body says is read by `off_loop` when given (a large body).

        A webhook without a secret (deployed with --unsafe-allow-public) checks nothing;
        its delivery id is the scheme's header when one is sent (and then deduplicated)."""
        verifier = VERIFIERS[spec.scheme]
        if spec.secret is None:
            return _unsigned(verifier, headers, self._clock())
        try:
            secrets = await self._vault.open_accepted(spec.secret, self._grace_s)
        except SecretNotFound:
            # Removed since the deploy: the sender is not told the secret's name.
            log.error("webhook %s: its secret %s is not in the vault", spec.path, spec.secret)
            raise WebhookMisconfigured(
                "this webhook cannot verify deliveries now",
                hint="the node's operator must restore the webhook's secret",
            ) from None
        signed = verifier.check(headers, body, secrets, self._clock())
        if off_loop is None or not verifier.reads_body:
            return verifier.read(signed, body)
        read = await off_loop(read_delivery, spec.scheme, signed, body)
        if isinstance(read, Verified):
            return read
        raise BadDelivery(*read)

    async def accept(
        self,
        function: str,
        spec: WebhookSpec,
        headers: Mapping[str, str],
        body: bytes,
        verified: Verified,
        admit: Callable[[], Awaitable[None]],
        submit: Submit,
        off_loop: OffLoop | None = None,
    ) -> str:
        """Deduplicate, admit and submit a verified delivery; the invocation id. Its event
        is made by `off_loop` when given (a large body).

        `BadDelivery` (replay) if its id was accepted under this secret before (at this
        path or any other: `replay_scope`): refused before admission, so a replay spends
        none of the function's limits."""
        scope = replay_scope(spec)
        expires = await self._claim(scope, verified)
        try:
            await admit()
            head = event_head(spec, VERIFIERS[spec.scheme], headers, verified)
            event = (
                event_json(head, body)
                if off_loop is None
                else await off_loop(event_json, head, body)
            )
            envelope = dataclasses.replace(  # admitted just now: its first attempt spends nothing
                webhook_envelope(function, spec, verified, event), admitted=True
            )
            invocation = await submit(envelope)
        except BaseException:
            if expires is not None:
                await asyncio.to_thread(self._replays.release, scope, verified.replay_id)
            raise
        if expires is not None:
            await self._settle(scope, verified.replay_id, expires)
        return invocation

    async def _claim(self, scope: str, verified: Verified) -> float | None:
        """Claim the delivery's id for this process; when to forget it once it is queued
        (None: it has no id)."""
        key = verified.replay_id
        if not key:
            return None
        now = self._clock()
        until = verified.remember_until
        expires = max(until, now) + 60.0 if until is not None else now + self._replay_ttl_s
        held = min(expires, now + CLAIM_LEASE_S)
        if not await asyncio.to_thread(self._replays.claim, scope, key, held, now, self._owner):
            raise BadDelivery("replay", "this delivery was accepted before")
        return expires

    async def _settle(self, scope: str, key: str, expires: float) -> None:
        """The delivery is queued: its id is remembered until `expires`, whoever asks. A
        failure leaves the claim to lapse at its lease; the event is queued all the same,
        and answered so (a 5xx would have the sender send it again)."""
        try:
            await asyncio.to_thread(self._replays.settle, scope, key, expires, self._owner)
        except Exception:
            log.exception("webhook delivery %s is queued; settling its replay id failed", key)

    # -- the purge ----------------------------------------------------------------

    def start(self) -> None:
        if self._purge_task is None:
            self._purge_task = asyncio.get_running_loop().create_task(
                self._purge_periodically(), name="webhook-replays"
            )

    async def stop(self) -> None:
        if self._purge_task is not None:
            self._purge_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purge_task
            self._purge_task = None

    async def purge(self) -> int:
        """Delete expired delivery ids from the replay cache; how many."""
        return await asyncio.to_thread(self._replays.purge, self._clock())

    async def _purge_periodically(self) -> None:
        while True:
            try:
                await self.purge()
            except Exception:  # a busy database: the next round deletes them
                log.exception("purging the webhook replay cache failed")
            await asyncio.sleep(PURGE_INTERVAL_S)


def read_delivery(scheme: str, signed: Verified, body: bytes) -> Verified | tuple[str, str]:
    """`read` of scheme `scheme`'s verifier (a pure function: run off the loop for a large
    body), or its `BadDelivery`'s reason and message (an exception does not come back
    from a child whole)."""
    try:
        return VERIFIERS[scheme].read(signed, body)
    except BadDelivery as e:
        return e.reason, e.message


def replay_scope(spec: WebhookSpec) -> str:
    """Where the replay cache remembers `spec`'s deliveries: under the secret that signs
    them (``secret:NAME``), since no scheme signs the path; a hook that checks no secret,
    at its path. Before, every hook's were kept per path, so a hook moved to a new path
    (a redeploy, the same secret) took again every delivery taken at its old one."""
    return f"secret:{spec.secret}" if spec.secret is not None else spec.path


def _unsigned(verifier: Verifier, headers: Mapping[str, str], now: float) -> Verified:
    """An unsigned delivery: the scheme's id header as its id when it looks like one."""
    raw = headers.get(verifier.event_headers[0], "") if verifier.event_headers else ""
    delivery_id = raw if 0 < len(raw) <= 255 and raw.isascii() and raw.isprintable() else ""
    return Verified(delivery_id, "", None)
