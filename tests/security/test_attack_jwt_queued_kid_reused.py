"""Async calls queued with a leaked key's token, its kid then reused by the issuer for a
new key, attacked on a live node: a queued call kept only the kid of the key that
signed its token, so once the issuer published a new key under that kid the calls the
leaked key had queued ran on, every retry. Now a queued call keeps the fingerprint of
the key itself, and a delivery is refused (401, dead-lettered) unless the issuer's key
under that kid is still that key."""

from __future__ import annotations

import time
from pathlib import Path

from async_support import bundle, invoke_async, wait_for
from harness import FUNCTIONS, fresh_source, run_cli, start_node
from jwt_support import SigningKey, claims, jwks, jwks_server

AUD = "donjon-api"
ISS = "https://reused.example"

FAILS_FIRST = (
    "def handler(event, context):\n"
    "    if context.cloudevent['donjonattempt'] == '1':\n"
    "        raise RuntimeError('first attempt fails')\n"
    "    return {'ran': 'after the kid was given to a new key'}\n"
)


def test_calls_queued_by_a_leaked_key_do_not_run_once_its_kid_names_a_new_key(
    tmp_path: Path,
) -> None:
    """The issuer replaces a leaked key with a new one under the same kid: the calls the
    leaked key's token queued are refused, not run under the new key's kid."""
    leaked = SigningKey.generate("reused-1")
    successor = SigningKey.generate("reused-1")  # the same kid, a different key
    with jwks_server(tmp_path / "tls") as server:
        env = {"DONJON_JWKS_CA_FILE": str(server.ca_file), "DONJON_JWKS_MAX_AGE_S": "1"}
        node = start_node(tmp_path / "node", env)
        try:
            node.deploy(FUNCTIONS / "sec-http")
            retry = "retry: {attempts: 3, backoff_s: 20, max_age_s: 600}\n"
            node.deploy(bundle(tmp_path, "atk-reused", FAILS_FIRST, retry))
            url = server.publish("/reused/jwks", jwks(leaked))
            run_cli(node.env(), "issuer", "add", "reused", "--issuer", ISS,
                    "--jwks", url, "--audience", AUD)  # fmt: skip
            token = leaked.sign(claims(ISS, AUD, roles=["invoker"]))
            r = invoke_async(node, "atk-reused", {}, key=token)
            assert r.status_code == 202, r.text
            invocation_id = r.json()["invocation_id"]
            assert wait_for(node, invocation_id, ("failed",))["attempts"] == 1

            # The issuer publishes its new key under the leaked one's kid; the node
            # fetches its JWKS again (its stored keys past their age after a restart).
            server.publish("/reused/jwks", jwks(successor))
            node.stop()
            time.sleep(1.2)
            node.serve_again(env)
            fresh = successor.sign(claims(ISS, AUD, roles=["invoker"]))
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                with node.client(fresh, fresh_source()) as c:
                    if c.post("/v1/functions/sec-http/invoke", content=b"{}").status_code == 200:
                        break
                time.sleep(0.2)
            else:
                raise AssertionError("the node never took the issuer's new key")
            with node.client(token, fresh_source()) as c:  # the leaked key: refused now
                assert c.post("/v1/functions/sec-http/invoke", content=b"{}").status_code == 401

            dead = wait_for(node, invocation_id)
            assert dead["status"] == "dead", dead
            assert dead["error"]["type"] == "Unauthorized", dead
            assert "no longer publishes the key" in dead["error"]["message"], dead
            assert dead["result"] is None
        finally:
            node.stop()
