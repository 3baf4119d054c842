"""The webhook service over a real SQLite file and a real vault: replays refused across
a restart and across nodes sharing the database, rotated secrets accepted for their
grace only, and a failed submit giving its delivery id back."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from unittest.mock import ANY

import pytest
from sqlalchemy import select, update

from donjon import boundedjson
from donjon.errors import Error
from donjon.gateway.large_events import LargeEvents
from donjon.manifest.event_triggers import WebhookSpec
from donjon.secret import Secret
from donjon.store import SecretStore, connect, create_schema
from donjon.store.outbox_owner import current
from donjon.store.tables import secret_versions, webhook_deliveries
from donjon.store.webhook_replays import ReplayStore
from donjon.triggers.envelope import Envelope
from donjon.triggers.webhooks import (
    BadDelivery,
    OffLoop,
    Verified,
    WebhookMisconfigured,
    WebhookService,
)
from donjon.triggers.webhooks.service import CLAIM_LEASE_S
from donjon.vault import MasterKey
from donjon.vault.keyring import Keyring, open_vault
from donjon.vault.service import Vault
from triggers.webhook_signing import github_headers, new_whsec, standard_headers, stripe_headers

#: The vault name of the webhook's secret (a name, not a value).
KEY_NAME = "hook-key"
SPEC = WebhookSpec(path="/hook", scheme="standard", secret=KEY_NAME)
BODY = json.dumps({"type": "user.created", "data": {"id": 7}}).encode()
#: This process, as the replay cache's claims name their node process.
ME = str(current())

P = ParamSpec("P")
T = TypeVar("T")


class _Node:
    """What one node holds: its own engine on the shared file, its vault and service."""

    def __init__(self, tmp_path: Path, grace_s: float = 3600.0) -> None:
        self.engine = connect(f"sqlite:///{tmp_path / 'donjon.db'}")
        create_schema(self.engine)
        master = tmp_path / "master.key"
        if not master.exists():
            MasterKey.create(master)
        self.vault: Vault = open_vault(
            SecretStore(self.engine), Keyring(MasterKey.load(master), tmp_path / "vault.key")
        )
        self.replays = ReplayStore(self.engine)
        self.service = WebhookService(
            self.vault, self.replays, grace_s=grace_s, replay_ttl_s=3600.0
        )
        self.submitted: list[Envelope] = []

    async def submit(self, envelope: Envelope) -> str:
        self.submitted.append(envelope)
        return f"inv-{len(self.submitted)}"

    async def deliver(self, headers: dict[str, str], spec: WebhookSpec = SPEC) -> str:
        verified = await self.service.verify(spec, headers, BODY)
        return await self.service.accept(
            "fn", spec, headers, BODY, verified, _admitted, self.submit
        )


async def _admitted() -> None:
    return None


def test_accepted_delivery_is_submitted_with_its_event(tmp_path: Path) -> None:
    """The function's event is the parsed body with the delivery's id and type."""
    node = _Node(tmp_path)
    secret = new_whsec()
    asyncio.run(node.vault.set("hook-key", Secret(secret), "key:t"))
    assert asyncio.run(node.deliver(standard_headers(secret, BODY, "msg_1"))) == "inv-1"
    envelope = node.submitted[0]
    event = json.loads(envelope.event)
    assert event["body"] == {"type": "user.created", "data": {"id": 7}}
    assert (event["delivery_id"], event["event_type"], event["scheme"]) == (
        "msg_1",
        "user.created",
        "standard",
    )
    assert "webhook-signature" not in event["headers"]
    assert (envelope.trigger, envelope.source, envelope.delivery_id) == (
        "webhook",
        "/hooks/hook",
        "msg_1",
    )


def test_replay_refused_across_restart_and_nodes(tmp_path: Path) -> None:
    """A delivery id accepted once is refused again by a restarted node and by another
    node on the same database."""
    first = _Node(tmp_path)
    secret = new_whsec()
    asyncio.run(first.vault.set("hook-key", Secret(secret), "key:t"))
    headers = standard_headers(secret, BODY, "msg_dup")
    asyncio.run(first.deliver(headers))
    first.engine.dispose()
    for again in (_Node(tmp_path), _Node(tmp_path)):
        with pytest.raises(BadDelivery) as caught:
            asyncio.run(again.deliver(headers))
        assert caught.value.reason == "replay"
        assert again.submitted == []


def test_failed_submit_gives_the_id_back(tmp_path: Path) -> None:
    """A delivery whose submit fails is not remembered: the sender's retry is taken."""
    node = _Node(tmp_path)
    secret = new_whsec()
    asyncio.run(node.vault.set("hook-key", Secret(secret), "key:t"))
    headers = standard_headers(secret, BODY, "msg_retry")

    async def failing(envelope: Envelope) -> str:
        raise Error("queue unavailable")

    async def attempt() -> None:
        verified = await node.service.verify(SPEC, headers, BODY)
        await node.service.accept("fn", SPEC, headers, BODY, verified, _admitted, failing)

    with pytest.raises(Error):
        asyncio.run(attempt())
    assert asyncio.run(node.deliver(headers)) == "inv-1"


