"""The ASGI application."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from donjon import __version__
from donjon.errors import Error
from donjon.gateway.access import authenticate, authorize, new_request_id
from donjon.gateway.admin import ROUTES
from donjon.gateway.invoke import handle_http_trigger, handle_invoke, run_scheduled
from donjon.gateway.node import Node
from donjon.gateway.openapi import openapi_document
from donjon.gateway.problems import problem, problem_from_error
from donjon.gateway.schemas import render
from donjon.gateway.views import Health
from donjon.identity import Action
from donjon.triggers import Scheduler

__all__ = ["create_app"]

_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


async def healthz(request: Request) -> Response:
    node: Node = request.app.state.node
    pool = node.pool
    return render(Health(status="ok", version=__version__, sandboxes=pool.running() if pool else 0))


async def metrics(request: Request) -> Response:
    node: Node = request.app.state.node
    request_id = new_request_id()
    try:
        principal = await authenticate(node, request, request_id)
        await authorize(node, request, principal, Action.METRICS, request_id)
    except Error as e:
        return problem_from_error(e, request_id=request_id)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    node: Node = request.app.state.node
    request_id = new_request_id()
    try:
        await authenticate(node, request, request_id)
    except Error as e:
        return problem_from_error(e, request_id=request_id)
    document = getattr(request.app.state, "openapi", None)
    if document is None:  # built once, from the routes this app serves
        document = request.app.state.openapi = openapi_document(__version__, request.app.routes)
    return JSONResponse(document)


async def _not_found(request: Request, exc: Any) -> Response:
    return problem(404, f"nothing at {request.url.path}")


async def _method_not_allowed(request: Request, exc: Any) -> Response:
    return problem(405, f"{request.method} is not allowed on {request.url.path}")


async def _server_error(request: Request, exc: Exception) -> Response:
    return problem(500, "internal error")


def create_app(node: Node) -> Starlette:
    scheduler = Scheduler(node.registry.schedules, functools.partial(run_scheduled, node))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.start()
        scheduler.start()
        try:
            yield
        finally:
            await scheduler.stop()
            await node.stop()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/v1/functions/{name}/invoke", handle_invoke, methods=["POST"]),
        Route("/fn/{path:path}", handle_http_trigger, methods=_ALL_METHODS),
    ]
    by_path: dict[str, dict[str, Any]] = {}
    for path, method, endpoint in ROUTES:
        by_path.setdefault(path, {})[method] = endpoint
    for path, endpoints in by_path.items():
        routes.append(Route(path, _dispatch(endpoints), methods=list(endpoints)))
    # The route table: /openapi.json describes exactly these (gateway/operations.py).
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: _not_found, 405: _method_not_allowed, 500: _server_error},
    )
    app.state.node = node
    return app


def _dispatch(endpoints: dict[str, Any]) -> Any:
    async def endpoint(request: Request) -> Response:
        handler = endpoints.get(request.method)
        if handler is None:
            return problem(405, f"{request.method} is not allowed on {request.url.path}")
        response: Response = await handler(request)
        return response

    return endpoint
