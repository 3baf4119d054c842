"""A tenant's http route next to another tenant's: cookies and routes stay each function's own.

A browser sends a cookie set at `Path=/fn/<route>` to that path and every path below it,
whatever the method, and an http trigger's event carries the request's `Cookie` header.
So a function serving a path at, below or above another function's route would be
handed that function's users' cookies (its sessions), or could set cookies for it.
`sec-reply` is the victim (public at /sec-reply, sets `pref=1; Path=/fn/sec-reply`);
the thief is another tenant, deployed with a developer key.

A method a public path does not declare (a CORS preflight, a HEAD) is a 405, not a
failed authentication counted towards the source's credential stuffing alert.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from donjon.bundle import build_bundle
from harness import LiveNode, fresh_source
from sec_support import assert_problem

_THIEF = "def handler(event, context):\n    return {'seen': event['headers']}\n"


def _thief(tmp_path: Path, name: str, path: str, methods: str) -> bytes:
    root = tmp_path / name
    root.mkdir()
    (root / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\n"
        f"triggers:\n  - http: {{path: {path}, methods: [{methods}], auth: public}}\n"
        'limits: {rate: "60/minute"}\n'
    )
    (root / "main.py").write_text(_THIEF)
    return build_bundle(root)[1]


@pytest.fixture(scope="module")
def tenant(node: LiveNode) -> str:
    """A developer key: another tenant, who may deploy functions of its own."""
    return str(node.create_key("route-tenant", "developer")["key"])


@pytest.mark.parametrize(
    ("name", "path", "methods"),
    [
        ("route-below", "/sec-reply/steal", "GET"),  # below the victim's route
        ("route-beside", "/sec-reply", "PUT"),  # the victim's path, another method
        ("route-deeper", "/sec-reply/sub/x", "GET"),  # below its second route
    ],
)
def test_function_cannot_serve_a_path_covering_another_functions_cookies(
    node: LiveNode, tenant: str, tmp_path: Path, name: str, path: str, methods: str
) -> None:
    """A route at or below another function's route is refused at deploy; the victim's
    cookies never reach the other tenant."""
    with httpx.Client(base_url=node.url, verify=node.tls, timeout=60) as browser:
        got = browser.get("/fn/sec-reply", params={"case": "cookie-no-path"})
        assert got.status_code == 200, got.text
        assert browser.cookies.get("pref") == "1"
        with node.client(tenant) as c:
            r = c.post("/v1/functions", content=_thief(tmp_path, name, path, methods))
        assert r.status_code == 422, r.text
        # Named as another's: the tenant may not read sec-reply (test_attack_principal_sweep).
        assert "a path of another owner's function" in r.json()["detail"], r.text
        assert "sec-reply" not in r.json()["detail"].replace(path, ""), r.text
        stolen = browser.request(methods, "/fn" + path)
        assert "pref=1" not in stolen.text
        # No such route: 405 on the victim's public path, else 401 (it looks protected).
        assert_problem(stolen, 405 if path == "/sec-reply" else 401)
    with node.client() as c:
        assert c.get(f"/v1/functions/{name}").status_code == 404


def test_function_cannot_take_a_path_above_another_functions_route(
    node: LiveNode, tenant: str, tmp_path: Path
) -> None:
    """A route above another function's (/sec-http above /sec-http/public) is refused: its
    cookies would reach that function, and it could set cookies below its own route."""
    with node.client(tenant) as c:
        r = c.post("/v1/functions", content=_thief(tmp_path, "route-parent", "/sec-http", "GET"))
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "/sec-http is above a path of another owner's function" in detail, detail
    assert "/sec-http/public" not in detail, detail
    with node.client() as c:
        assert c.get("/v1/functions/route-parent").status_code == 404


@pytest.mark.parametrize("method", ["OPTIONS", "HEAD", "DELETE"])
def test_undeclared_method_on_a_public_path_is_no_failed_login(node: LiveNode, method: str) -> None:
    """A CORS preflight, a HEAD or another method a public path does not declare is a 405
    naming the methods it does, not a 401 audited as a failed authentication: 25 browsers'
    preflights from one address raised a credential stuffing alert against it (and, in the
    monitor's block mode, a throttle on everyone behind it)."""
    source = fresh_source()
    transport = httpx.HTTPTransport(verify=node.tls, local_address=source)
    preflight = {"origin": "https://app.example", "access-control-request-method": "POST"}
    with httpx.Client(base_url=node.url, transport=transport, timeout=60) as c:
        replies = [c.request(method, "/fn/sec-reply", headers=preflight) for _ in range(3)]
    for r in replies:
        assert r.status_code == 405, r.text
        assert r.headers["allow"] == "GET, POST"
        if method != "HEAD":  # a HEAD's answer has no body
            assert r.json()["status"] == 405
    with node.client() as c:
        records = c.get("/v1/audit", params={"limit": 500}).json()
    assert not [r for r in records if r["detail"].get("client") == source], records


def test_undeclared_method_on_a_keyed_path_still_looks_protected(node: LiveNode) -> None:
    """Only a path with a public trigger says which methods it takes: anonymous callers of
    a key-only path (or one that does not exist) get 401, as before."""
    with node.client("") as c:
        assert_problem(c.delete("/fn/sec-http/key"), 401)
        assert_problem(c.delete("/fn/no-such-route"), 401)
