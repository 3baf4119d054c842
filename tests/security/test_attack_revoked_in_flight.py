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


def test_an_admin_key_revoked_while_its_body_arrives_mints_no_key(node: LiveNode) -> None:
    """A leaked admin key, revoked while its slow `POST /v1/keys` was on its way, minted an
    admin key that outlived the revocation: 401, audited, and no key is made."""
    created = node.create_key("sec-leaked-admin", "admin")

    def body() -> Iterator[bytes]:
        yield b'{"name": "sec-persist", '
        with node.client() as admin:
            assert admin.delete(f"/v1/keys/{created['id']}").status_code == 204
        yield b'"role": "admin"}'

    with node.client(created["key"], fresh_source()) as c:
        r = c.post("/v1/keys", content=body())
    assert_problem(r, 401)
    assert "key" not in r.json()
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "auth.denied"
    assert record["detail"]["reason"].startswith("revoked key")
    with node.client() as c:
        assert "sec-persist" not in [k["name"] for k in c.get("/v1/keys").json()]
