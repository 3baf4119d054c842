"""A tenant re-reads its own large async result to stall every other tenant's calls.

Before: `GET /v1/invocations/{id}` parsed the stored result (up to 6 MiB) and rendered
the whole answer again on the gateway's event loop at every read, about 0.4 s of loop
time a read (2 s on a loaded host): while one caller re-read its result, another
tenant's calls waited, each read letting one or two of them through. Now a view whose
stored JSON is large is made in a child process (gateway/stored_views.py), a few at a
time: the other tenant's calls go on while it is made, and the answer is the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from async_support import bundle, invoke_async, wait_for
from harness import LiveNode, start_node
from loop_support import while_another_calls

pytestmark = pytest.mark.slow

#: A result of `n` small pairs: 300,000 of them are 5.7 MB of JSON, near the 6 MiB bound.
BIG = "def handler(event, context):\n    return [[i, 'x\\u00e9'] for i in range(event['n'])]\n"
TINY = "def handler(event, context):\n    return {'ok': True}\n"
PAIRS = 300_000
READS = 3
#: The other tenant's calls that complete, at least, for each large read. Made on the
#: loop, a read let through one or two; made off it, a read lets through hundreds.
PER_READ = 10


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNode, str, str]]:
    """A node with `big` (tenant A's key may call it) and `tiny` (tenant B's)."""
    root = tmp_path_factory.mktemp("large-result")
    live = start_node(root / "node")
    try:
        live.deploy(bundle(root, "big", BIG, "timeout_s: 60\nmemory_mb: 256\n"))
        live.deploy(bundle(root, "tiny", TINY, "isolation: warm\n"))
        a = live.create_key("tenant-a", "invoker", ["big"])["key"]
        b = live.create_key("tenant-b", "invoker", ["tiny"])["key"]
        yield live, a, b
    finally:
        live.stop()


def _succeeded(node: LiveNode, key: str, n: int) -> str:
    queued = invoke_async(node, "big", {"n": n}, key)
    assert queued.status_code == 202, queued.text
    invocation_id: str = queued.json()["invocation_id"]
    assert wait_for(node, invocation_id, key=key)["status"] == "succeeded"
    return invocation_id


def _rendered(body: Any) -> bytes:
    """`body` as the gateway's JSON responses write it."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def test_rereading_a_large_result_does_not_stall_another_tenant(
    tenants: tuple[LiveNode, str, str],
) -> None:
    """While tenant A reads its 5 MB result three times, tenant B's calls of its own
    function keep completing: at least PER_READ of them a read."""
    node, a, b = tenants
    big = _succeeded(node, a, PAIRS)
    with node.client(a) as c:
        reads, statuses = while_another_calls(
            node, b, "tiny", lambda: [c.get(f"/v1/invocations/{big}") for _ in range(READS)]
        )
    assert [r.status_code for r in reads] == [200] * READS, reads[0].text[:300]
    assert set(statuses) == {200}, statuses
    assert len(statuses) >= PER_READ * READS, len(statuses)


def test_a_large_result_reads_back_as_a_small_one_does(
    tenants: tuple[LiveNode, str, str],
) -> None:
    """The large result's answer is its view with the function's whole result, rendered
    as a small one's is (made in the child or on the loop, the same bytes)."""
    node, a, _ = tenants
    small, big = _succeeded(node, a, 3), _succeeded(node, a, PAIRS)
    with node.client(a) as c:
        answers = [c.get(f"/v1/invocations/{i}") for i in (small, big)]
    for answer, pairs in zip(answers, (3, PAIRS), strict=True):
        assert answer.status_code == 200, answer.text[:300]
        assert answer.headers["content-type"] == "application/json"
        view = answer.json()
        assert view["status"] == "succeeded" and view["error"] is None
        assert view["result"] == [[i, "x\u00e9"] for i in range(pairs)]
        assert answer.content == _rendered(view)


def test_another_tenant_cannot_read_a_large_result(
    tenants: tuple[LiveNode, str, str],
) -> None:
    """Tenant B gets 404 for tenant A's large result, as for a small one."""
    node, a, b = tenants
    big = _succeeded(node, a, PAIRS)
    with node.client(b) as c:
        r = c.get(f"/v1/invocations/{big}")
    assert r.status_code == 404 and "x\\u00e9" not in r.text and "xé" not in r.text
