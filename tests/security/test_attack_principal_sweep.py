"""Every route of the HTTP API (gateway/operations.py: /v1/, the Lambda Invoke API, /fn/,
/hooks/) swept as each kind of non-admin principal, aimed at another tenant's resources.

Tenant B (a developer key) owns `tnb-fn`: an http path, a webhook, a secret, logs, a dead
letter, a quota. The principals are tenant A (another developer key), each other built-in
role, a custom role with one action, a developer key limited to A's function, and a JWT
developer. Each request is sent twice, at B's resource and at one that does not exist:
no answer is a 5xx; each principal is answered 2xx only where its role says (ALLOWED); a
refusal of B's resource is the same refusal as of a missing one (a 403 there and a 404
here would say B's exists); every 403 is audited; nothing a refused request could change
changed; and no answer names what B has (its key, logs, events, dead letters, paths)
unless the request named it or the principal's role reads the whole node.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.auth
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from api_sweep import LISTINGS
from async_support import bundle, invoke_async, wait_for
from donjon.bundle import build_bundle
from donjon.gateway.operations import OPERATIONS
from harness import LiveNode, fresh_source, start_node
from jwt_support import SigningKey, claims, jwks
from sec_support import assert_problem

_B_CODE = (
    "def handler(event, context):\n"
    "    print('TNBLOGLINE', event)\n"
    "    if event.get('fail'):\n"
    "        raise RuntimeError('TNBFAIL')\n"
    "    return {'ok': 1}\n"
)
_B_MANIFEST = (
    "permissions:\n  secrets: [tnbsecret]\n"
    "retry: {attempts: 1}\n"
    "triggers:\n"
    "  - http: {path: /tnbpath, methods: [GET, POST], auth: key}\n"
    "  - webhook: {path: /tnbhookp, scheme: standard, secret: tnbhook}\n"
)
_A_CODE = "def handler(event, context):\n    return {'a': 1}\n"
_ISSUER, _AUDIENCE = "https://sweep-idp.example", "donjon-sweep"

#: The routes each principal is answered 2xx on, aimed at B's resources; anything else is
#: a 4xx. Every principal holding a role reads /healthz and /readyz (no credential needed).
_OPEN = {("GET", "/healthz"), ("GET", "/readyz")}
_API = {("GET", "/openapi.json")}
_CALLS = {
    ("POST", "/v1/functions/{name}/invoke"),
    ("POST", "/2015-03-31/functions/{name}/invocations"),
    ("GET", "/fn/{path}"),
    ("POST", "/fn/{path}"),
}
#: A developer's reads that list only what it may see (its functions, the shared vault).
_DEVELOPER = {("GET", "/v1/functions"), ("GET", "/v1/secrets"), ("GET", "/v1/runtime")}
_AUDITOR_READS = {
    ("GET", "/metrics"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/audit/timeline"),
    ("GET", "/v1/audit/checkpoints"),
    ("GET", "/v1/audit/export"),
    ("GET", "/v1/alerts"),
    ("GET", "/v1/responses"),
}
ALLOWED: dict[str, set[tuple[str, str]]] = {
    "tenant-a": _OPEN | _API | _CALLS | _DEVELOPER,
    "invoker": _OPEN | _API | _CALLS,
    "auditor": _OPEN | _API | _AUDITOR_READS,
    "metrics": _OPEN | {("GET", "/metrics")},
    "one-action": _OPEN,
    "limited": _OPEN | _API | _DEVELOPER,
    "jwt": _OPEN
    | _API
    | (_CALLS - {("POST", "/2015-03-31/functions/{name}/invocations")})
    | _DEVELOPER,
}
#: What a role that reads the whole node reads of B there (by design: docs/security.md).
_WHOLE_NODE = {"auditor": _AUDITOR_READS, "metrics": {("GET", "/metrics")}}


@dataclass(frozen=True)
class World:
    node: LiveNode
    #: principal -> its bearer credential
    bearers: dict[str, str]
    #: principal -> (key id, SigV4 secret), for the key principals
    sigv4: dict[str, tuple[str, str]]
    #: path parameters naming B's resources, and resources that do not exist
    b: dict[str, str]
    ghost: dict[str, str]
    #: what no answer may show of B unless asked for it
    markers: tuple[str, ...]


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node of this file's own: its listings change only by what the sweep sends."""
    live = start_node(tmp_path_factory.mktemp("principal-sweep-node"))
    try:
        yield live
    finally:
        live.stop()


def _deploy(node: LiveNode, key: str, directory: Path) -> httpx.Response:
    _, archive = build_bundle(directory)
    with node.client(key, fresh_source()) as c:
        return c.post(
            "/v1/functions", content=archive, headers={"content-type": "application/gzip"}
        )


