"""JWT callers attacked on a live node whose issuers publish their JWKS over HTTPS on loopback.

Issuer `corp` (RS256, JWKS fetched from a URL) may grant invoker only; issuer
`ops` (EdDSA, JWKS given from a file) may grant admin, developer and invoker.
Every forged or invalid token gets 401 (403 when valid but granted no role), is
audited with the check that refused it, and never runs the function.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from harness import FUNCTIONS, LiveNode, fresh_source, run_cli, start_node
from jwt_support import JwksServer, SigningKey, claims, forge, hs256_with, jwks, jwks_server
from sec_support import assert_problem, audit_records

CORP_ISS = "https://corp.example"
OPS_ISS = "https://ops.example"
AUD = "donjon-api"
INVOKE = ("POST", "/v1/functions/sec-http/invoke")
TRIGGER = ("GET", "/fn/sec-http/jwt")


@dataclass
class JwtWorld:
    node: LiveNode
    server: JwksServer
    corp: SigningKey
    ops: SigningKey

    def corp_token(self, **extra: Any) -> str:
        return self.corp.sign({**claims(CORP_ISS, AUD, roles=["invoker"]), **extra})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JwtWorld]:
    """A node trusting `corp` (by URL) and `ops` (by file), with sec-http deployed."""
    base = tmp_path_factory.mktemp("jwt")
    corp, ops = SigningKey.generate("corp-1", "RS256"), SigningKey.generate("ops-1", "EdDSA")
    with jwks_server(base / "tls") as server:
        corp_url = server.publish("/corp/jwks", jwks(corp))
        node = start_node(base / "node", {"DONJON_JWKS_CA_FILE": str(server.ca_file)})
        try:
            node.deploy(FUNCTIONS / "sec-http")
            env = node.env()
            run_cli(env, "issuer", "add", "corp", "--issuer", CORP_ISS, "--jwks", corp_url,
                    "--audience", AUD)  # fmt: skip
            ops_file = base / "ops-jwks.json"
            ops_file.write_text(json.dumps(jwks(ops)))
            run_cli(env, "issuer", "add", "ops", "--issuer", OPS_ISS, "--jwks", str(ops_file),
                    "--audience", AUD, "--allowed-roles", "admin,developer,invoker")  # fmt: skip
            yield JwtWorld(node, server, corp, ops)
        finally:
            node.stop()


def _send(node: LiveNode, route: tuple[str, str], token: str) -> httpx.Response:
    """One request from a new client address, so its denial is an audit record of its own."""
    method, path = route
    with node.client(token, fresh_source()) as c:
        return c.request(method, path, content=b"{}")


def _refused(world: JwtWorld, token: str, reason: str, status: int = 401) -> None:
    """Both the invoke API and the auth: jwt trigger refuse `token`, audited with `reason`."""
    for route in (INVOKE, TRIGGER):
        r = _send(world.node, route, token)
        assert_problem(r, status)
        records = audit_records(world.node, r.headers["x-request-id"])
        actions = [rec["action"] for rec in records]
        assert actions == ["auth.denied" if status == 401 else "authz.denied"], (route, records)
        assert reason in records[0]["detail"]["reason"], records[0]


def test_valid_token_invokes_a_function_and_a_jwt_trigger(world: JwtWorld) -> None:
    """A good corp token runs sec-http by the invoke API and by its auth: jwt trigger."""
    token = world.corp_token()
    r = _send(world.node, INVOKE, token)
    assert r.status_code == 200, r.text
    assert r.json()["principal"] == "jwt:corp:alice"
    r = _send(world.node, TRIGGER, token)
    assert r.status_code == 200, r.text
    assert r.json()["principal"] == "jwt:corp:alice"
    assert token not in json.dumps(r.json()["event"]["headers"])  # the credential stays out
    records = audit_records(world.node, r.headers["x-request-id"])
    assert [(rec["actor"], rec["action"]) for rec in records] == [
        ("jwt:corp:alice", "function.invoke")
    ]


@pytest.mark.parametrize("audience", [AUD, ["other-app", AUD]])
def test_platform_token_sent_to_a_public_trigger_never_reaches_the_function(
    world: JwtWorld, audience: str | list[str]
) -> None:
    """A token of a registered issuer for the platform's audience (here an ops admin's) is a
    platform credential: a public trigger's function never sees it, as with a Donjon key."""
    token = world.ops.sign(claims(OPS_ISS, AUD, roles=["admin"]) | {"aud": audience})
    with world.node.client(token) as c:
        assert c.get("/v1/keys").status_code == 200  # what the function could do with it
        r = c.get("/fn/sec-http/public")
    assert r.status_code == 200, r.text
    assert token not in r.text
    assert "authorization" not in r.json()["event"]["headers"]


