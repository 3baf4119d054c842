"""Async calls queued with a token, then the issuer's JWKS changed under them: the steps
the attacks on queued token calls share (test_attack_jwt_queued_*.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from async_support import bundle, invoke_async, wait_for
from harness import FUNCTIONS, LiveNode, fresh_source, run_cli
from jwt_support import JwksServer, SigningKey, claims, jwks

AUD = "donjon-api"

#: Its first attempt fails: the call waits, queued, for a retry.
FAILS_FIRST = (
    "def handler(event, context):\n"
    "    if context.cloudevent['donjonattempt'] == '1':\n"
    "        raise RuntimeError('first attempt fails')\n"
    "    return {'ran': 'after its key was withdrawn or replaced'}\n"
)


def queue_failed_once(
    node: LiveNode,
    tmp_path: Path,
    server: JwksServer,
    issuer: tuple[str, str],
    published: list[SigningKey],
    signer: SigningKey,
) -> str:
    """Deploy sec-http and a function whose first attempt fails, add `issuer` (its name
    and `iss`) publishing `published`, and queue a call with `signer`'s token: its id,
    once its first attempt has failed."""
    name, iss = issuer
    node.deploy(FUNCTIONS / "sec-http")
    retry = "retry: {attempts: 3, backoff_s: 20, max_age_s: 600}\n"
    node.deploy(bundle(tmp_path, "atk-queued", FAILS_FIRST, retry))
    url = server.publish(f"/{name}/jwks", jwks(*published))
    run_cli(node.env(), "issuer", "add", name, "--issuer", iss,
            "--jwks", url, "--audience", AUD)  # fmt: skip
    r = invoke_async(node, "atk-queued", {}, key=signer.sign(claims(iss, AUD, roles=["invoker"])))
    assert r.status_code == 202, r.text
    invocation_id: str = r.json()["invocation_id"]
    assert wait_for(node, invocation_id, ("failed",))["attempts"] == 1
    return invocation_id


def republish_and_refetch(
    node: LiveNode, env: dict[str, str], server: JwksServer, issuer: tuple[str, str],
    published: list[SigningKey], answers: SigningKey, status: int,
) -> None:  # fmt: skip
    """The issuer publishes `published`; the node fetches its JWKS again (its stored keys
    past their age after a restart) once a call with `answers`' token gets `status`."""
    name, iss = issuer
    server.publish(f"/{name}/jwks", jwks(*published))
    node.stop()
    time.sleep(1.2)
    node.serve_again(env)
    token = answers.sign(claims(iss, AUD, roles=["invoker"]))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with node.client(token, fresh_source()) as c:
            if c.post("/v1/functions/sec-http/invoke", content=b"{}").status_code == status:
                return
        time.sleep(0.2)
    raise AssertionError(f"the node never answered {answers.kid}'s token {status}")


def invoke_status(node: LiveNode, signer: SigningKey, iss: str) -> int:
    """The status of a sync call with a fresh token of `signer`."""
    with node.client(signer.sign(claims(iss, AUD, roles=["invoker"])), fresh_source()) as c:
        status: int = c.post("/v1/functions/sec-http/invoke", content=b"{}").status_code
    return status


def assert_refused_for_its_key(node: LiveNode, invocation_id: str) -> None:
    """The queued call was dead-lettered, unrun, for the key that signed its token."""
    dead: dict[str, Any] = wait_for(node, invocation_id)
    assert dead["status"] == "dead", dead
    assert dead["error"]["type"] == "Unauthorized", dead
    assert "no longer publishes the key" in dead["error"]["message"], dead
    assert dead["result"] is None
