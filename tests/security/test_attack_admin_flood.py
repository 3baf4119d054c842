"""A key floods the admin API: the audit reads a scoped auditor may make, and any other
admin route. Each principal has a bucket of its own for the admin API
(DONJON_ADMIN_RATE_PER_PRINCIPAL, DONJON_ADMIN_BURST_PER_PRINCIPAL): past it a request
is refused 429 with Retry-After before any work, counted, and audited as one
`admin.throttle` record per caller and window; other principals are served as before.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import FUNCTIONS, LiveNode, start_node

pytestmark = pytest.mark.slow

#: Requests each principal may make at once; one an hour after that.
BURST = 12


@pytest.fixture(scope="module")
def flood_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = start_node(
        tmp_path_factory.mktemp("admin-flood"),
        {
            "DONJON_ADMIN_RATE_PER_PRINCIPAL": "1/hour",
            "DONJON_ADMIN_BURST_PER_PRINCIPAL": str(BURST),
        },
    )
    try:
        live.deploy(FUNCTIONS / "probe")
        yield live
    finally:
        live.stop()


def test_scoped_auditor_cannot_flood_the_audit_reads(flood_node: LiveNode) -> None:
    """An auditor key scoped to one function reads the audit log and its timeline (the
    reads that filter the whole log for it) past its admin bucket: the rest are 429 with
    Retry-After and the RateLimit fields, its refusals are audited, the admin is served."""
    created = flood_node.create_key("sec-flood-auditor", "auditor", ["probe"])
    key = created["key"]
    statuses = []
    with flood_node.client(key) as c:
        for i in range(BURST + 6):
            path = "/v1/audit" if i % 2 else "/v1/audit/timeline"
            r = c.get(path, params={"n": "1000"})
            statuses.append(r.status_code)
            if r.status_code == 429:
                refused = r
    assert statuses == [200] * BURST + [429] * 6, statuses
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-policy"].startswith('"admin"')
    assert refused.headers["content-type"] == "application/problem+json"
    with flood_node.client() as c:
        records = c.get("/v1/audit", params={"n": "200"})
        assert records.status_code == 200, records.text
    throttles = [r for r in records.json() if r["action"] == "admin.throttle"]
    assert throttles and all(r["actor"] == f"key:{created['id']}" for r in throttles), throttles
    assert throttles[0]["detail"]["bucket"] == "admin"


def test_key_flooding_any_admin_route_is_refused_before_the_work(flood_node: LiveNode) -> None:
    """An invoker key sends admin requests it may not make (403s, each one authorized and
    audited), listings it may, and invocation lookups (404s): past its admin bucket each
    is 429 before any of that."""
    key = flood_node.create_key("sec-flood-invoker", "invoker", ["probe"])["key"]
    # Routes behind guarded(), and the three reads outside it: an invocation's status (a
    # store read), the metrics (a count of the queue) and the API's description (170 KB of
    # JSON rendered on the event loop).
    paths = ["/v1/keys", "/v1/functions", "/v1/invocations/none", "/metrics", "/openapi.json"]
    with flood_node.client(key) as c:
        statuses = [c.get(paths[i % len(paths)]).status_code for i in range(BURST + 4)]
    assert statuses[BURST:] == [429] * 4, statuses
    assert 429 not in statuses[:BURST], statuses
    # Invoking is not an admin request: its own buckets, untouched.
    assert flood_node.invoke("probe", {"op": "echo"}, key).status_code == 200
