"""A caller sends async calls (`Prefer: respond-async`) to a function whose queue is
full. Each is refused (503, Retry-After) and nothing is queued; a refused call must cost
nothing, yet admission had already spent a token of each of the caller's rate buckets
and a unit of its daily quota: a handful of refusals used up the caller's rate and its
day's quota on calls that never ran. Now the queue's refusal gives back what admission
took (gateway/admission.py, `give_back`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from async_support import bundle, invoke_async
from harness import LiveNode, start_node
from triggers.webhook_signing import github_headers
from webhook_support import post_hook

pytestmark = pytest.mark.slow

#: Runs long enough that the one it takes keeps the queue full through the attack.
HOLD = "import time\n\ndef handler(event, context):\n    time.sleep(30)\n    return event\n"
#: The caller's own rate, and the function's: three calls in all.
RATE = {"rate": "3/hour", "burst": 3}
QUOTA = 3
REFUSED = 5


@pytest.fixture(scope="module")
def full_queue_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = start_node(tmp_path_factory.mktemp("refused-async"), {"DONJON_QUEUE_WORKERS": "1"})
    try:
        yield live
    finally:
        live.stop()


def test_calls_refused_for_a_full_queue_spend_no_rate_and_no_quota(
    full_queue_node: LiveNode, tmp_path: Path
) -> None:
    """One async call fills the function's queue (`limits.queued: 1`); five more are
    refused 503 for the full queue, not 429 for a rate or quota they spent on nothing,
    and the day's usage counts the one call that was queued."""
    node = full_queue_node
    extra = "timeout_s: 40\nlimits: {rate: 3/hour, burst: 3, queued: 1}\n"
    node.deploy(bundle(tmp_path, "full-queue", HOLD, extra))
    created = node.create_key("sec-full-queue", "invoker", ["full-queue"], RATE)
    key = created["key"]
    with node.client() as c:
        r = c.put(f"/v1/quotas/key:{created['id']}", json={"invocations": QUOTA})
        assert r.is_success, r.text
    accepted = invoke_async(node, "full-queue", {"n": 0}, key)
    assert accepted.status_code == 202, accepted.text
    refused = [invoke_async(node, "full-queue", {"n": n}, key) for n in range(1, REFUSED + 1)]
    assert [r.status_code for r in refused] == [503] * REFUSED, [r.text for r in refused]
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    with node.client() as c:
        quotas = c.get("/v1/quotas").json()
    (mine,) = [q for q in quotas if q["subject"] == f"key:{created['id']}"]
    assert mine["invocations"]["used"] == 1, mine


def _used(node: LiveNode, subject: str) -> int:
    with node.client() as c:
        quotas = c.get("/v1/quotas").json()
    (mine,) = [q for q in quotas if q["subject"] == subject]
    used: int = mine["invocations"]["used"]
    return used


def test_signed_deliveries_refused_for_a_full_queue_spend_nothing(
    full_queue_node: LiveNode, tmp_path: Path
) -> None:
    """A webhook sender (anyone holding the secret, or a retrying store) keeps delivering
    to a function whose queue is full: each is 503, none spends the function's shared rate
    (which every caller of it needs) or its day's quota."""
    node = full_queue_node
    name, path, secret = "hook-full", "/hook-full", "hook-full-key"
    value = "gh-" + secrets.token_hex(16)
    extra = (
        "timeout_s: 40\nlimits: {rate: 3/hour, burst: 3, queued: 1}\n"
        f"triggers:\n  - webhook: {{path: {path}, scheme: github, secret: {secret}}}\n"
    )
    with node.client() as c:
        assert c.post(f"/v1/secrets/{secret}", json={"value": value}).status_code == 201
    node.deploy(bundle(tmp_path, name, HOLD, extra))
    with node.client() as c:
        r = c.put(f"/v1/quotas/function:{name}", json={"invocations": QUOTA})
        assert r.is_success, r.text
    statuses = []
    for n in range(REFUSED + 1):
        body = json.dumps({"n": n}).encode()
        statuses.append(post_hook(node, path, body, github_headers(value, body)).status_code)
    assert statuses == [202] + [503] * REFUSED, statuses
    assert _used(node, f"function:{name}") == 1
