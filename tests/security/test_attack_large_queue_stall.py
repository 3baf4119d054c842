"""A tenant whose SQS trigger names its own endpoint answers each receive with a message
of megabytes, to stall every other tenant's calls.

SQS sends at most 1 MiB a message, but a trigger's `endpoint_url` (in a secret the
developer writes) may name any SQS-compatible endpoint, whose answers the poller reads up
to 16 MiB (triggers/sqs_responses.py). Before: the poller parsed each message's body,
made each record's event and checked it against the function's input_schema (twice) on
the node's event loop: for a 5.9 MB message about 0.5 s of the loop's time (json's parser
and encoder, boundedjson's depth scan: C code holding the GIL), every other tenant's
calls waiting. Now a body or event past 64 KiB is parsed, made and checked in the large
events' child (gateway/large_events.py), by the same functions, to the same events,
refusals and records.

The node runs with asyncio's debug mode, whose probe logs every callback that holds the
loop past its bound (`slow_callback_duration`, 0.1 s), naming the task whose step it was:
the poller's is `SqsPoller.run` (tests/loop_support.py).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from async_support import wait_for
from harness import LiveNode, start_node
from loop_support import PROBED, other_tenant_key, slow_request_steps, while_another_calls

pytestmark = pytest.mark.slow

#: The node's sources may reach the endpoint on loopback (triggers/source_address.py).
LOOPBACK = {"DONJON_EGRESS_ALLOW_NETWORKS": "127.0.0.0/8"}
#: Items of a large record: 900,000 of them are 5.9 MB of JSON.
ITEMS = 900_000
CALLS = 3
STORED = (
    "def handler(event, context):\n"
    "    (record,) = event['Records']\n"
    "    return [record['s3']['object']['key'], len(record['items'])]\n"
)
MANIFEST = """\
name: stored
handler: main.handler
isolation: warm
limits: {rate: 600/minute, body: 6MiB}
triggers:
  - s3:
      source: sqs
      secret: own-queue
input_schema:
  type: object
  required: [Records]
  properties:
    Records:
      type: array
      items: {type: object, properties: {items: {type: array, items: {type: integer}}}}
