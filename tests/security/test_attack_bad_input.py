"""Invariant 8 for identity and the vault (issue 10, item 9): bad input of every kind gets a
clear error and changes nothing.

Each test sends one kind of bad input to a live node, by the API (and the CLI
where the CLI reads it first), and checks three things: the problem document
(status, what is wrong and, for admin requests, how to fix it), that the
listing it would have changed is the same after as before, and the audit
records each refused request left (none, or the one the design calls for).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import ECAlgorithm

from harness import LiveNode, fresh_source, run_cli
from jwt_support import SigningKey, jwks
from sec_support import assert_problem, audit_records

#: (method, path, keyword arguments for httpx, status, what the detail must say)
Case = tuple[str, str, dict[str, Any], int, str]

GOOD_STATEMENT = {"effect": "allow", "actions": ["audit:read"], "resources": ["*"]}


def _listing(node: LiveNode, path: str) -> Any:
    """What GET `path` lists, without the fields a request changes by itself (last use)."""
    with node.client() as c:
        r = c.get(path)
    assert r.status_code == 200, r.text
    rows = r.json()
    for row in rows:
        row.pop("last_used_at", None)
    return rows


@contextmanager
def _unchanged(node: LiveNode, path: str) -> Iterator[None]:
    """The listing at `path` is the same after the block as before it."""
    before = _listing(node, path)
    yield
    assert _listing(node, path) == before


def _refused(
    node: LiveNode, case: Case, audited: list[tuple[str, str]], *, hint: bool = True
) -> None:
    """Send `case`; its problem document says what is wrong; its audit records are `audited`."""
    method, path, kwargs, status, says = case
    with node.client(source=fresh_source()) as c:
        r = c.request(method, path, **kwargs)
    body = assert_problem(r, status)
    assert says in body["detail"], (case[:2], body)
    if hint:  # the hint follows the message in parentheses
        assert body["detail"].endswith(")"), body
    records = audit_records(node, r.headers["x-request-id"])
    assert [(rec["action"], rec["outcome"]) for rec in records] == audited, (says, records)


def _role(**fields: Any) -> dict[str, Any]:
    return {"name": "sec-bad-role", "statements": [GOOD_STATEMENT], **fields}


def test_malformed_role_documents_change_nothing(node: LiveNode, tmp_path: Path) -> None:
    """Not JSON, wrong types, empty, unknown action or field, bad pattern, oversized: 400/413."""
    cases: list[Case] = [
        ("POST", "/v1/roles", {"content": b"name: x\nstatements: ["}, 400, "not valid JSON"),
        ("POST", "/v1/roles", {"json": [GOOD_STATEMENT]}, 400, "valid dictionary"),
        ("POST", "/v1/roles", {"json": _role(name=5)}, 400, "name: Input should be"),
        ("POST", "/v1/roles", {"json": _role(statements="all")}, 400, "statements: Input"),
        ("POST", "/v1/roles", {"json": _role(statements=[])}, 400, "at least one statement"),
        (
            "POST",
            "/v1/roles",
            {"json": _role(statements=[{**GOOD_STATEMENT, "actions": "audit:read"}])},
            400,
            "statements.0.actions",
        ),
        (
            "POST",
            "/v1/roles",
            {"json": _role(statements=[{**GOOD_STATEMENT, "actions": ["fn:run"]}])},
            400,
            "unknown action 'fn:run'",
        ),
        (
            "POST",
            "/v1/roles",
            {"json": _role(statements=[{**GOOD_STATEMENT, "resources": ["a*b"]}])},
            400,
            "bad resource pattern",
        ),
        (
            "POST",
            "/v1/roles",
            {"json": _role(statements=[{**GOOD_STATEMENT, "effect": "maybe"}])},
            400,
            "'allow' or 'deny'",
        ),
        ("POST", "/v1/roles", {"json": _role(owner="me")}, 400, "owner: Extra inputs"),
        ("POST", "/v1/roles", {"json": _role(name="Admin!")}, 400, "a role name is"),
        (
            "POST",
            "/v1/roles",
            {"json": _role(statements=[GOOD_STATEMENT] * 300)},
            400,
            "at most 256",
        ),
        (
            "POST",
            "/v1/roles",
            {"json": _role(statements=[GOOD_STATEMENT] * 2000)},
            413,
            "over 65536 bytes",
        ),
    ]
    with _unchanged(node, "/v1/roles"):
        for case in cases:
            _refused(node, case, [])
        deep = b'{"name": "x", "statements": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        _refused(
            node,
            ("POST", "/v1/roles", {"content": deep}, 400, "nested deeper"),
            [("input.refused", "denied")],
        )
        bad_yaml = tmp_path / "role.yaml"
        bad_yaml.write_text("name: sec-bad-role\nstatements: [\n")
        done = run_cli(node.env(), "role", "apply", str(bad_yaml), check=False)
        assert done.returncode == 1 and "is not YAML or JSON" in done.stderr, done.stderr
        assert "hint:" in done.stderr


def _issuer(**fields: Any) -> dict[str, Any]:
    key = SigningKey.generate("sec-k1", "EdDSA")
    return {
        "name": "sec-bad-issuer",
        "issuer": "https://bad.example",
        "audience": "donjon",
        "jwks": jwks(key),
        **fields,
    }


def _rsa_jwk(bits: int) -> dict[str, Any]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    n = private.public_key().public_numbers().n
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return {
        "kty": "RSA",
        "kid": "small",
        "n": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
        "e": "AQAB",
    }


def test_malformed_issuers_and_jwks_change_nothing(node: LiveNode, tmp_path: Path) -> None:
    """JWKS not JSON, symmetric, weak, no kid, private, huge; bad URL or role: none stored."""
    good = SigningKey.generate("sec-k1", "ES256").jwk()
    private = json.loads(ECAlgorithm.to_jwk(SigningKey.generate("sec-k2", "ES256").private))
    refused = [("issuer.add", "refused")]
    cases: list[tuple[Case, list[tuple[str, str]]]] = [
        (("POST", "/v1/issuers", {"json": _issuer(jwks="{")}, 400, "jwks must be"), refused),
        (
            ("POST", "/v1/issuers", {"json": _issuer(jwks={"keys": {"a": 1}})}, 400, '"keys"'),
            refused,
        ),
        (
            (
                "POST",
                "/v1/issuers",
                {"json": _issuer(jwks={"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]})},
                400,
                "no usable signing key",
            ),
            refused,
        ),
        (
            (
                "POST",
                "/v1/issuers",
                {"json": _issuer(jwks={"keys": [{k: v for k, v in good.items() if k != "kid"}]})},
                400,
                "no usable signing key",
            ),
            refused,
        ),
        (
            (
                "POST",
                "/v1/issuers",
                {"json": _issuer(jwks={"keys": [{**private, "kid": "p"}]})},
                400,
                "holds a private key",
            ),
            refused,
        ),
        (
            (
                "POST",
                "/v1/issuers",
                {"json": _issuer(jwks={"keys": [_rsa_jwk(1024)]})},
                400,
                "RSA under 2048 bits",
            ),
            refused,
        ),
        (
            (
                "POST",
                "/v1/issuers",
                {"json": _issuer(jwks={"keys": [{**good, "x": 7}]})},
                400,
                "not a valid ES256 key",
            ),
            refused,
        ),
        (
            (
                "POST",
                "/v1/issuers",
                {"json": _issuer(jwks={"keys": [good, good]})},
                400,
                "names two keys",
            ),
            refused,
        ),
        (
            (
                "POST",
                "/v1/issuers",
                {"json": _issuer(jwks={"keys": [{**good, "pad": "x" * 300_000}]})},
                413,
                "request body over",
            ),
            [],
        ),
        (
            (
                "POST",
                "/v1/issuers",
                {"json": {**_issuer(), "jwks": None, "jwks_url": "https://[::zz]/jwks"}},
                400,
                "exactly one of",
            ),
            refused,
        ),
        (
            (
                "POST",
                "/v1/issuers",
                {
                    "json": {
                        k: v for k, v in _issuer(jwks_url="https://[::zz]/j").items() if k != "jwks"
                    }
                },
                400,
                "not a valid URL",
            ),
            refused,
        ),
        (
            (
                "POST",
                "/v1/issuers",
                {"json": _issuer(allowed_roles=["no-such-role"])},
                400,
                "names no role 'no-such-role'",
            ),
            refused,
        ),
        (("POST", "/v1/issuers", {"json": _issuer(kind="oidc")}, 400, "unknown fields"), refused),
    ]
    with _unchanged(node, "/v1/issuers"):
        for case, audited in cases:
            _refused(node, case, audited)
        not_json = tmp_path / "jwks.json"
        not_json.write_text("{keys: [")
        done = run_cli(node.env(), "issuer", "add", "sec-bad-issuer", "--issuer", "https://b",
                       "--jwks", str(not_json), "--audience", "donjon", check=False)  # fmt: skip
        assert done.returncode != 0 and "is not JSON" in done.stderr, done.stderr


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


DEEP_HEADER = f"Bearer {_b64(b'[' * 5000)}.{_b64(b'{}')}."
DEEP_PAYLOAD = "Bearer " + _b64(b'{"kid": "k"}') + "." + _b64(b"[" * 5000) + "."


@pytest.mark.parametrize(
    ("label", "authorization", "reason"),
    [
        ("garbage", "Bearer garbage", "invalid credentials"),
        ("not base64", "Bearer a.b.c", "jwt: the header is not base64url JSON"),
        ("empty segments", "Bearer ..", "jwt: not three base64url segments"),
        ("deep header", DEEP_HEADER, "jwt: the header is nested too deep"),
        ("deep payload", DEEP_PAYLOAD, "jwt: the payload is nested too deep"),
        ("oversized jwt", "Bearer " + "a" * 9000 + ".b.c", "token over 8192 bytes"),
        ("oversized key", "Bearer dj_" + "a" * 30_000, "invalid credentials"),
        ("latin-1 bytes", b"Bearer \xe9\xe9.\xe9.\xe9", "jwt: not three base64url segments"),
        ("other scheme", "Basic YTpi", "invalid credentials"),
    ],
)
def test_garbage_and_oversized_bearer_tokens_get_401(
    node: LiveNode, label: str, authorization: str | bytes, reason: str
) -> None:
    """Each malformed bearer token gets the bare 401, audited with its reason; nothing runs."""
    raw = authorization if isinstance(authorization, bytes) else authorization.encode("latin-1")
    headers = [(b"authorization", raw)]
    transport = httpx.HTTPTransport(verify=node.tls, local_address=fresh_source())
    with (
        _unchanged(node, "/v1/keys"),
        httpx.Client(base_url=node.url, transport=transport, timeout=60) as c,
    ):
        r = c.post("/v1/functions/probe/invoke", content=b"{}", headers=headers)
    body = assert_problem(r, 401)
    assert body["detail"] == "missing, invalid or revoked credentials", label
    records = audit_records(node, r.headers["x-request-id"])
    assert [rec["action"] for rec in records] == ["auth.denied"], (label, records)
    assert reason in records[0]["detail"]["reason"], (label, records[0])


def test_header_too_large_for_any_token_is_431(node: LiveNode) -> None:
    """A bearer token past the head limit (64 KiB) is refused before the app reads it."""
    with node.client("dj_" + "a" * 70_000, fresh_source()) as c:
        r = c.post("/v1/functions/probe/invoke", content=b"{}")
    assert r.status_code == 431


NOT_NAMES = [
    "%2e%2e",  # ".." (a client normalises the bare form away before sending it)
    "A-upper",
    "a" * 64,
    "\u0430pi-key",  # Cyrillic a
    "\uff41pi-key",  # fullwidth a
    "api-key\u200b",  # zero-width space
    "api-key\u202e",  # right-to-left override
    "api%00key",
    "api%0akey",
    "1st-key",
    "api.key",
]


def test_secret_names_that_are_not_names_change_nothing(node: LiveNode) -> None:
    """Separators, `..`, empty, too long, unicode look-alikes, controls: refused, none stored."""
    with _unchanged(node, "/v1/secrets"):
        for name in NOT_NAMES:
            case: Case = ("POST", f"/v1/secrets/{name}", {"json": {"value": "v"}}, 422, "not a")
            _refused(node, case, [])
            case = ("POST", f"/v1/secrets/{name}/versions", {"json": {"value": "v"}}, 422, "not")
            _refused(node, case, [])
        with node.client() as c:
            for path in ("/v1/secrets/a%2Fb", "/v1/secrets/a/b", "/v1/secrets/a%2F..%2Fb"):
                assert c.post(path, json={"value": "v"}).status_code in (404, 405), path
            assert c.post("/v1/secrets/", json={"value": "v"}).status_code >= 300
        for name in ("..", "../etc", "", "a/b", "\u0430pi"):
            done = run_cli(node.env(), "secret", "set", name, input="v", check=False)
            assert done.returncode == 1 and "is not a secret name" in done.stderr, done.stderr


def test_bad_secret_values_change_nothing(node: LiveNode, tmp_path: Path) -> None:
    """Empty, over 64 KiB, not text, NUL, lone surrogate, extra fields: the version stays 1."""
    name = "sec-bad-values"
    with node.client() as c:
        assert c.post(f"/v1/secrets/{name}", json={"value": "first"}).status_code in (201, 409)
    path = f"/v1/secrets/{name}/versions"
    cases: list[Case] = [
        ("POST", path, {"json": {"value": ""}}, 422, "missing or empty"),
        ("POST", path, {"json": {"value": "x" * 70_000}}, 422, "over 65536 bytes"),
        ("POST", path, {"json": {"value": "x" * 500_000}}, 413, "request body over"),
        ("POST", path, {"json": {"value": 42}}, 422, "not text"),
        ("POST", path, {"json": {"value": "a\0b"}}, 422, "NUL"),
        ("POST", path, {"content": b'{"value": "\\ud800"}'}, 422, "not valid text"),
        ("POST", path, {"content": b'{"value": "\xff\xfe"}'}, 400, "not valid JSON"),
        ("POST", path, {"json": {"value": "v", "version": 9}}, 400, '{"value": "...", "no_grace"'),
        ("POST", path, {"json": ["v"]}, 400, '{"value": "...", "no_grace"'),
        ("POST", f"/v1/secrets/{name}", {"json": {"value": ""}}, 422, "missing or empty"),
    ]
    with _unchanged(node, "/v1/secrets"):
        for case in cases:
            _refused(node, case, [])
        binary = tmp_path / "value.bin"
        binary.write_bytes(b"\xff\xfe\x00secret")
        done = run_cli(
            node.env(), "secret", "rotate", name, "--from-file", str(binary), check=False
        )
        assert done.returncode != 0 and "not UTF-8" in done.stderr, done.stderr
    with node.client() as c:
        (row,) = [s for s in c.get("/v1/secrets").json() if s["name"] == name]
    assert row["latest"] == 1


def test_bad_key_requests_change_nothing(node: LiveNode) -> None:
    """Unknown role, bad expiry or functions, bad name, a misspelt field: no key is made."""
    keys = "/v1/keys"

    def key(**fields: Any) -> dict[str, Any]:
        return {"name": "sec-bad-key", "role": "invoker", **fields}

    cases: list[Case] = [
        ("POST", keys, {"json": key(role="root")}, 400, "role must be"),
        ("POST", keys, {"json": key(role=["admin"])}, 400, "role must be"),
        ("POST", keys, {"json": key(expires_in_s=-1)}, 400, "expires_in_s must be"),
        ("POST", keys, {"json": key(expires_in_s=0)}, 400, "expires_in_s must be over 0"),
        ("POST", keys, {"json": key(expires_in_s=1.5)}, 400, "whole number"),
        ("POST", keys, {"json": key(expires_in_s=10**30)}, 400, "whole number"),
        ("POST", keys, {"json": key(expires_in_s="30d")}, 400, "whole number"),
        ("POST", keys, {"json": key(expires_in_s=True)}, 400, "whole number"),
        ("POST", keys, {"json": key(functions=[])}, 400, "functions must be"),
        ("POST", keys, {"json": key(functions="probe")}, 400, "functions must be"),
        ("POST", keys, {"json": key(functions=["../probe"])}, 400, "functions must be"),
        ("POST", keys, {"json": key(functions=["f"] * 1001)}, 400, "at most 1000"),
        ("POST", keys, {"json": key(role="admin", functions=["probe"])}, 400, "admin key"),
        ("POST", keys, {"json": key(name="")}, 400, "name must be"),
        ("POST", keys, {"json": key(name="k" * 129)}, 400, "name must be"),
        ("POST", keys, {"json": key(name=["k"])}, 400, "name must be"),
        # A misspelt "functions" must not make a key for every function.
        ("POST", keys, {"json": key(function=["probe"])}, 400, "unknown fields: function"),
        ("POST", keys, {"json": "invoker"}, 400, "JSON object"),
    ]
    with _unchanged(node, keys):
        for case in cases:
            _refused(node, case, [])
        for bad in ("30y", "-1d", "1.5h", "forever"):
            done = run_cli(node.env(), "key", "create", "sec-bad-key", "--role", "invoker",
                           "--expires-in", bad, check=False)  # fmt: skip
            assert done.returncode != 0 and "not a duration" in done.stderr, done.stderr