def test_expired_ids_are_purged_and_reusable(tmp_path: Path) -> None:
    """An expired id is purged; an expired row not yet purged is taken over, once."""
    store = _Node(tmp_path).replays
    now = time.time()
    assert store.claim("/h", "a", now - 1, now - 10, ME)
    assert store.claim("/h", "b", now - 1, now - 10, ME)
    assert store.purge(now) == 2
    assert store.claim("/h", "c", now - 1, now - 10, ME)
    assert store.claim("/h", "c", now + 100, now, ME)  # expired: taken over
    assert not store.claim("/h", "c", now + 100, now, ME)  # now remembered


def _ended_process() -> str:
    """The name (store/outbox_owner.py) of a process of this host that has ended."""
    child = subprocess.Popen(["sleep", "60"])  # noqa: S607 - a test's own child
    ticks = int(Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    child.kill()
    child.wait(30)
    return str(dataclasses.replace(current(), pid=child.pid, ticks=ticks))


def test_an_unsettled_claim_of_an_ended_process_is_taken_once(tmp_path: Path) -> None:
    """An id claimed by a node process killed before its event was queued is taken at the
    sender's retry (once); one a live process claimed, or one settled, is a replay."""
    store = _Node(tmp_path).replays
    now = time.time()
    ended = _ended_process()
    assert store.claim("/h", "left", now + 100, now, ended)
    assert store.claim("/h", "left", now + 100, now, ME)  # its process is gone
    assert not store.claim("/h", "left", now + 100, now, ME)  # now this one's
    assert store.claim("/h", "queued", now + 100, now, ended)
    store.settle("/h", "queued", now + 100, ended)
    assert not store.claim("/h", "queued", now + 100, now, ME)  # settled: a replay


def test_a_settled_delivery_is_remembered_for_its_whole_time(tmp_path: Path) -> None:
    """A delivery is claimed for CLAIM_LEASE_S at most until its event is queued, then
    remembered until its own expiry."""
    node = _Node(tmp_path)
    spec = WebhookSpec(path="/gh", scheme="github", secret=KEY_NAME)
    asyncio.run(node.vault.set(KEY_NAME, Secret("gh-secret"), "key:t"))
    asyncio.run(node.deliver(github_headers("gh-secret", BODY, "d-1"), spec))
    rows = _rows(node)
    assert [r[1] for r in rows] == [None], rows  # settled: no process holds it
    assert rows[0][0] > time.time() + CLAIM_LEASE_S  # the replay TTL, not the lease


def _rows(node: _Node) -> list[tuple[Any, ...]]:
    with node.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(webhook_deliveries.c.expires_at, webhook_deliveries.c.claimed_by)
            )
        ]


def test_rotated_secret_accepted_during_grace_only(tmp_path: Path) -> None:
    """After a rotation the previous secret still verifies for the grace, not after it."""
    node = _Node(tmp_path, grace_s=3600.0)
    old, new = new_whsec(), new_whsec()
    asyncio.run(node.vault.set("hook-key", Secret(old), "key:t"))
    asyncio.run(node.vault.rotate("hook-key", Secret(new), "key:t"))
    asyncio.run(node.deliver(standard_headers(old, BODY)))
    asyncio.run(node.deliver(standard_headers(new, BODY)))
    # The rotation happened two hours ago: past the grace, the old secret is refused.
    with node.engine.begin() as conn:
        conn.execute(
            update(secret_versions)
            .where(secret_versions.c.version == 2)
            .values(created_at=time.time() - 7200)
        )
    later = _Node(tmp_path, grace_s=3600.0)
    with pytest.raises(BadDelivery) as caught:
        asyncio.run(later.deliver(standard_headers(old, BODY)))
    assert caught.value.reason == "signature"
    assert asyncio.run(later.deliver(standard_headers(new, BODY))) == "inv-1"