def test_a_token_of_the_functions_own_still_reaches_a_public_trigger(world: JwtWorld) -> None:
    """A token the platform would never take (another issuer, or another audience) is the
    function's own business: it is passed on, for the function to check itself."""
    own = [
        world.corp.sign(claims("https://app.example", "app")),
        world.corp.sign(claims(CORP_ISS, "the-apps-own-audience")),
    ]
    for token in own:
        with world.node.client(token) as c:
            r = c.get("/fn/sec-http/public")
        assert r.status_code == 200, r.text
        assert r.json()["event"]["headers"]["authorization"] == f"Bearer {token}"


def test_alg_none_token_is_refused(world: JwtWorld) -> None:
    """alg none with no signature, claiming a real issuer and kid: 401."""
    token = forge({"alg": "none", "typ": "JWT", "kid": "corp-1"}, claims(CORP_ISS, AUD))
    _refused(world, token, "InvalidAlgorithmError")


def test_hs256_signed_with_the_public_key_is_refused(world: JwtWorld) -> None:
    """Algorithm confusion: HS256 keyed with corp's public key PEM: 401."""
    header = {"alg": "HS256", "typ": "JWT", "kid": "corp-1"}
    token = hs256_with(world.corp.public_pem(), header, claims(CORP_ISS, AUD, roles=["invoker"]))
    _refused(world, token, "InvalidAlgorithmError")


def test_expired_token_is_refused(world: JwtWorld) -> None:
    """A token that expired ten minutes ago: 401."""
    past = int(time.time()) - 600
    _refused(world, world.corp_token(iat=past - 300, exp=past), "ExpiredSignatureError")


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_time_claims_that_are_not_numbers_are_refused(world: JwtWorld, claim: str) -> None:
    """exp, iat or nbf as a string of digits (PyJWT reads it with int()): 401, not a token
    whose principal has no expiry (a key it minted could outlive it, key_reach.py)."""
    now = int(time.time())
    value = {"exp": now + 300, "iat": now, "nbf": now}[claim]
    token = world.ops.sign(claims(OPS_ISS, AUD, roles=["admin"], **{claim: str(value)}))
    _refused(world, token, f"{claim} must be a number")


@pytest.mark.parametrize(
    ("claim", "value"), [("exp", 10**400), ("exp", 2**60), ("nbf", -(10**400))]
)
def test_time_claims_beyond_any_date_are_refused(world: JwtWorld, claim: str, value: int) -> None:
    """An ops admin token (signed by its key) whose exp or nbf is far beyond any date: 401,
    audited (an exp of 10**400 was a 500 and no audit record: its principal's expiry,
    float(exp), overflowed; one of 2**60, some 36 billion years ahead, passed)."""
    token = world.ops.sign(claims(OPS_ISS, AUD, roles=["admin"]) | {claim: value})
    _refused(world, token, f"{claim} must be within")


def test_not_yet_valid_token_is_refused(world: JwtWorld) -> None:
    """A token whose nbf is ten minutes ahead: 401."""
    _refused(world, world.corp_token(nbf=int(time.time()) + 600), "ImmatureSignatureError")


