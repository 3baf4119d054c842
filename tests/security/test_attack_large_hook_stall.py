"""A sender of large webhooks, or of large pushed storage events, stalls every other
tenant's calls.

A webhook's delivery and an S3-compatible store's pushed notification may be as large as
the function's `limits.body` (up to 6 MiB). Before: the gateway read such a body on its
event loop: a standard or Stripe delivery's body was parsed for its event type (and
Stripe's id), then parsed again and encoded into the function's event; a pushed
notification was parsed and each record encoded into its own event. For 5.9 MB that was
about 0.4 s of the loop's time a delivery (json's parser and encoder and boundedjson's
depth scan, C code holding the GIL), and every other tenant's calls waited. Now a body
past 64 KiB is read, and its event made, in a child process (gateway/large_events.py),
with the same events, answers and refusals.

The node runs with asyncio's debug mode, whose probe logs every callback that holds the
loop past its bound (`slow_callback_duration`, 0.1 s), naming the task whose step it was
(tests/loop_support.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from async_support import wait_for
from harness import LiveNode, start_node
from loop_support import PROBED, other_tenant_key, slow_request_steps, while_another_calls
from sec_support import audit_records
from triggers.webhook_signing import new_whsec, standard_headers, stripe_headers
from webhook_support import post_hook

pytestmark = pytest.mark.slow

#: Items of a large body: 900,000 of them are 5.9 MB of JSON.
ITEMS = 900_000
CALLS = 3
TOKEN = "store-push-token-8c1e2d"
CHECKED_TOKEN = "checked-push-token-41f7aa"
HOOKED = (
    "def handler(event, context):\n"
    "    body = event['body']\n"
    "    return [event['delivery_id'], event['event_type'], len(body['items'])]\n"
)
STORED = (
    "def handler(event, context):\n"
    "    (record,) = event['Records']\n"
    "    return [record['s3']['object']['key'], len(record['items'])]\n"
)


#: A schema each pushed record's event is checked against (`checked`'s).
SCHEMA = (
    "input_schema:\n  type: object\n  required: [Records]\n  properties:\n"
    "    Records:\n      type: array\n      items:\n        type: object\n"
    "        properties: {items: {type: array, items: {type: integer}}}\n"
)
#: Records of one push, each under 64 KiB (its event checked on the loop, alone), together
#: 5.9 MB: 120 records of 9,000 items.
RECORDS, RECORD_ITEMS = 120, 9_000


def _manifest(name: str, trigger: str, extra: str = "") -> bytes:
    return (
        f"name: {name}\nhandler: main.handler\nisolation: warm\n"
        f"limits: {{rate: 600/minute, body: 6MiB}}\ntriggers:\n  - {trigger}\n{extra}"
    ).encode()


def _delivery(kind: str, n: int = ITEMS, **extra: object) -> bytes:
    """A delivery's body naming its event type (and, for Stripe, its id)."""
    return _compact({**extra, "type": kind, "items": list(range(n))})


