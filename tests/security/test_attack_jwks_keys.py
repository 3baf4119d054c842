"""An issuer's keys over time, attacked on a live node: a key the issuer withdrew from its
JWKS (a leaked key, revoked) must stop verifying tokens, not only when some token happens
to name an unknown kid.

Issuer `idp` publishes its JWKS over HTTPS on loopback; the node is told to hold a fetched
key set for 1 second at most (DONJON_JWKS_MAX_AGE_S), so the test need not wait minutes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from harness import FUNCTIONS, LiveNode, fresh_source, run_cli, start_node
from jwt_support import JwksServer, SigningKey, claims, jwks, jwks_server

ISS = "https://idp.example"
AUD = "donjon-api"
PATH = "/idp/jwks"


@dataclass
class KeysWorld:
    node: LiveNode
    server: JwksServer
    env: dict[str, str]
    leaked: SigningKey
    current: SigningKey

    def send(self, key: SigningKey) -> httpx.Response:
        token = key.sign(claims(ISS, AUD, roles=["invoker"]))
        with self.node.client(token, fresh_source()) as c:
            return c.post("/v1/functions/sec-http/invoke", content=b"{}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeysWorld]:
    """A node trusting `idp` by URL, whose JWKS holds two keys, with sec-http deployed."""
    base = tmp_path_factory.mktemp("jwks-keys")
    leaked, current = SigningKey.generate("idp-1"), SigningKey.generate("idp-2", "ES256")
    with jwks_server(base / "tls") as server:
        url = server.publish(PATH, jwks(leaked, current))
        env = {"DONJON_JWKS_CA_FILE": str(server.ca_file), "DONJON_JWKS_MAX_AGE_S": "1"}
        node = start_node(base / "node", env)
        try:
            node.deploy(FUNCTIONS / "sec-http")
            run_cli(node.env(), "issuer", "add", "idp", "--issuer", ISS, "--jwks", url,
                    "--audience", AUD)  # fmt: skip
            yield KeysWorld(node, server, env, leaked, current)
        finally:
            node.stop()


def test_a_key_the_issuer_withdrew_stops_verifying(world: KeysWorld) -> None:
    """idp withdraws idp-1 from its JWKS (leaked): the node's stored keys are past their
    age, so it fetches them again and refuses idp-1's tokens within seconds (before: for
    ever, while no token named an unknown kid), audited as an `issuer.keys` change."""
    assert world.send(world.leaked).status_code == 200
    world.server.publish(PATH, jwks(world.current))
    world.node.stop()  # a restart: the keys it stored are all it knows
    time.sleep(1.2)
    world.node.serve_again(world.env)
    deadline = time.monotonic() + 10
    statuses = []
    while time.monotonic() < deadline:
        statuses.append(world.send(world.leaked).status_code)
        if statuses[-1] == 401:
            break
        time.sleep(0.2)
    assert statuses[-1] == 401, statuses  # 200 only while the refresh is in flight
    assert world.send(world.current).status_code == 200
    with world.node.client() as c:
        tail = c.get("/v1/audit", params={"n": 500}).json()
    taken = [r for r in tail if r["action"] == "issuer.keys" and r["target"] == "issuer:idp"]
    assert [(r["detail"]["previous_key_ids"], r["detail"]["key_ids"]) for r in taken] == [
        (["idp-1", "idp-2"], ["idp-2"])
    ]


def test_stale_keys_are_fetched_at_most_once_a_minute(world: KeysWorld) -> None:
    """Keys past their age with the issuer's JWKS gone (404): tokens of the keys held keep
    working, and a burst of them makes no fetch storm (one fetch a minute at most)."""
    del world.server.documents[PATH]
    before = world.server.fetches.get(PATH, 0)
    time.sleep(1.2)
    for _ in range(10):
        assert world.send(world.current).status_code == 200
    time.sleep(0.5)
    assert world.server.fetches.get(PATH, 0) - before <= 1