@pytest.fixture(scope="module")
def world(own: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("tenants")
    owner_b = own.create_key("owner-b", "developer")
    tenant_a = own.create_key("owner-a", "developer")
    with own.client() as c:
        for name in ("tnbsecret", "tnbhook", "tnaown"):
            assert c.post(f"/v1/secrets/{name}", json={"value": "v"}).status_code == 201
        one = {"effect": "allow", "actions": ["function:invoke"], "resources": ["tna-fn"]}
        assert c.post("/v1/roles", json={"name": "one-action", "statements": [one]}).is_success
        issuer = SigningKey.generate("sweep-1", "EdDSA")
        r = c.post(
            "/v1/issuers",
            json={
                "name": "sweep-idp",
                "issuer": _ISSUER,
                "audience": _AUDIENCE,
                "jwks": jwks(issuer),
                "allowed_roles": ["developer"],
            },
        )
        assert r.status_code == 201, r.text
    r = _deploy(own, owner_b["key"], bundle(root, "tnb-fn", _B_CODE, _B_MANIFEST))
    assert r.status_code == 201, r.text
    r = _deploy(own, tenant_a["key"], bundle(root, "tna-fn", _A_CODE))
    assert r.status_code == 201, r.text
    assert own.invoke("tnb-fn", {"x": "TNBEVENT"}, owner_b["key"]).status_code == 200
    queued = invoke_async(own, "tnb-fn", {"fail": True, "m": "TNBDEAD"}, owner_b["key"])
    assert queued.status_code == 202, queued.text
    dead = queued.json()["invocation_id"]
    assert wait_for(own, dead, ("dead",), owner_b["key"])["status"] == "dead"
    with own.client() as c:
        assert c.put("/v1/quotas/function:tnb-fn", json={"invocations": 1000}).is_success
    keys = {
        "tenant-a": tenant_a,
        "invoker": own.create_key("sweep-invoker", "invoker"),
        "auditor": own.create_key("sweep-auditor", "auditor"),
        "metrics": own.create_key("sweep-metrics", "metrics"),
        "one-action": own.create_key("sweep-one-action", "one-action"),
        "limited": own.create_key("sweep-limited", "developer", ["tna-fn"]),
    }
    token = issuer.sign(claims(_ISSUER, _AUDIENCE, sub="eve", roles=["developer"]))
    b = {
        "name": "tnb-fn",
        "key_id": owner_b["id"],
        "role": "one-action",
        "secret": "tnbsecret",
        "issuer": "sweep-idp",
        "quota": "function:tnb-fn",
        "subject": "function:tnb-fn",
        "invocation_id": dead,
        "fn": "tnbpath",
        "hook": "tnbhookp",
    }
    ghost = {
        "name": "tnb-ghost",
        "key_id": "0" * 16,
        "role": "ghost-role",
        "secret": "tnbghost",
        "issuer": "ghost-idp",
        "quota": "function:tnb-ghost",
        "subject": "function:tnb-ghost",
        "invocation_id": "0" * 32,
        "fn": "tnbghost",
        "hook": "tnbghosthook",
    }
    markers: tuple[str, ...] = (
        owner_b["id"],
        "owner-b",
        "TNBLOGLINE",
        "TNBEVENT",
        "TNBDEAD",
        "TNBFAIL",
    )
    markers += ("tnb-fn", "tnbpath", "tnbhookp", dead)
    return World(
        own,
        {**{p: k["key"] for p, k in keys.items()}, "jwt": token},
        {p: (k["id"], k["sigv4_secret"]) for p, k in keys.items()},
        b,
        ghost,
        markers,
    )


def _path(template: str, params: dict[str, str]) -> str:
    path = template.replace("/fn/{path}", f"/fn/{params['fn']}")
    path = path.replace("/hooks/{path}", f"/hooks/{params['hook']}")
    for name, value in params.items():
        path = path.replace("{" + name + "}", value)
    return path


def _send(world: World, who: str, method: str, template: str, params: dict[str, str]) -> Any:
    """`method` on `template` filled with `params`, as `who`, from an address of its own
    (its denial is then the first of its window: audited at once)."""
    path = _path(template, params)
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    headers = {"content-type": "application/json"} if body is not None else {}
    with world.node.client(world.bearers[who], fresh_source()) as c:
        if template.startswith("/2015") and who in world.sigv4:
            key_id, secret = world.sigv4[who]
            signed = AWSRequest(method="POST", url=world.node.url + path, data=body)
            botocore.auth.SigV4Auth(Credentials(key_id, secret), "lambda", "us-east-1").add_auth(
                signed
            )
            headers = dict(signed.headers.items())
            c.headers.pop("authorization")
        return c.request(method, path, content=body, headers=headers)


def _listings(node: LiveNode) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with node.client() as c:
        for path in LISTINGS:
            rows = c.get(path).json()
            for row in rows if isinstance(rows, list) else []:
                row.pop("last_used_at", None)
                for counted in ("invocations", "compute_seconds"):  # a quota's use today
                    row.get(counted, {}).pop("used", None)
            out[path] = rows
    return out


def _leaks(world: World, who: str, route: tuple[str, str], r: Any, asked: str) -> list[str]:
    """B's markers in `r` that the request (`asked`) did not name, for a principal whose
    role does not read the whole node on `route`."""
    if route in _WHOLE_NODE.get(who, set()) and r.status_code < 400:
        return []
    return [m for m in world.markers if m in r.text and m not in asked]


def test_every_route_as_every_principal_answers_as_the_policy_says(world: World) -> None:
    """No 5xx; 2xx only where ALLOWED says; B's resource refused as a missing one is;
    each 403 audited; nothing changed; nothing of B's shown that was not asked for."""
    before = _listings(world.node)
    problems: list[str] = []
    denied: list[str] = []
    for method, template in OPERATIONS:
        if method == "OPTIONS":
            continue  # a CORS preflight: no credential is looked at
        for who in world.bearers:
            route = (method, template)
            mine = _send(world, who, method, template, world.b)
            other = _send(world, who, method, template, world.ghost)
            what = f"{method} {template} as {who}"
            if mine.status_code >= 500 or other.status_code >= 500:
                problems.append(f"{what}: {mine.status_code}/{other.status_code}")
            if (mine.status_code < 300) != (route in ALLOWED[who]):
                problems.append(f"{what}: {mine.status_code} {mine.text[:120]}")
            if mine.status_code == 403 and other.status_code != 403:
                problems.append(f"{what}: B's is 403, a missing one's {other.status_code}")
            leaked = _leaks(world, who, route, mine, _path(template, world.b))
            leaked += _leaks(world, who, route, other, _path(template, world.ghost))
            if leaked:
                problems.append(f"{what}: shows {leaked}")
            denied += [r.headers["x-request-id"] for r in (mine, other) if r.status_code == 403]
    assert not problems, "\n".join(problems)
    time.sleep(1)  # the denial writer's group commit
    with world.node.client() as c:
        records = c.get("/v1/audit", params={"n": 10000}).json()
    audited = {r["detail"].get("request_id") for r in records if r["outcome"] == "denied"}
    missing = [rid for rid in denied if rid not in audited]
    assert not missing, f"{len(missing)} of {len(denied)} refusals unaudited"
    assert _listings(world.node) == before


def test_a_refused_http_trigger_path_is_refused_as_a_missing_one(world: World) -> None:
    """A principal that may not invoke B's function got 403 at B's /fn path and 404 at a
    path nothing serves: any credential (a metrics scraper's, another tenant's scoped
    key) mapped which /fn paths and methods the node serves. Both are the same 403."""
    for who in ("metrics", "one-action", "limited", "auditor"):
        for method in ("GET", "POST"):
            mine = _send(world, who, method, "/fn/{path}", world.b)
            other = _send(world, who, method, "/fn/{path}", world.ghost)
            a, b = assert_problem(mine, 403), assert_problem(other, 403)
            assert a["detail"] == b["detail"], (a, b)


def test_a_deploy_refusal_does_not_name_the_owner(world: World, tmp_path: Path) -> None:
    """Tenant A deploying B's function name was told `owned by key:<B's key id>` (for a
    JWT owner, its issuer and subject: a user's identity): the 403 says it is another's;
    the audit record keeps who."""
    r = _deploy(world.node, world.bearers["tenant-a"], bundle(tmp_path, "tnb-fn", _A_CODE))
    body = assert_problem(r, 403)
    assert world.b["key_id"] not in body["detail"], body
    assert "owned by another principal" in body["detail"], body
    with world.node.client() as c:
        records = c.get("/v1/audit", params={"n": 2000}).json()
    (record,) = [x for x in records if x["detail"].get("request_id") == r.headers["x-request-id"]]
    assert f"key:{world.b['key_id']}" in json.dumps(record)


@pytest.mark.parametrize(
    ("trigger", "named"),
    [
        ("  - http: {path: /tnbpath, methods: [GET], auth: key}\n", "/tnbpath"),
        ("  - http: {path: /tnbpath/below, methods: [GET], auth: key}\n", "/tnbpath/below"),
        ("  - webhook: {path: /tnbhookp, scheme: standard, secret: tnaown}\n", "/hooks/tnbhookp"),
        ("  - webhook: {path: /tnaother, scheme: standard, secret: tnbhook}\n", "tnbhook"),
    ],
)
def test_a_route_conflict_does_not_name_another_tenants_function(
    world: World, tmp_path: Path, trigger: str, named: str
) -> None:
    """A deploy whose path (or hook secret) another tenant's function holds is refused
    (422), naming what the deployer sent, not the function (nor its paths) it may not
    read: it was `http path /tnbpath belongs to tnb-fn`."""
    name = f"tna-{secrets.token_hex(3)}"
    manifest = f"triggers:\n{trigger}"
    r = _deploy(world.node, world.bearers["tenant-a"], bundle(tmp_path, name, _A_CODE, manifest))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert named in body["detail"], body
    assert "another owner's function" in body["detail"], body
    text = json.dumps(body)
    leaked = [m for m in ("tnb-fn", "tnbpath", "tnbhookp") if m in text and m not in named]
    assert not leaked, body