def test_wrong_audience_is_refused(world: JwtWorld) -> None:
    """A token corp signed for another service: 401."""
    _refused(world, world.corp_token(aud="some-other-api"), "InvalidAudienceError")


def test_wrong_issuer_is_refused(world: JwtWorld) -> None:
    """A token signed by corp's real key and kid but naming an unregistered iss: 401."""
    _refused(world, world.corp_token(iss="https://evil.example"), "no registered issuer")


def test_unknown_kid_is_refused_without_fetch_storm(world: JwtWorld) -> None:
    """Tokens with a kid corp does not publish: 401, and at most one JWKS refresh."""
    before = world.server.fetches.get("/corp/jwks", 0)
    stranger = SigningKey.generate("corp-9", "RS256")
    for _ in range(3):
        token = stranger.sign(claims(CORP_ISS, AUD, roles=["invoker"]))
        _refused(world, token, "unknown kid")
    assert world.server.fetches.get("/corp/jwks", 0) - before <= 1


def test_right_kid_from_the_wrong_key_pair_is_refused(world: JwtWorld) -> None:
    """A key pair of the attacker's own, labelled with corp's kid: 401."""
    impostor = SigningKey("corp-1", "RS256", SigningKey.generate("x", "RS256").private)
    _refused(world, impostor.sign(claims(CORP_ISS, AUD, roles=["invoker"])), "InvalidSignature")


def test_tampered_payload_is_refused(world: JwtWorld) -> None:
    """A real corp token whose payload is swapped for another sub and roles: 401."""
    head, _, signature = world.corp_token().split(".")
    forged = forge({}, claims(CORP_ISS, AUD, sub="root", roles=["admin"])).split(".")[1]
    _refused(world, f"{head}.{forged}.{signature}", "InvalidSignature")


def test_role_only_another_issuer_may_grant_is_dropped(world: JwtWorld) -> None:
    """corp claiming admin gets no role (403); with invoker too, invoker only, not admin."""
    _refused(world, world.corp_token(roles=["admin"]), "no role that issuer corp may grant", 403)
    both = world.corp_token(roles=["admin", "invoker"])
    r = _send(world.node, ("GET", "/v1/keys"), both)
    assert_problem(r, 403)
    records = audit_records(world.node, r.headers["x-request-id"])
    assert [(rec["actor"], rec["action"]) for rec in records] == [
        ("jwt:corp:alice", "authz.denied")
    ]
    ops_admin = world.ops.sign(claims(OPS_ISS, AUD, sub="root", roles=["admin"]))
    assert _send(world.node, ("GET", "/v1/keys"), ops_admin).status_code == 200


@pytest.mark.parametrize("sub", ["a b", "\u00e5lice", "x" * 256, "https://idp.example/u/7"])
def test_a_jwt_caller_of_any_subject_can_be_throttled_by_hand(world: JwtWorld, sub: str) -> None:
    """A token's sub may be any 1-256 printable characters, and names its principal: an
    operator throttles that principal by hand, and its calls are held to the throttle's
    rate; then lifts it. Before: a sub with a space, a non-ASCII letter or a slash, or
    a long one, was a 400 (or 404), and the caller could not be throttled at all."""
    token = world.corp.sign(claims(CORP_ISS, AUD, sub=sub, roles=["invoker"]))
    assert _send(world.node, INVOKE, token).status_code == 200
    path = "/v1/throttles/" + quote(f"principal:jwt:corp:{sub}", safe="")
    with world.node.client() as c:
        put = c.put(path, json={"reason": "looking into it", "duration_s": 600})
    assert put.status_code == 201, put.text
    assert put.json()["subject"] == f"principal:jwt:corp:{sub}"
    statuses = [_send(world.node, INVOKE, token).status_code for _ in range(12)]
    assert 429 in statuses, statuses  # 10 a minute at most
    with world.node.client() as c:
        assert c.delete(path).status_code in (200, 204)


