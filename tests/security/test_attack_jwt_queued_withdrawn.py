"""Async calls queued with a token whose signing key its issuer later withdrew, attacked
on a live node (helper-186's finding, left open then): the token itself is refused once
the node has fetched the issuer's JWKS again, but the calls it had queued ran on, every
retry, for as long as they were kept. Now a queued call keeps the kid of the key that
signed its token, and a delivery whose key the issuer no longer publishes is refused
(401, dead-lettered), as the token would be."""

from __future__ import annotations

from pathlib import Path

from harness import start_node
from jwt_queued_support import (
    assert_refused_for_its_key,
    invoke_status,
    queue_failed_once,
    republish_and_refetch,
)
from jwt_support import SigningKey, jwks_server

ISSUER = ("leaky", "https://leaky.example")


def test_calls_queued_with_a_withdrawn_keys_token_do_not_run(tmp_path: Path) -> None:
    """The issuer withdraws the key that signed a queued call's token: the call is
    refused, as the token now is, while the issuer's current key still works."""
    leaked = SigningKey.generate("leaky-1")
    current = SigningKey.generate("leaky-2", "ES256")
    with jwks_server(tmp_path / "tls") as server:
        env = {"DONJON_JWKS_CA_FILE": str(server.ca_file), "DONJON_JWKS_MAX_AGE_S": "1"}
        node = start_node(tmp_path / "node", env)
        try:
            queued = queue_failed_once(node, tmp_path, server, ISSUER, [leaked, current], leaked)
            republish_and_refetch(node, env, server, ISSUER, [current], leaked, 401)
            assert invoke_status(node, current, ISSUER[1]) == 200  # the current key works
            assert_refused_for_its_key(node, queued)
        finally:
            node.stop()
