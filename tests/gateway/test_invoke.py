"""Invocation through the real HTTPS gateway and sandbox."""

from __future__ import annotations

import httpx

from harness import LiveNode


def test_invoke_returns_the_handlers_json(node: LiveNode) -> None:
    """A handler's return value comes back as the JSON response body."""
    r = node.invoke("probe", {"op": "echo", "x": [1, 2]})
    assert r.status_code == 200
    assert r.json() == {"op": "echo", "x": [1, 2]}
    assert len(r.headers["x-request-id"]) == 20


def test_context_carries_request_and_principal(node: LiveNode) -> None:
    """The handler's context names the request, the function, its version and the caller."""
    r = node.invoke("probe", {"op": "context"})
    body = r.json()
    assert body["request_id"] == r.headers["x-request-id"]
    assert body["function"] == "probe"
    assert body["version"] >= 1
    assert body["principal"].startswith("key:")
    assert body["secrets"] == {}
    assert body["remaining"] is True


def test_handler_error_is_a_problem_without_trace(node: LiveNode) -> None:
    """A raising handler gives a 500 problem with the request id and no traceback or path;
    only a caller who may read the logs also gets the error's type and message (issue 11)."""
    invoker = node.create_key("invoke-errors", "invoker")["key"]
    r = node.invoke("probe", {"op": "raise", "text": "secret-detail"}, key=invoker)
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["request_id"] == r.headers["x-request-id"]
    for leak in ("Traceback", "/fn/", "main.py", "secret-detail", "RuntimeError"):
        assert leak not in r.text
    r = node.invoke("probe", {"op": "raise", "text": "secret-detail"})  # admin: logs allowed
    assert r.status_code == 500 and r.json()["errorType"] == "RuntimeError"
    for leak in ("Traceback", "/fn/", "main.py"):
        assert leak not in r.text


def test_handler_trace_goes_to_logs(node: LiveNode) -> None:
    """The trace of a failed call is in the function's logs under its request id."""
    r = node.invoke("probe", {"op": "raise", "text": "find-me"})
    rid = r.headers["x-request-id"]
    with node.client() as c:
        logs = c.get("/v1/functions/probe/logs", params={"n": 50}).json()
    entry = next(e for e in logs if e["request_id"] == rid)
    assert "find-me" in entry["output"]
    assert "Traceback" in entry["output"]


def test_stdout_is_captured_per_invocation(node: LiveNode) -> None:
    """What a handler prints is in `donjon logs` under that request id."""
    r = node.invoke("probe", {"op": "print", "text": "printed-line-42"})
    rid = r.headers["x-request-id"]
    with node.client() as c:
        logs = c.get("/v1/functions/probe/logs", params={"n": 50}).json()
    assert any(e["request_id"] == rid and "printed-line-42" in e["output"] for e in logs)


def test_timeout_gives_504_and_the_platform_keeps_serving(node: LiveNode) -> None:
    """A handler past timeout_s is killed; the caller gets 504; the next call works."""
    r = node.invoke("probe", {"op": "sleep", "s": 30})
    assert r.status_code == 504
    assert node.invoke("probe", {"op": "echo"}).status_code == 200


def test_timeout_in_warm_mode(node: LiveNode) -> None:
    """Warm functions are held to their timeout too, and serve again afterwards."""
    assert node.invoke("probe-warm", {"op": "sleep", "s": 30}).status_code == 504
    assert node.invoke("probe-warm", {"op": "echo"}).status_code == 200


def test_memory_limit_gives_clear_error(node: LiveNode) -> None:
    """A handler past memory_mb is stopped with a clear error; the platform keeps serving."""
    for name in ("probe", "probe-warm"):
        r = node.invoke(name, {"op": "alloc", "mb": 512})
        assert r.status_code == 507, r.text
        assert "memory" in r.json()["detail"]
        assert node.invoke(name, {"op": "echo"}).status_code == 200


def test_malformed_json_is_400(node: LiveNode) -> None:
    """A body that is not JSON is refused before any sandbox runs."""
    with node.client() as c:
        r = c.post("/v1/functions/probe/invoke", content=b"{not json")
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"


def test_unknown_function_is_404(node: LiveNode) -> None:
    """Invoking a function that does not exist is a 404 problem."""
    assert node.invoke("nope", {}).status_code == 404


def test_oversized_body_is_413(node: LiveNode) -> None:
    """Events over the size limit are refused."""
    with node.client() as c:
        r = c.post("/v1/functions/probe/invoke", content=b'"' + b"a" * (7 * 1024 * 1024) + b'"')
    assert r.status_code == 413


def test_healthz_needs_no_credentials(node: LiveNode) -> None:
    """/healthz answers without credentials; /metrics and /openapi.json need them."""
    with node.client("") as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/metrics").status_code == 401
        assert c.get("/openapi.json").status_code == 401
    with node.client() as c:
        assert "donjon_invocations_total" in c.get("/metrics").text
        assert c.get("/openapi.json").json()["openapi"].startswith("3.")


def test_plain_http_is_not_served(node: LiveNode) -> None:
    """The gateway speaks TLS only: a plain HTTP request gets no answer."""
    try:
        r = httpx.get(node.url.replace("https://", "http://") + "/healthz", timeout=3)
    except httpx.HTTPError:
        return
    assert r.status_code >= 400
