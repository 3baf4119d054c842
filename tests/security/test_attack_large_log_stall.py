"""A tenant re-reads its function's large logs to stall every other tenant's calls.

A call's log keeps up to 16 KiB of what it printed; 500 of them (the most one read
returns) of control characters are 49 MB of JSON once escaped. Before: the gateway
rendered that whole list on its event loop, and asyncio's TLS transport encrypted the
whole body in one write there too, at every read: each read held the loop for 0.4 to
0.6 s, every other tenant's calls waiting. Now the list is rendered an entry at a time
on a thread (gateway/stored_views.py) and the body goes out in 256 KiB pieces, the loop
free between them (gateway/body_chunks.py).

The node runs with asyncio's debug mode, whose probe logs every callback that holds
the loop past its bound (`slow_callback_duration`, 0.1 s): a read that stalls the loop
leaves such a line from its request's task.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from harness import LiveNode, start_node
from loop_support import PROBED, slow_request_steps

pytestmark = pytest.mark.slow

NOISY = "def handler(event, context):\n    print('\\x01' * 20000)\n    return 1\n"
MANIFEST = "name: noisy\nhandler: main.handler\nisolation: warm\nlimits: {concurrency: 4}\n"
ENTRIES = 500
READS = 4


@pytest.fixture(scope="module")
def noisy_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNode, str]]:
    """A node in asyncio's debug mode; tenant A's `noisy` (deployed with A's developer key)
    with ENTRIES calls' logs of 16 KiB of control characters each."""
    live = start_node(tmp_path_factory.mktemp("large-logs"), PROBED)
    try:
        key = live.create_key("tenant-a", "developer", ["noisy"])["key"]
        files = {"donjon.yaml": MANIFEST.encode(), "main.py": NOISY.encode()}
        deployed = live.deploy_files(key, files)
        assert deployed.status_code == 201, deployed.text
        with live.client(key) as c:
            for _ in range(ENTRIES):
                assert c.post("/v1/functions/noisy/invoke", content=b"{}").status_code == 200
        yield live, key
    finally:
        live.stop()


def test_rereading_large_logs_does_not_hold_the_loop(noisy_node: tuple[LiveNode, str]) -> None:
    """Tenant A reads its 500 entries (49 MB) four times: each answer is whole, and no
    more than one of the reads has a step of its request hold the loop past 0.1 s (before:
    every read did, for 0.4 to 0.6 s)."""
    node, key = noisy_node
    start = time.time()
    with node.client(key) as c:
        reads = [c.get("/v1/functions/noisy/logs", params={"n": ENTRIES}) for _ in range(READS)]
    end = time.time()
    for r in reads:
        assert r.status_code == 200, r.text[:300]
        entries = r.json()
        assert len(entries) == ENTRIES
        assert all("\x01" * 16000 in e["output"] for e in entries)
        assert r.content == json.dumps(entries, separators=(",", ":"), ensure_ascii=False).encode()
    node.stop()  # its log complete
    slow = slow_request_steps(node, start, end)
    assert len(slow) <= 1, slow
