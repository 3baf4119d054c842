"""Async calls queued with a leaked key's token, its kid then reused by the issuer for a
new key, attacked on a live node: a queued call kept only the kid of the key that
signed its token, so once the issuer published a new key under that kid the calls the
leaked key had queued ran on, every retry. Now a queued call keeps the fingerprint of
the key itself, and a delivery is refused (401, dead-lettered) unless the issuer's key
under that kid is still that key."""

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

ISSUER = ("reused", "https://reused.example")


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
            queued = queue_failed_once(node, tmp_path, server, ISSUER, [leaked], leaked)
            republish_and_refetch(node, env, server, ISSUER, [successor], successor, 200)
            assert invoke_status(node, leaked, ISSUER[1]) == 401  # the leaked key: refused
            assert_refused_for_its_key(node, queued)
        finally:
            node.stop()