def _compact(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _record(key: str, n: int = ITEMS) -> dict[str, Any]:
    return {
        "eventName": "s3:ObjectCreated:Put",
        "s3": {"bucket": {"name": "photos"}, "object": {"key": key, "sequencer": "0A1B"}},
        "items": list(range(n)),
    }


def _push(node: LiveNode, body: bytes, path: str = "/store") -> httpx.Response:
    token = CHECKED_TOKEN if path == "/checked" else TOKEN
    return post_hook(node, path, body, {"authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def hooks(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveNode, str, dict[str, str]]]:
    """A node in asyncio's debug mode with tenant A's `hooked` (a standard webhook at
    /hooks/big), `striped` (a Stripe webhook at /hooks/stripe) and `stored` (a store's
    pushes at /hooks/store), each taking bodies of up to 6 MiB; tenant B's warm `tiny`
    and its key; the webhooks' secrets."""
    live = start_node(tmp_path_factory.mktemp("large-hooks"), PROBED)
    try:
        secrets = {
            "big-hook": new_whsec(),
            "stripe-hook": "whsec_large",
            "store-push": TOKEN,
            "checked-push": CHECKED_TOKEN,
        }
        with live.client() as c:
            for name, value in secrets.items():
                assert c.post(f"/v1/secrets/{name}", json={"value": value}).status_code == 201
        functions = {
            "hooked": ("webhook: {path: /big, scheme: standard, secret: big-hook}", HOOKED),
            "striped": ("webhook: {path: /stripe, scheme: stripe, secret: stripe-hook}", HOOKED),
            "stored": ("s3: {source: push, path: /store, secret: store-push}", STORED),
            "checked": ("s3: {source: push, path: /checked, secret: checked-push}", STORED),
        }
        for name, (trigger, code) in functions.items():
            extra = SCHEMA if name == "checked" else ""
            files = {"donjon.yaml": _manifest(name, trigger, extra), "main.py": code.encode()}
            deployed = live.deploy_files(live.admin_key, files)
            assert deployed.status_code == 201, deployed.text
        yield live, other_tenant_key(live), secrets
    finally:
        live.stop()


def _ran(node: LiveNode, invocation: str) -> object:
    done = wait_for(node, invocation)
    assert done["status"] == "succeeded", str(done)[:300]
    return done["result"]


def test_a_large_webhook_makes_the_event_a_small_one_does(
    hooks: tuple[LiveNode, str, dict[str, str]],
) -> None:
    """A large standard delivery's event names its id and event type and holds its body;
    a large Stripe delivery's event its id (read from the body) and type; the same large
    delivery again is refused as a replay, as a small one is."""
    node, _, secrets = hooks
    body = _delivery("big.push")
    headers = standard_headers(secrets["big-hook"], body, msg_id="msg_large_1")
    accepted = post_hook(node, "/big", body, headers)
    assert accepted.status_code == 202, accepted.text[:300]
    assert _ran(node, accepted.json()["id"]) == ["msg_large_1", "big.push", ITEMS]
    again = post_hook(node, "/big", body, headers)
    assert again.status_code == 401, again.text[:300]
    assert again.json()["detail"] == (
        "this delivery was accepted before (each delivery is taken once: send a new one)"
    )
    striped = _delivery("invoice.paid", id="evt_large_1")
    taken = post_hook(node, "/stripe", striped, stripe_headers(secrets["stripe-hook"], striped))
    assert taken.status_code == 202, taken.text[:300]
    assert _ran(node, taken.json()["id"]) == ["evt_large_1", "invoice.paid", ITEMS]
    no_id = _delivery("invoice.paid")
    refused = post_hook(node, "/stripe", no_id, stripe_headers(secrets["stripe-hook"], no_id))
    assert refused.status_code == 401, refused.text[:300]
    assert refused.json()["detail"].startswith("the signed body is not a Stripe event (no id)")


def test_a_large_push_is_taken_and_refused_as_a_small_one_is(
    hooks: tuple[LiveNode, str, dict[str, str]],
) -> None:
    """A large pushed notification runs the function once with its record; a large one
    that is not a notification is a 400 saying what a small one says, audited."""
    node, _, _ = hooks
    accepted = _push(node, _compact({"Records": [_record("big.png")]}))
    assert accepted.status_code == 202, accepted.text[:300]
    (invocation,) = accepted.json()["invocations"]
    assert _ran(node, invocation) == ["big.png", ITEMS]
    keyless = _record("x")
    del keyless["s3"]["object"]["key"]
    large = _push(node, _compact({"Records": [keyless]}))  # first: audited (then aggregated)
    small = _push(node, _compact({"Records": [{**keyless, "items": []}]}))
    assert small.status_code == large.status_code == 400, large.text[:300]
    assert large.json()["detail"] == small.json()["detail"]
    assert large.json()["detail"].startswith("record 0 has no s3.object.key (")
    records = audit_records(node, large.headers["x-request-id"])
    assert [(r["action"], r["outcome"]) for r in records] == [("input.refused", "denied")]


def _stalls(node: LiveNode, other: str, send: Callable[[int], httpx.Response]) -> list[str]:
    """Send `CALLS` large bodies (`send(i)`, each 202) while the other tenant calls its
    own function: its calls all complete; the steps of a request that held the loop past
    0.1 s (the node is stopped to read its log, then served again)."""
    start = time.time()
    sent, statuses = while_another_calls(
        node, other, "tiny", lambda: [send(i) for i in range(CALLS)]
    )
    end = time.time()
    assert [r.status_code for r in sent] == [202] * CALLS, sent[0].text[:300]
    assert statuses and set(statuses) == {200}, statuses
    node.stop()  # its log complete
    slow = slow_request_steps(node, start, end)
    node.serve_again(PROBED)
    return slow


def test_large_webhooks_do_not_stall_another_tenant(
    hooks: tuple[LiveNode, str, dict[str, str]],
) -> None:
    """While three 5.9 MB standard deliveries are taken, tenant B's calls keep completing,
    and no more than one delivery's request has a step hold the loop past 0.1 s (before:
    every one did)."""
    node, other, secrets = hooks
    body = _delivery("big.push")

    def send(i: int) -> httpx.Response:
        return post_hook(node, "/big", body, standard_headers(secrets["big-hook"], body))

    slow = _stalls(node, other, send)
    assert len(slow) <= 1, slow


def test_large_pushes_do_not_stall_another_tenant(
    hooks: tuple[LiveNode, str, dict[str, str]],
) -> None:
    """While three 5.9 MB notifications are pushed, tenant B's calls keep completing, and
    no more than one push's request has a step hold the loop past 0.1 s (before: every
    one did)."""
    node, other, _ = hooks

    def send(i: int) -> httpx.Response:
        return _push(node, _compact({"Records": [_record(f"k{i}.png")]}))

    slow = _stalls(node, other, send)
    assert len(slow) <= 1, slow


def test_pushes_of_many_records_checked_by_a_schema_do_not_stall_another_tenant(
    hooks: tuple[LiveNode, str, dict[str, str]],
) -> None:
    """A push of 120 records, each under 64 KiB, together 5.9 MB, to a function whose
    input_schema checks each record's event: while three are taken, tenant B's calls keep
    completing, and no more than one push's request has a step hold the loop past 0.1 s
    (before: each record's event was checked on the loop, one after the other). A record
    the schema refuses is refused as in a small push: 422 naming it, nothing queued."""
    node, other, _ = hooks
    records = [_record(f"k{n}.png", RECORD_ITEMS) for n in range(RECORDS)]
    assert all(len(_compact(r)) < 64 * 1024 for r in records)
    body = _compact({"Records": records})

    def send(i: int) -> httpx.Response:
        return _push(node, body, "/checked")

    slow = _stalls(node, other, send)
    assert len(slow) <= 1, slow
    records[-1]["items"][5] = "five"
    large = _push(node, _compact({"Records": records}), "/checked")
    small = _push(node, _compact({"Records": [records[-1]]}), "/checked")
    assert large.status_code == small.status_code == 422, large.text[:300]
    assert large.json()["detail"] == small.json()["detail"]
