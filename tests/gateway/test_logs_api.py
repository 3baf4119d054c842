"""GET /v1/functions/{name}/logs: the filters `donjon logs` uses, and bad ones refused."""

from __future__ import annotations

from pathlib import Path

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


def test_a_name_never_deployed_is_not_found_and_a_removed_functions_logs_stay(
    node: LiveNode, tmp_path: Path
) -> None:
    """To an admin: a name never deployed is a 404 (a mistake, not a function without
    calls); a function deployed and not yet called has no entries; once called and
    removed its entries are still there. A developer that never owned either gets 403
    for both names alike."""
    fn = tmp_path / "logs-gone"
    fn.mkdir(mode=0o755)
    (fn / "main.py").write_text("def handler(event, context):\n    return 1\n")
    (fn / "donjon.yaml").write_text("name: logs-gone\nhandler: main.handler\n")
    fn.chmod(0o755)
    with node.client() as c:
        never = c.get("/v1/functions/logs-never/logs")
        assert never.status_code == 404, never.text
        assert never.json()["detail"] == "no function named 'logs-never' was ever deployed"
        node.deploy(fn)
        assert c.get("/v1/functions/logs-gone/logs").json() == []
        rid = node.invoke("logs-gone", {}).headers["x-request-id"]
        assert c.delete("/v1/functions/logs-gone").status_code in (200, 204)
        entries = c.get("/v1/functions/logs-gone/logs").json()
        assert [e["request_id"] for e in entries] == [rid]
        assert c.get("/v1/functions/logs-gone/logs", params={"since": "4000000000"}).json() == []
    # A developer's `*` reaches only what it owned (gateway/history.py): refused alike.
    developer = node.create_key("logs-developer", "developer")["key"]
    with node.client(developer) as c:
        for name in ("logs-never", "logs-gone"):
            refused = c.get(f"/v1/functions/{name}/logs")
            assert refused.status_code == 403, refused.text
