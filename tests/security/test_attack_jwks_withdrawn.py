"""An issuer withdrawing a leaked key in a JWKS the node cannot wholly use, attacked on a
live node: the leaked key must stop verifying all the same.

Each issuer publishes two keys over HTTPS on loopback, then withdraws the first (leaked)
in a document that is a JWKS but not one `issuer add` would take: no key left at all
(the IdP's way to revoke everything), only keys of a kind Donjon does not verify with,
or the current key beside a new one Donjon refuses (RSA under 2048 bits). Before, the
refresh failed on such a document and the node went on trusting every key it held,
the leaked one too, for as long as the issuer published it so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from harness import FUNCTIONS, LiveNode, fresh_source, run_cli, start_node
from jwt_support import SigningKey, claims, jwks, jwks_server

AUD = "donjon-api"
# A weak key is the input under test: the node must leave it out, not keep the old keys.
_WEAK = SigningKey("weak-1", "RS256", rsa.generate_private_key(65537, 1024))  # noqa: S505 - the weak key under test
_HMAC = {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ", "kid": "hs-1", "alg": "HS256"}
#: The issuers, by name: what each publishes once its first key is withdrawn (beside
#: its current key, when the flag says so).
_WITHDRAWALS: dict[str, tuple[list[dict[str, Any]], bool]] = {
    "empty": ([], False),
    "unusable": ([_HMAC], False),
    "weak": ([_WEAK.jwk()], True),
}


@dataclass
class Withdrawn:
    node: LiveNode
    leaked: dict[str, SigningKey]
    current: dict[str, SigningKey]

    def send(self, name: str, key: SigningKey) -> httpx.Response:
        token = key.sign(claims(f"https://{name}.example", AUD, roles=["invoker"]))
        with self.node.client(token, fresh_source()) as c:
            return c.post("/v1/functions/sec-http/invoke", content=b"{}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Withdrawn]:
    """A node trusting each issuer of `_WITHDRAWALS` by URL; then each withdraws its
    leaked key, and the node restarts (its stored keys past their age of 1 s)."""
    base = tmp_path_factory.mktemp("jwks-withdrawn")
    leaked = {name: SigningKey.generate(f"{name}-1") for name in _WITHDRAWALS}
    current = {name: SigningKey.generate(f"{name}-2", "ES256") for name in _WITHDRAWALS}
    with jwks_server(base / "tls") as server:
        env = {"DONJON_JWKS_CA_FILE": str(server.ca_file), "DONJON_JWKS_MAX_AGE_S": "1"}
        node = start_node(base / "node", env)
        try:
            node.deploy(FUNCTIONS / "sec-http")
            world = Withdrawn(node, leaked, current)
            for name in _WITHDRAWALS:
                url = server.publish(f"/{name}/jwks", jwks(leaked[name], current[name]))
                run_cli(node.env(), "issuer", "add", name, "--issuer",
                        f"https://{name}.example", "--jwks", url, "--audience", AUD)  # fmt: skip
                assert world.send(name, leaked[name]).status_code == 200
            for name, (others, keep_current) in _WITHDRAWALS.items():
                kept = [current[name].jwk()] if keep_current else []
                server.publish(f"/{name}/jwks", {"keys": kept + others})
            node.stop()
            time.sleep(1.2)
            node.serve_again(env)
            yield world
        finally:
            node.stop()


def _statuses_until_refused(world: Withdrawn, name: str, key: SigningKey) -> list[int]:
    """The statuses of `key`'s tokens, sent until one is refused or 10 s have passed (the
    refresh runs in the background: the first tokens may still pass)."""
    deadline = time.monotonic() + 10
    statuses = [world.send(name, key).status_code]
    while statuses[-1] != 401 and time.monotonic() < deadline:
        time.sleep(0.2)
        statuses.append(world.send(name, key).status_code)
    return statuses


@pytest.mark.parametrize("name", list(_WITHDRAWALS))
def test_a_withdrawn_key_stops_verifying_whatever_else_the_jwks_holds(
    world: Withdrawn, name: str
) -> None:
    """The leaked key's tokens get 401 once the node has fetched the JWKS again; the
    current key, where the issuer still publishes it, keeps working."""
    assert _statuses_until_refused(world, name, world.leaked[name])[-1] == 401
    _, keep_current = _WITHDRAWALS[name]
    assert world.send(name, world.current[name]).status_code == (200 if keep_current else 401)
