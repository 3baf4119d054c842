"""Async calls queued with a token whose signing key its issuer later withdrew, attacked
on a live node (helper-186's finding, left open then): the token itself is refused once
the node has fetched the issuer's JWKS again, but the calls it had queued ran on, every
retry, for as long as they were kept. Now a queued call keeps the kid of the key that
signed its token, and a delivery whose key the issuer no longer publishes is refused
(401, dead-lettered), as the token would be."""

from __future__ import annotations

import time
from pathlib import Path

from async_support import bundle, invoke_async, wait_for
from harness import FUNCTIONS, fresh_source, run_cli, start_node
from jwt_support import SigningKey, claims, jwks, jwks_server

AUD = "donjon-api"
ISS = "https://leaky.example"

FAILS_FIRST = (
    "def handler(event, context):\n"
    "    if context.cloudevent['donjonattempt'] == '1':\n"
    "        raise RuntimeError('first attempt fails')\n"
    "    return {'ran': 'after the key was withdrawn'}\n"
)


def test_calls_queued_with_a_withdrawn_keys_token_do_not_run(tmp_path: Path) -> None:
    leaked = SigningKey.generate("leaky-1")
    current = SigningKey.generate("leaky-2", "ES256")
    with jwks_server(tmp_path / "tls") as server:
        env = {"DONJON_JWKS_CA_FILE": str(server.ca_file), "DONJON_JWKS_MAX_AGE_S": "1"}
        node = start_node(tmp_path / "node", env)
        try:
            node.deploy(FUNCTIONS / "sec-http")
            retry = "retry: {attempts: 3, backoff_s: 20, max_age_s: 600}\n"
            node.deploy(bundle(tmp_path, "atk-withdrawn", FAILS_FIRST, retry))
            url = server.publish("/leaky/jwks", jwks(leaked, current))
            run_cli(node.env(), "issuer", "add", "leaky", "--issuer", ISS,
                    "--jwks", url, "--audience", AUD)  # fmt: skip
            token = leaked.sign(claims(ISS, AUD, roles=["invoker"]))
            r = invoke_async(node, "atk-withdrawn", {}, key=token)
            assert r.status_code == 202, r.text
            invocation_id = r.json()["invocation_id"]
            assert wait_for(node, invocation_id, ("failed",))["attempts"] == 1

            # The issuer withdraws the leaked key; the node fetches its JWKS again (its
            # stored keys past their age after a restart) on the next token it checks.
            server.publish("/leaky/jwks", jwks(current))
            node.stop()
            time.sleep(1.2)
            node.serve_again(env)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                with node.client(leaked.sign(claims(ISS, AUD, roles=["invoker"])),
                                 fresh_source()) as c:  # fmt: skip
                    if c.post("/v1/functions/sec-http/invoke", content=b"{}").status_code == 401:
                        break
                time.sleep(0.2)
            else:
                raise AssertionError("the node never refused the withdrawn key's tokens")
            fresh = current.sign(claims(ISS, AUD, roles=["invoker"]))
            with node.client(fresh, fresh_source()) as c:  # the issuer's current key works
                assert c.post("/v1/functions/sec-http/invoke", content=b"{}").status_code == 200

            dead = wait_for(node, invocation_id)
            assert dead["status"] == "dead", dead
            assert dead["error"]["type"] == "Unauthorized", dead
            assert "no longer publishes the key" in dead["error"]["message"], dead
            assert dead["result"] is None
        finally:
            node.stop()
