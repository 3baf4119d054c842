"""http triggers under /fn/: auth modes, the event shape, the response contract."""

from __future__ import annotations

from harness import LiveNode


def test_public_trigger_needs_no_credentials(node: LiveNode) -> None:
    """auth: public answers anonymous callers, and the handler sees no principal."""
    with node.client("") as c:
        r = c.post("/fn/web/public?status=201", content=b"hello")
    assert r.status_code == 201
    assert r.headers["x-fn"] == "web"
    body = r.json()
    assert body == {
        **body,
        "method": "POST",
        "path": "/web/public",
        "body": "hello",
        "b64": False,
        "principal": None,
    }


def test_key_trigger_refuses_anonymous_and_accepts_a_key(node: LiveNode) -> None:
    """auth: key is 401 without a key and runs with one, as that principal."""
    with node.client("") as c:
        assert c.get("/fn/web/private").status_code == 401
    with node.client() as c:
        r = c.get("/fn/web/private")
    assert r.status_code == 200
    assert r.json()["principal"].startswith("key:")


def test_platform_credential_never_reaches_the_function(node: LiveNode) -> None:
    """The Authorization header that authenticated the call is not in the event."""
    with node.client() as c:
        headers = c.get("/fn/web/private").json()["headers"]
    assert "authorization" not in headers
    assert node.admin_key not in str(headers)


def test_invoker_limited_to_other_functions_is_forbidden(node: LiveNode) -> None:
    """An invoker key for another function gets 403 on this trigger."""
    other = node.create_key("only-probe", "invoker", ["probe"])["key"]
    with node.client(other) as c:
        assert c.get("/fn/web/private").status_code == 403


def test_jwt_trigger_fails_closed(node: LiveNode) -> None:
    """With no identity provider configured, auth: jwt refuses everyone, even admins."""
    with node.client() as c:
        assert c.get("/fn/web/jwt").status_code == 401
    with node.client("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.") as c:
        assert c.get("/fn/web/jwt").status_code == 401


def test_method_not_in_trigger_finds_no_function(node: LiveNode) -> None:
    """A method the trigger does not list finds no function: 405 on a public path (naming
    the methods it takes), 404 elsewhere."""
    with node.client() as c:
        r = c.delete("/fn/web/public")
        assert r.status_code == 405
        assert r.headers["allow"] == "GET, POST"
        assert c.delete("/fn/web/private").status_code == 404
        assert c.get("/fn/nowhere").status_code == 404


def test_missing_route_looks_protected_to_anonymous_callers(node: LiveNode) -> None:
    """Without a valid key, a route that does not exist answers 401 like a key route."""
    with node.client("") as c:
        assert c.get("/fn/nowhere").status_code == 401
        assert c.get("/fn/web/private").status_code == 401


def test_binary_body_arrives_base64(node: LiveNode) -> None:
    """A body that is not UTF-8 reaches the handler base64-encoded."""
    with node.client("") as c:
        body = c.post("/fn/web/public", content=b"\xff\xfe\x00").json()
    assert body["b64"] is True
    assert body["body"] == "//4A"


def test_plain_return_value_is_json(node: LiveNode) -> None:
    """A handler returning a plain value answers 200 with it as JSON."""
    with node.client("") as c:
        r = c.get("/fn/web/public?raw=1")
    assert r.status_code == 200
    assert r.json() == {"plain": True, "principal": None}


def test_malformed_http_response_is_502(node: LiveNode) -> None:
    """A statusCode that is not an HTTP status is the function's fault: 502."""
    with node.client("") as c:
        r = c.get("/fn/web/public?bad=1")
    assert r.status_code == 502
    assert r.headers["content-type"] == "application/problem+json"
