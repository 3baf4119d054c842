"""A developer key filling the node's queue through many functions: each function's
pending invocations are bounded by its `limits.queued` (up to 1,000,000), but a key may
own many functions, so what one key could have the node keep had no bound short of the
disk. DONJON_QUEUE_MAX_PENDING bounds the node's pending invocations, every function's
together: past it an enqueue is refused 503 with Retry-After, nothing is queued, and the
refusal is counted and audited (docs/limits.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from async_support import bundle, invoke_async, wait_for
from crash_support import query
from donjon.bundle import build_bundle
from harness import LiveNode, start_node

pytestmark = pytest.mark.slow

SLOW = "import time\n\ndef handler(event, context):\n    time.sleep(2)\n    return event\n"
CEILING = 3


@pytest.fixture(scope="module")
def ceiling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    env = {"DONJON_QUEUE_MAX_PENDING": str(CEILING), "DONJON_QUEUE_WORKERS": "1"}
    live = start_node(tmp_path_factory.mktemp("ceiling"), env)
    try:
        yield live
    finally:
        live.stop()


def test_the_nodes_pending_invocations_are_bounded_across_functions(
    ceiling: LiveNode, tmp_path: Path
) -> None:
    """Two functions of one developer, each far under its own `limits.queued`: the
    node's fourth pending invocation is refused whichever function it is for, nothing of
    it is kept, and once the queue has run the node takes events again."""
    node = ceiling
    developer = node.create_key("ceiling-dev", "developer")["key"]
    for name in ("fill-a", "fill-b"):
        with node.client(developer) as c:
            _, archive = build_bundle(bundle(tmp_path, name, SLOW))
            r = c.post(
                "/v1/functions", content=archive, headers={"content-type": "application/gzip"}
            )
            assert r.status_code == 201, r.text
    accepted = [
        invoke_async(node, name, {"n": n}, key=developer)
        for n, name in enumerate(["fill-a", "fill-a", "fill-b"])
    ]
    assert [r.status_code for r in accepted] == [202] * CEILING, [r.text for r in accepted]
    refused = invoke_async(node, "fill-b", {"n": 3}, key=developer)
    assert refused.status_code == 503, refused.text
    assert "DONJON_QUEUE_MAX_PENDING" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) > 0
    assert query(node, "SELECT count(*) FROM invocations")[0][0] == CEILING
    for r in accepted:
        assert wait_for(node, r.json()["invocation_id"], key=developer)["status"] == "succeeded"
    again = invoke_async(node, "fill-b", {"n": 4}, key=developer)
    assert again.status_code == 202, again.text
    with node.client() as c:
        metrics = c.get("/metrics").text
    assert 'limit="node_queued"' in metrics
