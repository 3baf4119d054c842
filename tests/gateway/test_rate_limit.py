"""limits.rate is enforced at the gateway, before any sandbox runs."""

from __future__ import annotations

from harness import LiveNode


def test_rate_limit_refuses_with_429_and_retry_after(node: LiveNode) -> None:
    """A function limited to 3/hour answers three calls, then 429 with Retry-After, audited."""
    statuses = [node.invoke("limited", {}).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = node.invoke("limited", {})
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 60
    assert refused.headers["content-type"] == "application/problem+json"
    with node.client() as c:
        records = c.get("/v1/audit", params={"n": 500}).json()
    assert any(
        r["action"] == "function.throttle" and r["target"].startswith("limited@") for r in records
    )