def test_oversized_token_is_refused(world: JwtWorld) -> None:
    """A validly signed corp token of over 8 KiB: 401, unread."""
    _refused(world, world.corp_token(pad="x" * 9000), "token over 8192 bytes")


def test_malformed_jwks_at_issuer_add_is_refused_and_nothing_stored(world: JwtWorld) -> None:
    """`issuer add` with a JWKS that is not one (URL or inline) fails clearly, storing nothing."""
    node = world.node
    bad_url = world.server.publish("/bad/jwks", b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}')
    done = run_cli(node.env(), "issuer", "add", "bad", "--issuer", "https://bad.example",
                   "--jwks", bad_url, "--audience", AUD, check=False)  # fmt: skip
    assert done.returncode == 1 and "no usable signing key" in done.stderr, done.stderr
    with node.client() as c:
        r = c.post(
            "/v1/issuers",
            json={"name": "bad", "issuer": "https://bad.example", "audience": AUD,
                  "jwks": {"keys": "not a list"}},
        )  # fmt: skip
        assert_problem(r, 400)
        assert "bad" not in [i["name"] for i in c.get("/v1/issuers").json()]
    records = audit_records(node, r.headers["x-request-id"])
    assert [(rec["action"], rec["outcome"]) for rec in records] == [("issuer.add", "refused")]
    token = forge({"alg": "none", "kid": "x"}, claims("https://bad.example", AUD))
    _refused(world, token, "no registered issuer")


def test_only_admins_manage_issuers(world: JwtWorld) -> None:
    """A developer key (or a developer JWT) cannot add, list or remove issuers."""
    developer = world.node.create_key("jwt-dev", "developer")["key"]
    dev_jwt = world.ops.sign(claims(OPS_ISS, AUD, sub="dev", roles=["developer"]))
    for token in (developer, dev_jwt):
        with world.node.client(token) as c:
            assert_problem(c.get("/v1/issuers"), 403)
            assert_problem(c.delete("/v1/issuers/corp"), 403)
            assert_problem(c.post("/v1/issuers", json={}), 403)


def test_removed_issuer_tokens_stop_working(world: JwtWorld, tmp_path: Path) -> None:
    """After `issuer rm`, a token that worked a moment ago gets 401."""
    key = SigningKey.generate("tmp-1", "ES256")
    file = tmp_path / "jwks.json"
    file.write_text(json.dumps(jwks(key)))
    env = world.node.env()
    run_cli(env, "issuer", "add", "temp", "--issuer", "https://temp.example", "--jwks",
            str(file), "--audience", AUD)  # fmt: skip
    assert "temp" in run_cli(env, "issuer", "ls").stdout
    token = key.sign(claims("https://temp.example", AUD, roles=["invoker"]))
    assert _send(world.node, INVOKE, token).status_code == 200
    run_cli(env, "issuer", "rm", "temp")
    _refused(world, token, "no registered issuer")


def test_keys_a_refresh_brings_in_are_audited(world: JwtWorld) -> None:
    """corp's JWKS rotated at its URL, taken on a token's unknown kid (an anonymous request
    makes the node trust a new key): the change is an audit record naming the keys before
    and after."""
    rotated = SigningKey.generate("corp-2", "RS256")
    world.server.publish("/corp/jwks", jwks(world.corp, rotated))
    # A restarted node refreshes at the first unknown kid (no refresh since its start).
    world.node.stop()
    world.node.serve_again({"DONJON_JWKS_CA_FILE": str(world.server.ca_file)})
    token = rotated.sign(claims(CORP_ISS, AUD, roles=["invoker"]))
    assert _send(world.node, INVOKE, token).status_code == 200
    with world.node.client() as c:
        tail = c.get("/v1/audit", params={"n": 500}).json()
    taken = [r for r in tail if r["action"] == "issuer.keys" and r["target"] == "issuer:corp"]
    assert len(taken) == 1, taken
    assert taken[0]["detail"]["key_ids"] == ["corp-1", "corp-2"]
    assert taken[0]["detail"]["previous_key_ids"] == ["corp-1"]
