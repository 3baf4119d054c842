"""The invoke route served below Starlette's middleware: same matching, answers and errors."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message

from donjon.gateway.app import _server_error, create_app
from donjon.gateway.body_chunks import CHUNK
from donjon.gateway.hot_route import GatewayApp, HotRoute
from donjon.gateway.node import Node
from donjon.gateway.response_policy import _safe_defaults, function_json_response

_PATHS = [
    "/v1/functions/echo/invoke",
    "/v1/functions/a-b/invoke",
    "/v1/functions/a b/invoke",
    "/v1/functions/é/invoke",
    "/v1/functions//invoke",
    "/v1/functions/a/b/invoke",
    "/v1/functions/echo/invoke/",
    "/v1/functions/echo/invokes",
    "/v1/functions/echo",
    "/v2/functions/echo/invoke",
    "//v1/functions/echo/invoke",
    "/v1/functions/echo/invoke\n",
]


async def _echo_name(request: Request) -> Response:
    name = request.path_params["name"].encode()
    return function_json_response(name, "0123456789abcdef").response


async def _broken(request: Request) -> Response:
    raise RuntimeError("a bug in the handler")


async def _unsendable(request: Request) -> Response:
    return cast(Response, "not a response")  # fails inside the route, before any send


def _apps(endpoint: Any) -> tuple[Starlette, GatewayApp]:
    """The same route and 500 handler through Starlette alone, and with the hot route."""
    route = Route("/v1/functions/{name}/invoke", endpoint, methods=["POST"])
    handlers: Any = {500: _server_error}
    plain = Starlette(routes=[route], exception_handlers=handlers)
    hot = GatewayApp(routes=[route], exception_handlers=handlers)
    hot.hot = HotRoute(route, _server_error)
    return plain, hot


async def _exchange(app: Any, method: str, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://node") as client:
        return await client.request(method, path, content=b"{}")


@pytest.mark.parametrize("method", ["POST", "GET", "HEAD", "PUT"])
@pytest.mark.parametrize("path", _PATHS)
def test_matches_as_starlettes_router(method: str, path: str) -> None:
    """The hot route takes exactly the requests the route itself would match fully."""
    route = Route("/v1/functions/{name}/invoke", _echo_name, methods=["POST"])
    hot = HotRoute(route, _server_error)
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    match, child = route.matches(scope)
    params = hot.match(scope)
    if match.name == "FULL":
        assert params == child["path_params"]
    else:
        assert params is None


def test_root_path_is_left_to_starlette() -> None:
    """Under a root path the router's own path rules apply: the hot route steps aside."""
    route = Route("/v1/functions/{name}/invoke", _echo_name, methods=["POST"])
    scope = {"type": "http", "method": "POST", "path": "/v1/functions/x/invoke", "root_path": "/p"}
    assert HotRoute(route, _server_error).match(scope) is None


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("path", ["/v1/functions/echo/invoke", "/v1/functions/a/b/invoke"])
def test_answers_as_starlette_does(method: str, path: str) -> None:
    """Status, headers (in order) and body are the same with and without the hot route."""
    plain, hot = _apps(_echo_name)
    before = asyncio.run(_exchange(plain, method, path))
    after = asyncio.run(_exchange(hot, method, path))
    assert after.status_code == before.status_code
    assert after.headers.raw == before.headers.raw
    assert after.content == before.content


@pytest.mark.parametrize("endpoint", [_broken, _unsendable])
def test_handler_exception_is_the_apps_500_and_raised(endpoint: Any) -> None:
    """A bug in the handler answers the app's 500 problem and still reaches the server."""
    plain, hot = _apps(endpoint)
    before = asyncio.run(_exchange(plain, "POST", "/v1/functions/echo/invoke"))
    after = asyncio.run(_exchange(hot, "POST", "/v1/functions/echo/invoke"))
    assert after.status_code == before.status_code == 500
    assert after.headers["content-type"] == "application/problem+json"
    assert after.json()["title"] == before.json()["title"]
    with pytest.raises((RuntimeError, TypeError)) as raised:
        asyncio.run(_raising(hot))
    with pytest.raises(type(raised.value)):
        asyncio.run(_raising(plain))


async def _raising(app: Any) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://node") as client:
        await client.post("/v1/functions/echo/invoke", content=b"{}")


def test_node_app_serves_invoke_hot() -> None:
    """The node's app takes its invoke route hot and keeps it in its route table."""
    stub = SimpleNamespace(registry=SimpleNamespace(schedules=lambda: []))
    app = create_app(cast(Node, stub))
    assert isinstance(app, GatewayApp) and app.hot is not None
    scope = {"type": "http", "method": "POST", "path": "/v1/functions/f/invoke"}
    assert app.hot.match(scope) == {"name": "f"}
    paths = [getattr(route, "path", "") for route in app.routes]
    assert "/v1/functions/{name}/invoke" in paths


def test_json_result_headers_as_starlette_builds_them() -> None:
    """A function's JSON result has the headers, order and bytes Starlette's Response gives."""
    body = b'{"hello": "x"}'
    expected = _safe_defaults(
        Response(body, media_type="application/json", headers={"x-request-id": "0a1b"})
    )
    got = function_json_response(body, "0a1b").response
    assert got.raw_headers == expected.raw_headers
    assert got.body == expected.body and got.status_code == expected.status_code
    assert got.headers["x-content-type-options"] == "nosniff"


_LARGE = bytes(range(256)) * (CHUNK // 100)


async def _large(request: Request) -> Response:
    return Response(_LARGE, media_type="application/octet-stream")


def _bodies(app: Any, path: str) -> list[Message]:
    """The body messages `app` sends for a POST to `path`."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "scheme": "https",
        "server": ("127.0.0.1", 443),
        "client": ("127.0.0.1", 1),
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }
    asyncio.run(app(scope, receive, send))
    return [m for m in sent if m["type"] == "http.response.body"]


@pytest.mark.parametrize("path", ["/v1/functions/big/invoke", "/other"])
def test_a_large_body_goes_out_in_pieces_on_every_route(path: str) -> None:
    """A body past CHUNK bytes leaves as pieces of CHUNK, in its order (helper-202: one
    write encrypted it all on the loop, every tenant waiting), on the hot route (which
    sends them itself) and through Starlette (the app's send wrapper) alike."""
    _, hot = _apps(_large)
    hot.router.routes.append(Route("/other", _large, methods=["POST"]))
    bodies = _bodies(hot, path)
    assert b"".join(m["body"] for m in bodies) == _LARGE
    assert len(bodies) == -(-len(_LARGE) // CHUNK)
    assert all(len(m["body"]) <= CHUNK for m in bodies)
    assert [m.get("more_body", False) for m in bodies][-1] is False
    assert all(m["more_body"] for m in bodies[:-1])
