"""An audit reader re-reads the largest audit page to stall every other tenant's calls.

`GET /v1/audit?n=10000` (and the timeline's pages) read their records on the audit read
threads, then rendered them on the event loop: 10,000 records held the loop for 0.4 s
and more at each read, every other tenant's calls waiting. Now the page is rendered on
the read thread, a record at a time (gateway/audit_api.py, timeline_api.py,
schemas.rendered_list), and its body goes out in pieces (gateway/body_chunks.py).

The node runs in asyncio's debug mode, whose probe logs a callback that holds the loop
past 0.1 s (tests/loop_support.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from async_support import bundle
from harness import LiveNode, start_node
from loop_support import PROBED, slow_request_steps

pytestmark = pytest.mark.slow

RECORDS = 10_000
READS = 4


@pytest.fixture(scope="module")
def full_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNode, str]]:
    """A node whose audit log holds RECORDS calls' records, served again in asyncio's debug
    mode; an auditor's key. The calls are the set-up, not the attack: they run on a node
    coverage does not trace (`measured=False`); the node served again for the reads is
    measured."""
    root = tmp_path_factory.mktemp("large-audit")
    live = start_node(root / "node", measured=False)
    try:
        live.deploy(bundle(root, "tick", "def handler(e, c):\n    return 1\n", "isolation: warm\n"))
        auditor = live.create_key("auditor", "auditor")["key"]

        def calls(count: int) -> None:
            with live.client() as c:
                for _ in range(count):
                    assert c.post("/v1/functions/tick/invoke", content=b"{}").status_code == 200

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(calls, [RECORDS // 4] * 4))
        live.stop()
        live.serve_again(PROBED)
        yield live, auditor
    finally:
        live.stop()


def test_rereading_the_largest_audit_page_does_not_hold_the_loop(
    full_log: tuple[LiveNode, str],
) -> None:
    """The auditor reads 10,000 records four times (and the timeline's largest page
    once): each answer is whole, and no more than one read has a step of its request hold
    the loop past 0.1 s (before: every read did)."""
    node, auditor = full_log
    start = time.time()
    with node.client(auditor) as c:
        pages = [c.get("/v1/audit", params={"n": RECORDS}) for _ in range(READS)]
        timeline = c.get("/v1/audit/timeline", params={"n": 1000})
    end = time.time()
    for page in pages:
        assert page.status_code == 200, page.text[:300]
        records = page.json()
        assert len(records) == RECORDS
        assert records[-1]["seq"] - records[0]["seq"] == RECORDS - 1
    assert timeline.status_code == 200, timeline.text[:300]
    assert len(timeline.json()["records"]) == 1000
    node.stop()  # its log complete
    slow = slow_request_steps(node, start, end)
    assert len(slow) <= 1, slow
