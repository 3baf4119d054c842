"""Invariant 1: nothing runs unauthenticated unless its trigger says `auth: public`.

Every denial is a bare problem document (no hint whether a key exists) and is
in the audit log.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from donjon.gateway.admin import ROUTES
from harness import LiveNode, fresh_source
from sec_support import assert_problem, audit_records

NOBODY = "sec-nobody"  # a function name that is never deployed
UNKNOWN_KEY_ID = "0123456789abcdef"


def _routes(node: LiveNode) -> Iterator[tuple[str, str]]:
    """Every (method, path) behind a bearer credential, from the OpenAPI document and the
    admin table. Public routes, http triggers (their trigger decides) and the SigV4 Lambda
    API are not among them."""
    with node.client() as c:
        doc = c.get("/openapi.json").json()
    seen: set[tuple[str, str]] = set()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters" or op.get("security", doc["security"]) != [{"bearer": []}]:
                continue
            seen.add((method.upper(), path))
    seen |= {(method, path) for path, method, _ in ROUTES}
    seen |= {("POST", "/v1/functions/{name}/invoke"), ("GET", "/metrics"), ("GET", "/openapi.json")}
    for method, path in sorted(seen):
        yield method, path.replace("{name}", NOBODY).replace("{key_id}", UNKNOWN_KEY_ID)


def _send(
    node: LiveNode, method: str, path: str, key: str, source: str | None = None
) -> httpx.Response:
    with node.client(key, source) as c:
        return c.request(method, path, content=b"{}")


def _jwt(header: dict[str, Any], claims: dict[str, Any], sig: bytes = b"") -> str:
    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return ".".join(
        [part(json.dumps(header).encode()), part(json.dumps(claims).encode()), part(sig)]
    )


def test_every_non_public_route_refuses_anonymous_callers(node: LiveNode) -> None:
    """Invoke, every admin route, /metrics and /openapi.json answer 401 without credentials."""
    tried = 0
    for method, path in _routes(node):
        r = _send(node, method, path, "")
        body = assert_problem(r, 401)
        assert body["detail"] == "missing, invalid or revoked credentials", (method, path)
        tried += 1
    assert tried >= 10


def test_anonymous_invoke_of_a_real_function_is_401_like_an_unknown_one(node: LiveNode) -> None:
    """Without credentials, an existing function and a missing one look the same (no 404 oracle)."""
    real = assert_problem(_send(node, "POST", "/v1/functions/probe/invoke", ""), 401)
    missing = assert_problem(_send(node, "POST", f"/v1/functions/{NOBODY}/invoke", ""), 401)
    real.pop("request_id")
    missing.pop("request_id")
    assert real == missing


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_key_trigger_refuses_anonymous_callers(node: LiveNode, method: str) -> None:
    """An http trigger with `auth: key` answers 401 without credentials and never runs."""
    # From a new client: its first denial in the window is a record of its own.
    r = _send(node, method, "/fn/sec-http/key", "", fresh_source())
    assert_problem(r, 401)
    records = audit_records(node, r.headers["x-request-id"])
    assert [rec["action"] for rec in records] == ["auth.denied"]


@pytest.mark.parametrize("credential", ["none", "api-key", "alg-none-jwt", "hs256-jwt"])
def test_jwt_trigger_fails_closed(node: LiveNode, credential: str) -> None:
    """JWT is not configured: an `auth: jwt` trigger refuses everyone, even an admin API key."""
    token = {
        "none": "",
        "api-key": node.admin_key,
        "alg-none-jwt": _jwt({"alg": "none", "typ": "JWT"}, {"sub": "admin", "role": "admin"}),
        "hs256-jwt": _jwt({"alg": "HS256", "typ": "JWT"}, {"sub": "admin"}, b"\x00" * 32),
    }[credential]
    for method in ("GET", "POST"):
        r = _send(node, method, "/fn/sec-http/jwt", token)
        assert_problem(r, 401)
        records = audit_records(node, r.headers["x-request-id"])
        assert "function.invoke" not in [rec["action"] for rec in records]


def _bad_tokens(node: LiveNode) -> dict[str, str]:
    other = node.create_key("sec-other", "invoker")["key"]
    admin = node.admin_key
    admin_id = admin.split("_")[1]
    secret_of_other = other.split("_", 2)[2]
    return {
        "scheme-only": "Bearer",
        "no-scheme": admin,
        "basic-scheme": "Basic " + base64.b64encode(f"admin:{admin}".encode()).decode(),
        "garbage": "Bearer " + secrets.token_urlsafe(40),
        "prefix-only": "Bearer dj_",
        "truncated": "Bearer " + admin[:-1],
        "extended": "Bearer " + admin + "A",
        "two-keys": f"Bearer {admin} {admin}",
        "case-flipped-secret": "Bearer " + admin[:20] + admin[20:].swapcase(),
        "admin-id-random-secret": f"Bearer dj_{admin_id}_{secrets.token_urlsafe(32)}",
        "admin-id-other-secret": f"Bearer dj_{admin_id}_{secret_of_other}",
        "unknown-id": f"Bearer dj_{UNKNOWN_KEY_ID}_{secrets.token_urlsafe(32)}",
        "uppercase-id": "Bearer dj_" + admin_id.upper() + admin[3 + 16 :],
        "other-vendor-shape": "Bearer sk_live_" + secrets.token_hex(24),
        "jwt-shape": "Bearer " + _jwt({"alg": "none"}, {"sub": admin_id}),
        "huge": "Bearer dj_" + "a" * 16 + "_" + "b" * 6000,
        "percent-encoded-nul": "Bearer " + admin[:10] + "%00" + admin[10:],
    }


def test_malformed_and_forged_bearer_tokens_are_refused(node: LiveNode) -> None:
    """Garbage, truncated, spliced and other-shaped tokens all get the same bare 401."""
    details = set()
    for label, header in _bad_tokens(node).items():
        with httpx.Client(base_url=node.url, verify=node.tls, timeout=30) as c:
            for method, path in (
                ("POST", "/v1/functions/probe/invoke"),
                ("GET", "/v1/keys"),
                ("GET", "/fn/sec-http/key"),
            ):
                r = c.request(method, path, headers={"authorization": header}, content=b"{}")
                assert r.status_code == 401, (label, method, path, r.text)
                details.add(assert_problem(r, 401)["detail"])
    assert details == {"missing, invalid or revoked credentials"}


def test_401_does_not_reveal_whether_a_key_id_exists(node: LiveNode) -> None:
    """A live key id with a wrong secret and an unknown id get identical answers and audit lines."""
    admin_id = node.admin_key.split("_")[1]
    answers = []
    for key_id in (admin_id, UNKNOWN_KEY_ID):
        r = _send(
            node, "GET", "/v1/functions", f"dj_{key_id}_{secrets.token_urlsafe(32)}", fresh_source()
        )
        body = assert_problem(r, 401)
        assert key_id not in r.text
        rid = body.pop("request_id")
        (record,) = audit_records(node, rid)
        assert key_id not in json.dumps(record)
        answers.append(
            (
                body,
                sorted(k for k in r.headers if k not in ("x-request-id", "date")),
                record["actor"],
                record["detail"]["reason"],
            )
        )
    assert answers[0] == answers[1]


def test_revoked_key_is_refused_on_the_very_next_request(node: LiveNode) -> None:
    """Revoking a key through the API takes effect on the next request, for every route."""
    created = node.create_key("sec-revoked", "admin")
    key = created["key"]
    assert node.invoke("probe", {"op": "echo"}, key=key).status_code == 200
    with node.client() as c:
        assert c.delete(f"/v1/keys/{created['id']}").status_code == 204
    assert_problem(node.invoke("probe", {"op": "echo"}, key=key), 401)
    assert_problem(_send(node, "GET", "/v1/keys", key), 401)
    assert_problem(_send(node, "GET", "/fn/sec-http/key", key), 401)
    assert_problem(_send(node, "DELETE", f"/v1/keys/{node.admin_key.split('_')[1]}", key), 401)


def test_invoker_limited_to_one_function_cannot_invoke_another(node: LiveNode) -> None:
    """An invoker key for `probe` gets 403 on any other function, by API or http trigger."""
    key = node.create_key("sec-only-probe", "invoker", functions=["probe"])["key"]
    assert node.invoke("probe", {"op": "echo"}, key=key).status_code == 200
    for other in ("probe-warm", "sec-attack", NOBODY):
        body = assert_problem(node.invoke(other, {"op": "echo"}, key=key), 403)
        assert other not in body["detail"]
    assert_problem(_send(node, "POST", "/fn/sec-http/key", key), 403)


@pytest.mark.parametrize("restricted", [False, True])
def test_invoker_cannot_use_admin_routes(node: LiveNode, restricted: bool) -> None:
    """An invoker key gets 403 on every admin route, /metrics included."""
    key = node.create_key("sec-invoker", "invoker", functions=[NOBODY] if restricted else None)[
        "key"
    ]
    for method, path in _routes(node):
        if path.endswith("/invoke") or path == "/openapi.json":
            continue
        if path == "/v1/invocations/{invocation_id}":
            continue  # every caller reads its own; another's is a 404 (test_attack_async_queue)
        assert_problem(_send(node, method, path, key), 403)


def test_developer_cannot_create_list_or_revoke_keys(node: LiveNode) -> None:
    """A developer key cannot mint itself an admin key, list keys, revoke keys or read the audit."""
    dev = node.create_key("sec-developer", "developer")["key"]
    with node.client(dev) as c:
        assert_problem(c.post("/v1/keys", json={"name": "sec-escalated", "role": "admin"}), 403)
        assert_problem(c.get("/v1/keys"), 403)
        assert_problem(c.delete(f"/v1/keys/{node.admin_key.split('_')[1]}"), 403)
        assert_problem(c.get("/v1/audit"), 403)
    with node.client() as c:
        names = [k["name"] for k in c.get("/v1/keys").json()]
    assert "sec-escalated" not in names
    assert node.invoke("probe", {"op": "echo"}).status_code == 200  # the admin key still works


def _denial(node: LiveNode, kind: str) -> httpx.Response:
    # Each from a new client: the first denial of a client in a window is a record of
    # its own (later ones are counted into one record per window: test_attack_denial_flood).
    source = fresh_source()
    if kind == "missing":
        return _send(node, "GET", "/v1/functions", "", source)
    if kind == "garbage":
        return _send(node, "POST", "/v1/functions/probe/invoke", "not-a-key", source)
    if kind == "revoked":
        created = node.create_key("sec-audit-revoked", "invoker")
        with node.client() as c:
            c.delete(f"/v1/keys/{created['id']}")
        return node.invoke("probe", {"op": "echo"}, key=created["key"], source=source)
    if kind == "forbidden":
        key = node.create_key("sec-audit-forbidden", "invoker", functions=["probe"])["key"]
        return node.invoke("probe-warm", {"op": "echo"}, key=key, source=source)
    if kind == "key-trigger":
        return _send(node, "POST", "/fn/sec-http/key", "", source)
    return _send(node, "POST", "/fn/sec-http/jwt", "", source)


@pytest.mark.parametrize(
    "kind", ["missing", "garbage", "revoked", "forbidden", "key-trigger", "jwt-trigger"]
)
def test_denials_are_in_the_audit_log(node: LiveNode, kind: str) -> None:
    """A client's first refused request leaves one `denied` record under its request id."""
    r = _denial(node, kind)
    assert r.status_code in (401, 403)
    records = audit_records(node, r.headers["x-request-id"])
    assert len(records) == 1, records
    assert records[0]["outcome"] == "denied"
    assert records[0]["action"] == ("authz.denied" if r.status_code == 403 else "auth.denied")


def test_key_trigger_never_hands_the_callers_credential_to_the_function(node: LiveNode) -> None:
    """The API key that authenticated an http trigger call does not reach the handler."""
    with node.client() as c:
        r = c.post("/fn/sec-http/key", content=b"hello")
    assert r.status_code == 200, r.text
    assert node.admin_key not in r.text
    assert "authorization" not in r.json()["event"]["headers"]


def test_public_trigger_never_hands_a_platform_key_to_the_function(node: LiveNode) -> None:
    """A Donjon API key sent to an `auth: public` route is not given to the function's code."""
    with node.client() as c:
        r = c.post("/fn/sec-http/public", content=b"hello")
    assert r.status_code == 200, r.text
    assert r.json()["principal"] is None
    assert node.admin_key not in r.text
    with node.client() as c:
        logs = c.get("/v1/functions/sec-http/logs", params={"n": 50}).text
    assert node.admin_key not in logs
