"""GET /v1/functions/{name}/logs: the filters `donjon logs` uses, and bad ones refused."""

from __future__ import annotations

import pytest

from harness import LiveNode


def test_request_id_since_and_after_pick_entries(node: LiveNode) -> None:
    """request_id picks one call; after=cursor gives newer calls; since a future time none."""
    rid = node.invoke("probe", {"op": "echo"}).headers["x-request-id"]
    with node.client() as c:
        (entry,) = c.get("/v1/functions/probe/logs", params={"request_id": rid}).json()
        assert entry["request_id"] == rid and entry["duration_ms"] > 0
        later = node.invoke("probe", {"op": "echo"}).headers["x-request-id"]
        newer = c.get("/v1/functions/probe/logs", params={"after": entry["cursor"]}).json()
        assert [e["request_id"] for e in newer] == [later]
        future = c.get("/v1/functions/probe/logs", params={"since": "4000000000"}).json()
        assert future == []


@pytest.mark.parametrize(
    "params",
    [
        {"since": "nan"},
        {"since": "-1"},
        {"since": "1e999"},
        {"since": "yesterday"},
        {"after": "-1"},
        {"after": "1.5"},
        {"after": "\u00b2"},
        {"after": "9" * 19},
        {"request_id": "x" * 65},
        {"request_id": "a b"},
    ],
)
def test_a_malformed_filter_is_refused(node: LiveNode, params: dict[str, str]) -> None:
    """A filter that is not a time, a cursor or a request id is a 400 problem, not a 500."""
    with node.client() as c:
        r = c.get("/v1/functions/probe/logs", params=params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
