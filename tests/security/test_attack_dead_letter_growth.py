"""An owner grows the dead-letter queue without bound by removing and renaming functions.

Each function keeps at most DONJON_QUEUE_MAX_DEAD dead letters and one principal owns at
most DONJON_MAX_FUNCTIONS_PER_OWNER functions, but dead letters are kept until redriven
or purged, also after their function is removed. Before: a developer key deployed a
function that fails every event, filled its dead-letter queue, removed it and deployed
the next name, again and again, each round keeping another queue's worth of dead letters
(each up to the largest event, 6 MiB). Now a removed function whose dead letters (or
pending invocations) remain still counts as owned (lifecycle/deploy_rights.py): the deploy
of one name too many is refused, naming them, and nothing of them is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from async_support import invoke_async, wait_for
from harness import LiveNode, start_node

pytestmark = pytest.mark.slow

FAILS = "def handler(event, context):\n    raise RuntimeError('always')\n"
MAX_OWNED = 2


def _files(name: str) -> dict[str, bytes]:
    manifest = f"name: {name}\nhandler: main.handler\nretry: {{attempts: 1}}\n"
    return {"donjon.yaml": manifest.encode(), "main.py": FAILS.encode()}


@pytest.fixture(scope="module")
def owned_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node where a principal owns at most MAX_OWNED functions."""
    live = start_node(
        tmp_path_factory.mktemp("dead-growth"),
        {"DONJON_MAX_FUNCTIONS_PER_OWNER": str(MAX_OWNED)},
    )
    try:
        yield live
    finally:
        live.stop()


def _dead_then_removed(node: LiveNode, key: str, name: str) -> str:
    """Deploy `name` as `key`, dead-letter one event of it, remove it; the dead one's id."""
    deployed = node.deploy_files(key, _files(name))
    assert deployed.status_code == 201, deployed.text
    queued = invoke_async(node, name, {"n": 1}, key)
    assert queued.status_code == 202, queued.text
    invocation_id: str = queued.json()["invocation_id"]
    assert wait_for(node, invocation_id, key=key)["status"] == "dead"
    with node.client(key) as c:
        assert c.delete(f"/v1/functions/{name}").status_code == 204
    return invocation_id


def _dead(node: LiveNode) -> set[str]:
    with node.client() as c:
        listed = c.get("/v1/dlq")
    assert listed.status_code == 200, listed.text
    return {d["invocation_id"] for d in listed.json()}


def test_removed_functions_dead_letters_count_against_the_owner(owned_node: LiveNode) -> None:
    """After two rounds of deploy, dead-letter, remove, a third name is refused (403, naming
    the removed functions, nothing deployed) and both dead letters are still there; the
    owner may deploy a removed name again (its dead letters already count), and once an
    admin purges one removed function's dead letters, the third name deploys."""
    node = owned_node
    key = node.create_key("tenant-a", "developer")["key"]
    first = _dead_then_removed(node, key, "gone-0")
    second = _dead_then_removed(node, key, "gone-1")

    refused = node.deploy_files(key, _files("gone-2"))
    assert refused.status_code == 403, refused.text
    assert "gone-0, gone-1" in refused.json()["detail"]
    assert "dlq purge" in refused.json()["detail"]
    with node.client() as c:
        assert c.get("/v1/functions/gone-2").status_code == 404
    assert {first, second} <= _dead(node)

    again = node.deploy_files(key, _files("gone-0"))
    assert again.status_code == 201, again.text
    with node.client(key) as c:
        assert c.delete("/v1/functions/gone-0").status_code == 204

    with node.client() as c:
        purged = c.delete("/v1/dlq", params={"function": "gone-1"})
    assert purged.status_code == 200 and purged.json()["purged"] == 1, purged.text
    assert first in _dead(node) and second not in _dead(node)
    third = node.deploy_files(key, _files("gone-2"))
    assert third.status_code == 201, third.text


def test_another_owner_is_not_held_by_those_dead_letters(owned_node: LiveNode) -> None:
    """Another developer's first deploys are not refused for tenant A's dead letters."""
    node = owned_node
    key = node.create_key("tenant-b", "developer")["key"]
    for name in ("other-0", "other-1"):
        deployed = node.deploy_files(key, _files(name))
        assert deployed.status_code == 201, deployed.text
