"""A token whose kid makes the node fetch its issuer's JWKS, while an admin removes that
issuer, attacked on a live node: once `issuer rm` has answered, no token of the issuer
may pass, not even one whose check was waiting on the fetch.

Issuer `idp` (which may grant admin) publishes its JWKS over HTTPS on loopback; the
test server holds the fetch until the removal is done (an identity provider, perhaps
the compromised one being removed, answering slowly).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from harness import FUNCTIONS, run_cli, start_node
from jwt_support import SigningKey, claims, jwks, jwks_server
from sec_support import audit_records

ISS = "https://idp.example"
AUD = "donjon-api"
PATH = "/idp/jwks"


def test_a_token_checked_across_its_issuers_removal_is_refused(tmp_path: Path) -> None:
    """The fetch for the token's new kid is held until `issuer rm idp` has answered 204;
    the token, signed by a key idp now publishes, then gets 401 (before: 201, an admin
    key minted by an issuer already removed)."""
    current, rotated = SigningKey.generate("idp-1"), SigningKey.generate("idp-2", "ES256")
    with jwks_server(tmp_path / "tls") as server:
        url = server.publish(PATH, jwks(current))
        env = {"DONJON_JWKS_CA_FILE": str(server.ca_file)}
        node = start_node(tmp_path / "node", env)
        try:
            node.deploy(FUNCTIONS / "sec-http")
            run_cli(node.env(), "issuer", "add", "idp", "--issuer", ISS, "--jwks", url,
                    "--audience", AUD, "--allowed-roles", "admin")  # fmt: skip
            server.publish(PATH, jwks(current, rotated))
            node.stop()  # a restarted node fetches at the first unknown kid
            node.serve_again(env)
            held = server.held[PATH] = threading.Event()
            before = server.fetches.get(PATH, 0)
            token = rotated.sign(claims(ISS, AUD, roles=["admin"]))

            def mint() -> httpx.Response:
                with node.client(token) as c:
                    return c.post("/v1/keys", json={"name": "late", "role": "admin"})

            with ThreadPoolExecutor(1) as pool:
                minting = pool.submit(mint)
                try:
                    for _ in range(100):  # the node is fetching idp's keys for that kid
                        if server.fetches.get(PATH, 0) > before:
                            break
                        threading.Event().wait(0.05)
                    with node.client() as c:
                        assert c.delete("/v1/issuers/idp").status_code == 204
                finally:
                    held.set()
                r = minting.result()
            assert r.status_code == 401, r.text
            records = audit_records(node, r.headers["x-request-id"])
            assert [rec["action"] for rec in records] == ["auth.denied"], records
            assert "removed" in records[0]["detail"]["reason"], records
            with node.client() as c:
                assert "late" not in [k["name"] for k in c.get("/v1/keys").json()]
        finally:
            node.stop()
