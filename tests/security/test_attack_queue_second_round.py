"""Attacks on schedules and the async queue, second round: a token's queued events run
after its role was changed to deny the function."""

from __future__ import annotations

from pathlib import Path

from async_support import bundle, invoke_async, wait_for
from harness import LiveNode
from jwt_support import SigningKey, claims, jwks

FAILS_FIRST = (
    "def handler(event, context):\n"
    "    if context.cloudevent['donjonattempt'] == '1':\n"
    "        raise RuntimeError('first attempt fails')\n"
    "    return {'ran': 'after its role denied it'}\n"
)
RETRY = "retry: {attempts: 3, backoff_s: 6, max_age_s: 600}\n"


def test_queued_events_of_a_token_its_role_no_longer_allows_do_not_run(
    node: LiveNode, tmp_path: Path
) -> None:
    """A role changed to deny the function stops the async invocations a token granted that
    role queued, as it stops a key's: the next attempt is refused (403), dead."""
    node.deploy(bundle(tmp_path, "atk-jwt-denied", FAILS_FIRST, RETRY))
    role = "atk-jwt-denied-role"
    allow = {"effect": "allow", "actions": ["function:invoke"], "resources": ["atk-*"]}
    signing = SigningKey.generate("jwt-denied-1", "ES256")
    issuer = {
        "name": "atk-jwt-denied",
        "issuer": "https://jwt-denied.example",
        "audience": "donjon",
        "jwks": jwks(signing),
        "allowed_roles": [role],
    }
    with node.client() as c:
        r = c.post("/v1/roles", json={"name": role, "statements": [allow]})
        assert r.status_code in (200, 201), r.text
        assert c.post("/v1/issuers", json=issuer).status_code == 201
    token = signing.sign(claims("https://jwt-denied.example", "donjon", roles=[role]))
    r = invoke_async(node, "atk-jwt-denied", {}, key=token)
    assert r.status_code == 202, r.text
    invocation_id = r.json()["invocation_id"]
    assert wait_for(node, invocation_id, ("failed",))["attempts"] == 1
    deny = {"effect": "deny", "actions": ["function:invoke"], "resources": ["atk-jwt-*"]}
    with node.client() as c:
        r = c.post("/v1/roles", json={"name": role, "statements": [allow, deny]})
        assert r.status_code in (200, 201), r.text
    assert node.invoke("atk-jwt-denied", {}, token).status_code == 403
    dead = wait_for(node, invocation_id)
    assert dead["status"] == "dead", dead
    assert dead["error"]["type"] == "Forbidden"
    assert dead["result"] is None
