"""A tenant with many large manifests lists its functions to stall every other tenant's calls.

A manifest is up to 64 KiB of YAML, stored as JSON (escaped: an `é` is six bytes there),
and one principal may own hundreds of functions. Before: `GET /v1/functions` parsed each
stored manifest and rendered the whole list on the gateway's event loop, every other
tenant's calls waiting while it was made, at every read. Now a list whose stored manifests
are large is made on a thread of the stored views (gateway/stored_views.py), an entry at a
time, and the answer is the same.

The node runs with asyncio's debug mode, whose probe logs every callback that holds the
loop past its bound (`slow_callback_duration`, 0.1 s): a list made on the loop leaves
such a line from its request's task (tests/loop_support.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import LiveNode, start_node
from loop_support import PROBED, slow_request_steps, while_another_calls

pytestmark = pytest.mark.slow

TINY = "def handler(event, context):\n    return {'ok': True}\n"
#: Functions of tenant A, each a manifest of 58 KB: 1,700 egress grants and a schema's
#: description of 15,000 characters (the list is 8.5 MB of JSON).
FUNCTIONS = 150
DESCRIPTION = "x" * 15_000
GRANTS = [f"h{i:04d}.example.com:443" for i in range(1700)]
READS = 3


def _manifest(name: str) -> bytes:
    grants = ", ".join(f'"{g}"' for g in GRANTS)
    return (
        f"name: {name}\nhandler: main.handler\n"
        f'input_schema: {{type: object, description: "{DESCRIPTION}"}}\n'
        f"permissions: {{egress: [{grants}]}}\n"
    ).encode()


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNode, str, str]]:
    """A node in asyncio's debug mode; tenant A's FUNCTIONS large-manifest functions (its
    developer key deployed them) and tenant B's warm `tiny`.

    The deploys are the set-up, not the attack: they run on a node coverage does not
    trace (`measured=False`), which is then served again, measured and in debug mode,
    for the reads (under coverage the traced deploys were the suite's longest set-up,
    207 s in a CI run)."""
    live = start_node(tmp_path_factory.mktemp("function-list"), measured=False)
    try:
        a = live.create_key("tenant-a", "developer")["key"]

        def deploy(i: int) -> None:
            files = {"donjon.yaml": _manifest(f"big-{i}"), "main.py": TINY.encode()}
            deployed = live.deploy_files(a, files)
            assert deployed.status_code == 201, deployed.text

        # Two at a time, as many as a principal may have in progress (the suite's longest
        # set-up: 262 s one at a time in a suite run).
        with ThreadPoolExecutor(2) as deploys:
            list(deploys.map(deploy, range(FUNCTIONS)))
        b = live.create_key("tenant-b", "developer")["key"]
        tiny = {"donjon.yaml": b"name: tiny\nhandler: main.handler\nisolation: warm\n"}
        assert live.deploy_files(b, {**tiny, "main.py": TINY.encode()}).status_code == 201
        live.stop()
        live.serve_again(PROBED)
        yield live, a, b
    finally:
        live.stop()


def test_a_large_list_reads_as_a_small_one_does(tenants: tuple[LiveNode, str, str]) -> None:
    """Tenant A's list names its functions only, each with its whole manifest, rendered as
    the gateway renders any answer (compact, UTF-8); tenant B's names only its own."""
    node, a, b = tenants
    with node.client(a) as c:
        mine = c.get("/v1/functions")
    with node.client(b) as c:
        theirs = c.get("/v1/functions")
    assert mine.status_code == 200 and theirs.status_code == 200
    views = mine.json()
    assert sorted(v["name"] for v in views) == sorted(f"big-{i}" for i in range(FUNCTIONS))
    assert all(v["manifest"]["input_schema"]["description"] == DESCRIPTION for v in views)
    assert mine.content == json.dumps(views, separators=(",", ":"), ensure_ascii=False).encode()
    assert [v["name"] for v in theirs.json()] == ["tiny"]


def test_listing_many_large_manifests_does_not_stall_another_tenant(
    tenants: tuple[LiveNode, str, str],
) -> None:
    """While tenant A lists its functions three times, tenant B's calls of its own
    function keep completing, and no more than one of the reads has a step of its request
    hold the loop past 0.1 s (before: every read did)."""
    node, a, b = tenants
    start = time.time()
    with node.client(a) as c:
        reads, statuses = while_another_calls(
            node, b, "tiny", lambda: [c.get("/v1/functions") for _ in range(READS)]
        )
    end = time.time()
    assert [r.status_code for r in reads] == [200] * READS, reads[0].text[:300]
    assert all(len(r.json()) == FUNCTIONS for r in reads)
    assert statuses and set(statuses) == {200}, statuses
    node.stop()  # its log complete
    slow = slow_request_steps(node, start, end)
    assert len(slow) <= 1, slow
