"""A tenant's http function answering 6 MiB proxy responses, to keep the gateway's one
event loop busy for every other tenant: the loop used to parse the whole result and
serialise a body that is not a string again (about 0.3 s a call); now the function's
own worker splits it, and the gateway parses its small head only
(tests/gateway/test_http_result_split.py counts what the gateway parses)."""

from __future__ import annotations

import json

from harness import LiveNode
from sec_support import Ready, audit_records


def test_large_proxy_response_is_served_whole(node: LiveNode, started: Ready) -> None:
    """A 6 MB body that is not a string reaches the caller whole, as the JSON it was."""
    started("sec-reply")
    with node.client("") as c:
        r = c.get("/fn/sec-reply", params={"case": "large-list"})
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.content == json.dumps([0] * 2_000_000).encode()
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["outcome"] == "ok"