def test_secret_gone_from_the_vault_is_misconfigured(tmp_path: Path) -> None:
    """A webhook whose secret was removed refuses deliveries without naming the secret."""
    node = _Node(tmp_path)
    with pytest.raises(WebhookMisconfigured) as caught:
        asyncio.run(node.deliver(standard_headers(new_whsec(), BODY)))
    assert "hook-key" not in caught.value.message


def test_github_ids_remembered_for_the_replay_ttl(tmp_path: Path) -> None:
    """GitHub signs no timestamp: its delivery id is kept for the node's replay TTL."""
    node = _Node(tmp_path)
    asyncio.run(node.vault.set("gh", Secret("gh-secret"), "key:t"))
    gh_name = "gh"
    spec = WebhookSpec(path="/gh", scheme="github", secret=gh_name)
    headers = github_headers("gh-secret", BODY, "d-9")
    asyncio.run(node.deliver(headers, spec))
    key = f"sha256:{hashlib.sha256(BODY).hexdigest()}"  # GitHub's id is not signed
    assert node.replays.remembered("secret:gh", key, time.time() + 3000)
    assert not node.replays.remembered("secret:gh", key, time.time() + 3700)
    with pytest.raises(BadDelivery) as caught:  # the same delivery under a fresh id
        asyncio.run(node.deliver(github_headers("gh-secret", BODY, "d-10"), spec))
    assert caught.value.reason == "replay"


def _deep(levels: int) -> bytes:
    """A JSON object nested `levels` deep in all (the body of the event is one more)."""
    return b'{"type":"deep.one","a":' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"


@pytest.mark.parametrize(
    "body",
    [
        BODY,
        _deep(boundedjson.MAX_DEPTH - 1),  # the deepest body the event holds parsed
        _deep(boundedjson.MAX_DEPTH),  # the scheme reads its type, the event holds text
        b'{"type": "not json"',
        b"plain text, \xc3\xa9",
    ],
)
def test_a_delivery_read_off_the_loop_is_the_one_read_on_it(tmp_path: Path, body: bytes) -> None:
    """A delivery whose body is read and whose event is made in the large events' child
    (as a large body's are) has the id, type and event bytes it has when done inline."""
    node = _Node(tmp_path)
    secret = new_whsec()
    asyncio.run(node.vault.set("hook-key", Secret(secret), "key:t"))
    large = LargeEvents()

    def in_child(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
        return large.made("webhook:fn", fn, *args, **kwargs)

    headers = standard_headers(secret, body, "msg_same")

    async def deliver(off_loop: OffLoop | None) -> Verified:
        verified = await node.service.verify(SPEC, headers, body, off_loop)
        await node.service.accept(
            "fn", SPEC, headers, body, verified, _admitted, node.submit, off_loop
        )
        return verified

    try:
        inline = asyncio.run(deliver(None))
        node.replays.release("secret:hook-key", "msg_same")
        child = asyncio.run(deliver(in_child))
    finally:
        large.close()
    assert child == inline and inline.delivery_id == "msg_same"
    first, second = node.submitted
    assert second == first
    assert json.loads(first.event)["event_type"] == (inline.event_type or None)


def test_a_stripe_delivery_read_off_the_loop_is_refused_as_on_it(tmp_path: Path) -> None:
    """A signed Stripe body that names no event id is refused alike whether it is read on
    the loop or in the large events' child, and one that names it gives the same id."""
    secret = "whsec_s1"
    spec = WebhookSpec(path="/stripe", scheme="stripe", secret=KEY_NAME)
    node = _Node(tmp_path)
    asyncio.run(node.vault.set("hook-key", Secret(secret), "key:t"))
    large = LargeEvents()

    def in_child(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
        return large.made("webhook:fn", fn, *args, **kwargs)

    now = time.time()

    def verify(body: bytes, off_loop: OffLoop | None) -> Verified | tuple[str, str]:
        headers = stripe_headers(secret, body, now)
        try:
            return asyncio.run(node.service.verify(spec, headers, body, off_loop))
        except BadDelivery as e:
            return e.reason, e.diagnostics()

    try:
        for body in (b'{"type": "invoice.paid"}', b'{"id": "evt_1", "type": "invoice.paid"}'):
            assert verify(body, in_child) == verify(body, None)
    finally:
        large.close()
    assert verify(b'{"id": "evt_1"}', None) == Verified("evt_1", "", ANY)
