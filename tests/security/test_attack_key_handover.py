"""Taking over a key through its own rotation: the secret a rotation retires, while its
overlap lasts, and a peer's key whose rotation hands over what the peer owns.

A rotation is what one does with a leaked key; the old secret keeps working for the
overlap only. These attacks try to make that old secret (or a key manager of the same
role) outlast the overlap, or become the peer.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from donjon.bundle import build_bundle
from harness import LiveNode, fresh_source
from sec_support import assert_problem, audit_records


def _rotate(node: LiveNode, key_id: str, overlap_s: int, key: str | None = None) -> str:
    """Rotate `key_id` with `key` (the admin's if None); its new secret."""
    with node.client(key) as c:
        r = c.post(f"/v1/keys/{key_id}/rotate", json={"overlap_s": overlap_s})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def _rotation_refused(node: LiveNode, key: str, key_id: str) -> None:
    """Rotating `key_id` with `key` (from a source of its own) is refused: 403, no secret
    handed back, audited `authz.denied`."""
    with node.client(key, fresh_source()) as c:
        r = c.post(f"/v1/keys/{key_id}/rotate", json={"overlap_s": 0})
    assert_problem(r, 403)
    assert "key" not in r.json()
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "authz.denied"


def test_a_retired_secret_cannot_rotate_its_key_into_a_fresh_one(node: LiveNode) -> None:
    """The secret a rotation retired, during its overlap, cannot rotate the key itself: it
    would get a current secret that never ends and lock out the holder of the new one."""
    created = node.create_key("sec-leaked", "invoker")
    new = _rotate(node, created["id"], 3600)
    _rotation_refused(node, created["key"], created["id"])
    assert node.invoke("probe", {"op": "echo"}, key=new).status_code == 200


def test_a_retired_secret_mints_no_key_that_outlives_its_overlap(node: LiveNode) -> None:
    """A key manager's secret that a rotation retired mints no key that outlives the
    overlap (a fresh key would keep the leaked secret's rights for ever); one that ends
    with it is still made."""
    role = f"sec-km-{secrets.token_hex(3)}"
    statement = {"effect": "allow", "actions": ["key:manage"], "resources": ["*"]}
    with node.client() as c:
        assert c.post("/v1/roles", json={"name": role, "statements": [statement]}).is_success
    created = node.create_key("sec-km", role)
    _rotate(node, created["id"], 600)
    with node.client(created["key"], fresh_source()) as c:
        r = c.post("/v1/keys", json={"name": "sec-forever", "role": role})
        assert_problem(r, 403)
        (record,) = audit_records(node, r.headers["x-request-id"])
        assert record["action"] == "authz.denied"
        assert "outlive" in record["detail"]["reason"]
        short = c.post("/v1/keys", json={"name": "sec-short", "role": role, "expires_in_s": 60})
    assert short.status_code == 201, short.text


def _team_role(node: LiveNode) -> str:
    """A custom role that manages its own keys and deploys: a team lead's."""
    role = f"sec-team-{secrets.token_hex(3)}"
    statements = [
        {"effect": "allow", "actions": ["key:manage"], "resources": ["*"]},
        {
            "effect": "allow",
            "actions": ["function:deploy", "function:read", "function:delete"],
            "resources": ["*"],
        },
    ]
    with node.client() as c:
        assert c.post("/v1/roles", json={"name": role, "statements": statements}).is_success
    return role


def test_a_key_manager_cannot_rotate_a_peer_into_its_functions(
    node: LiveNode, tmp_path: Path
) -> None:
    """Rotating a peer's key of the same role hands back its new secret, and with it what
    the peer owns (its functions, which `*` does not reach for anyone else): refused,
    audited, and the peer's function and secret stay its own."""
    role = _team_role(node)
    peer = node.create_key("sec-peer", role)
    manager = node.create_key("sec-lead", role)
    name = f"sec-peers-{secrets.token_hex(3)}"
    d = tmp_path / name
    d.mkdir()
    (d / "donjon.yaml").write_text(f"name: {name}\nhandler: main.handler\nmemory_mb: 64\n")
    (d / "main.py").write_text("def handler(event, context):\n    return 1\n")
    _, archive = build_bundle(d)
    with node.client(peer["key"]) as c:
        r = c.post("/v1/functions", content=archive, headers={"content-type": "application/gzip"})
    assert r.status_code == 201, r.text
    with node.client(manager["key"], fresh_source()) as c:
        assert_problem(c.delete(f"/v1/functions/{name}"), 403)
    _rotation_refused(node, manager["key"], peer["id"])
    _rotate(node, manager["id"], 0, manager["key"])
    with node.client(peer["key"]) as c:
        assert c.get(f"/v1/functions/{name}").status_code == 200
