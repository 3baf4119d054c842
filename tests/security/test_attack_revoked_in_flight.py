"""A key revoked while its request is on its way: authenticated at the request's head,
the call ran once its body arrived, after the revocation (a slow body held it open for
as long as the client liked). Against a real node."""

from __future__ import annotations

import json
from collections.abc import Iterator

from harness import LiveNode, fresh_source
from sec_support import assert_problem, audit_records


def test_a_key_revoked_while_its_body_arrives_runs_nothing(node: LiveNode) -> None:
    """The key is revoked between the body's first and last bytes: 401, no call record,
    and the refusal is audited as a revoked key's."""
    created = node.create_key("sec-in-flight", "invoker")

    def body() -> Iterator[bytes]:
        yield b'{"op": '
        with node.client() as admin:
            assert admin.delete(f"/v1/keys/{created['id']}").status_code == 204
        yield json.dumps("echo").encode() + b"}"

    with node.client(created["key"], fresh_source()) as c:
        r = c.post("/v1/functions/probe/invoke", content=body())
    assert_problem(r, 401)
    records = audit_records(node, r.headers["x-request-id"])
    assert [rec["action"] for rec in records] == ["auth.denied"]
    assert records[0]["detail"]["reason"].startswith("revoked key")
