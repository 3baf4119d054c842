"""A custom role that happens to be named `jwt`, the stand-in role an async delivery gives
a token's event queued before events kept their roles: such a token's queued events were
taken for those old ones, and ran without being decided again. Against a real node."""

from __future__ import annotations

import secrets
from pathlib import Path

from async_support import bundle, invoke_async, wait_for
from harness import LiveNode
from jwt_support import SigningKey, claims, jwks

FAILS_FIRST = (
    "def handler(event, context):\n"
    "    if context.cloudevent['donjonattempt'] == '1':\n"
    "        raise RuntimeError('first attempt fails')\n"
    "    return {'ran': 'after the role denied it'}\n"
)


def test_queued_events_of_a_token_whose_role_is_named_jwt_are_decided_again(
    node: LiveNode, tmp_path: Path
) -> None:
    """The role `jwt` changed to deny the function stops its tokens' queued invocations:
    the next attempt is refused (403), dead, as for any other role."""
    tag = secrets.token_hex(3)
    name = f"sec-jwt-role-{tag}"
    node.deploy(bundle(tmp_path, name, FAILS_FIRST, "retry: {attempts: 3, backoff_s: 6}\n"))
    allow = {"effect": "allow", "actions": ["function:invoke"], "resources": ["*"]}
    key = SigningKey.generate(f"jr-{tag}", "ES256")
    iss = f"https://jr-{tag}.example"
    issuer = {
        "name": f"sec-jr-{tag}",
        "issuer": iss,
        "audience": "donjon",
        "jwks": jwks(key),
        "allowed_roles": ["jwt"],
    }
    with node.client() as c:
        assert c.post("/v1/roles", json={"name": "jwt", "statements": [allow]}).is_success
        assert c.post("/v1/issuers", json=issuer).status_code == 201
    token = key.sign(claims(iss, "donjon", roles=["jwt"]))
    r = invoke_async(node, name, {}, key=token)
    assert r.status_code == 202, r.text
    invocation_id = r.json()["invocation_id"]
    assert wait_for(node, invocation_id, ("failed",))["attempts"] == 1
    deny = {"effect": "deny", "actions": ["function:invoke"], "resources": [name]}
    with node.client() as c:
        assert c.post("/v1/roles", json={"name": "jwt", "statements": [allow, deny]}).is_success
    assert node.invoke(name, {}, token).status_code == 403
    dead = wait_for(node, invocation_id)
    assert dead["status"] == "dead", dead
    assert dead["error"]["type"] == "Forbidden"
    assert dead["result"] is None