"""


class Endpoint(ThreadingHTTPServer):
    """An SQS endpoint (JSON protocol) of the tenant's own: each receive hands out the
    next message put in `waiting` (none: an empty answer after a short wait); it keeps
    the receipt handles deleted and hidden."""

    daemon_threads = True

    def __init__(self) -> None:
        self.waiting: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.hidden: list[str] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def put(self, handle: str, body: bytes) -> None:
        message = {
            "MessageId": f"id-{handle}",
            "ReceiptHandle": handle,
            "Body": body.decode(),
            "Attributes": {"ApproximateReceiveCount": "1"},
        }
        with self.lock:
            self.waiting.append(message)

    def answer(self, action: str, request: dict[str, Any]) -> dict[str, Any]:
        if action == "GetQueueAttributes":
            return {"Attributes": {"VisibilityTimeout": "30"}}
        if action == "DeleteMessage":
            self.deleted.append(str(request["ReceiptHandle"]))
        elif action == "ChangeMessageVisibility":
            self.hidden.append(str(request["ReceiptHandle"]))
        elif action == "ReceiveMessage":
            with self.lock:
                taken = self.waiting[:1]
                del self.waiting[:1]
            if not taken:
                time.sleep(0.3)
            return {"Messages": taken}
        return {}


class _Handler(BaseHTTPRequestHandler):
    server: Endpoint

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
        action = str(self.headers.get("x-amz-target", "")).rpartition(".")[2]
        body = json.dumps(self.server.answer(action, request)).encode()
        self.send_response(200)
        self.send_header("content-type", "application/x-amz-json-1.0")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _notification(key: str, items: list[object]) -> bytes:
    """An S3 notification of one record for `key` holding `items` (compact JSON)."""
    record = {
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "photos"}, "object": {"key": key, "sequencer": "0A1B"}},
        "items": items,
    }
    return json.dumps({"Records": [record]}, separators=(",", ":")).encode()


@pytest.fixture(scope="module")
def queued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNode, str, Endpoint]]:
    """A node in asyncio's debug mode with tenant A's `stored` (an SQS trigger on its own
    endpoint, an input_schema, events of up to 6 MiB), tenant B's warm `tiny` and its
    key, and the endpoint."""
    endpoint = Endpoint()
    threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    live = start_node(tmp_path_factory.mktemp("large-queue"), {**PROBED, **LOOPBACK})
    try:
        url = f"http://127.0.0.1:{endpoint.server_address[1]}"
        settings = {
            "queue_url": f"{url}/123456789012/own",
            "region": "eu-west-1",
            "access_key_id": "AKIDEXAMPLE",
            "secret_access_key": "wJalrXUtnFEMIEXAMPLEKEY",
            "endpoint_url": url,
        }
        with live.client() as c:
            made = c.post("/v1/secrets/own-queue", json={"value": json.dumps(settings)})
            assert made.status_code == 201, made.text
        files = {"donjon.yaml": MANIFEST.encode(), "main.py": STORED.encode()}
        deployed = live.deploy_files(live.admin_key, files)
        assert deployed.status_code == 201, deployed.text
        yield live, other_tenant_key(live), endpoint
    finally:
        live.stop()
        endpoint.shutdown()
        endpoint.server_close()


def _until(done: Any, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _enqueued(node: LiveNode) -> set[str]:
    """The invocations queued by the storage trigger, as their records say."""
    with node.client() as c:
        records = c.get("/v1/audit", params={"n": 2000}).json()
    return {
        r["detail"]["invocation_id"]
        for r in records
        if r["action"] == "invocation.enqueue" and r["detail"].get("trigger") == "s3"
    }


def test_a_large_message_is_taken_and_refused_as_a_small_one_is(
    queued: tuple[LiveNode, str, Endpoint],
) -> None:
    """A large message runs the function once with its record and is deleted; a large one
    the input_schema refuses is left on the queue (hidden), none of it queued; a large one
    that is not a notification is left too, audited with what a small one's says."""
    node, _, endpoint = queued
    before = _enqueued(node)
    endpoint.put("big", _notification("big.png", list(range(ITEMS))))
    _until(lambda: "big" in endpoint.deleted, "the large message's delete")
    (invocation,) = _enqueued(node) - before
    done = wait_for(node, invocation)
    assert done["status"] == "succeeded", str(done)[:300]
    assert done["result"] == ["big.png", ITEMS]
    endpoint.put("wrong", _notification("wrong.png", [*range(ITEMS), "x"]))
    _until(lambda: "wrong" in endpoint.hidden, "the refused message hidden")
    keyless = json.loads(_notification("x", list(range(ITEMS))))
    del keyless["Records"][0]["s3"]["object"]["key"]
    endpoint.put("keyless", json.dumps(keyless).encode())
    _until(lambda: "keyless" in endpoint.hidden, "the malformed message hidden")
    assert "wrong" not in endpoint.deleted and "keyless" not in endpoint.deleted
    assert _enqueued(node) - before == {invocation}
    with node.client() as c:
        records = c.get("/v1/audit", params={"n": 2000}).json()
    (malformed,) = [r for r in records if r["action"] == "trigger.event.malformed"]
    assert malformed["detail"]["message_id"] == "id-keyless"
    assert malformed["detail"]["reason"] == "record 0 has no s3.object.key"


def test_large_messages_do_not_stall_another_tenant(
    queued: tuple[LiveNode, str, Endpoint],
) -> None:
    """While three 5.9 MB messages are taken from the tenant's own endpoint, tenant B's
    calls keep completing, and no more than one step of the poller holds the loop past
    0.1 s (before: each message's did, 0.3-0.6 s)."""
    node, other, endpoint = queued
    body = _notification("k.png", list(range(ITEMS)))

    def take() -> None:
        for i in range(CALLS):
            endpoint.put(f"stall-{i}", body)
        _until(
            lambda: {f"stall-{i}" for i in range(CALLS)} <= set(endpoint.deleted),
            "the messages' deletes",
        )

    start = time.time()
    _, statuses = while_another_calls(node, other, "tiny", take)
    end = time.time()
    assert statuses and set(statuses) == {200}, statuses
    node.stop()  # its log complete (the last test of the module: not served again)
    slow = slow_request_steps(node, start, end, of="SqsPoller.run")
    assert len(slow) <= 1, slow
