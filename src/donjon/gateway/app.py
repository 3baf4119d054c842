"""The ASGI application."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from donjon import __version__
from donjon.errors import Error
from donjon.gateway.access import authenticate, authorize, new_request_id
from donjon.gateway.admin import ROUTES
from donjon.gateway.admin_rate import take_admin_token
from donjon.gateway.async_invoke import get_invocation
from donjon.gateway.deliveries import open_invocations
from donjon.gateway.dlq_api import ROUTES as DLQ_ROUTES
from donjon.gateway.event_sources import node_sources
from donjon.gateway.hooks import handle_hook
from donjon.gateway.hot_route import GatewayApp, HotRoute
from donjon.gateway.invoke import handle_invoke
from donjon.gateway.lambda_api import LAMBDA_INVOKE_PATH, handle_lambda_invoke
from donjon.gateway.metrics_api import metrics
from donjon.gateway.node import Node
from donjon.gateway.openapi import openapi_document
from donjon.gateway.problems import problem, problem_from_error, storage_full_problem
from donjon.gateway.quotas_api import ROUTES as QUOTA_ROUTES
from donjon.gateway.readiness import Readiness
from donjon.gateway.responses_api import ROUTES as RESPONSE_ROUTES
from donjon.gateway.schemas import render
from donjon.gateway.supply_api import ROUTES as SUPPLY_ROUTES
from donjon.gateway.timeline_api import ROUTES as TIMELINE_ROUTES
from donjon.gateway.trigger_routes import handle_http_trigger, run_scheduled
from donjon.gateway.views import Health, Ready
from donjon.identity import Action
from donjon.store import storage_full
from donjon.store.webhook_replays import ReplayStore
from donjon.triggers import Scheduler
from donjon.triggers.webhooks import WebhookService

__all__ = ["create_app"]

log = logging.getLogger("donjon")

_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


async def healthz(request: Request) -> Response:
    """Liveness: 503 only if the node must be restarted to serve again (readiness.py)."""
    node: Node = request.app.state.node
    pool = node.pool
    alive = request.app.state.readiness.alive()
    health = Health(
        status="ok" if alive else "failing",
        version=__version__,
        sandboxes=pool.running() if pool else 0,
    )
    return _no_store(render(health, 200 if alive else 503))


async def readyz(request: Request) -> Response:
    """Readiness: 503 while the node cannot complete calls now (readiness.py)."""
    ready = request.app.state.readiness.ready()
    return _no_store(render(Ready(status="ready" if ready else "not ready"), 200 if ready else 503))


def _no_store(response: Response) -> Response:
    response.headers["cache-control"] = "no-store"  # a probe's answer is of this moment
    return response


async def openapi(request: Request) -> Response:
    node: Node = request.app.state.node
    request_id = new_request_id()
    try:
        principal = await authenticate(node, request, request_id)
        # 170 KB of JSON: an admin read like the others (admin_rate.py).
        await take_admin_token(node, request, principal, request_id)
        await authorize(node, request, principal, Action.API_READ, request_id)
    except Error as e:
        return problem_from_error(e, request_id=request_id)
    body = getattr(request.app.state, "openapi", None)
    if body is None:  # built and rendered once, from the routes this app serves
        document = openapi_document(__version__, request.app.routes)
        body = request.app.state.openapi = JSONResponse(document).body
    return Response(body, media_type="application/json")


async def _not_found(request: Request, exc: Any) -> Response:
    return problem(404, f"nothing at {request.url.path}", request_id=new_request_id())


async def _method_not_allowed(request: Request, exc: Any) -> Response:
    # Starlette's router names the route's methods in the exception's Allow header.
    allowed = (getattr(exc, "headers", None) or {}).get("Allow", "")
    return _not_allowed(request, allowed)


def _not_allowed(request: Request, allowed: str) -> Response:
    """A 405 with the methods the resource does allow (RFC 9110, 15.5.6)."""
    response = problem(
        405, f"{request.method} is not allowed on {request.url.path}", request_id=new_request_id()
    )
    response.headers["allow"] = allowed
    return response


async def _server_error(request: Request, exc: Exception) -> Response:
    request_id = new_request_id()
    # The server's own log gets the traceback (Starlette re-raises it after this answer).
    log.error("request %s: internal error (%s)", request_id, type(exc).__name__)
    if storage_full(exc):
        return storage_full_problem(request_id)
    return problem(500, f"internal error (request {request_id})", request_id=request_id)


def create_app(node: Node) -> Starlette:
    scheduler = Scheduler(node.registry.schedules, functools.partial(run_scheduled, node))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        workers = open_invocations(node)  # node.submit: the durable queue (triggers/queue/)
        try:
            await node.start()
            scheduler.start()
            # Webhooks (gateway/hooks.py): made with the node it serves, at start.
            webhooks = app.state.webhooks = WebhookService(
                node.vault,
                ReplayStore(node.engine),
                grace_s=node.settings.webhook_secret_grace_s,
                replay_ttl_s=node.settings.webhook_replay_ttl_s,
            )
            webhooks.start()
            sources = node_sources(node)  # storage (SQS), database events (triggers/sources.py)
            await sources.start()
            workers.start()
        except BaseException as e:  # uvicorn logs it and exits; serve then says why, plainly
            node.start_failure = e
            raise
        try:
            yield
        finally:
            await sources.stop()
            await webhooks.stop()
            await scheduler.stop()
            grace_s = node.settings.shutdown_grace_s
            until = asyncio.get_running_loop().time() + grace_s
            # Deliveries in flight get the grace period, then the node ends their
            # sandboxes; each is queued again, its attempt given back.
            await workers.stop(grace_s, node.end_calls)
            # Scheduled calls get what is left of the same grace period, then theirs end.
            left_s = max(0.0, until - asyncio.get_running_loop().time())
            await scheduler.drain(left_s, node.end_calls)
            await node.stop()

    invoke = Route("/v1/functions/{name}/invoke", handle_invoke, methods=["POST"])
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        invoke,
        Route("/v1/invocations/{invocation_id}", get_invocation, methods=["GET"]),
        # AWS Lambda's Invoke API, SigV4-signed (gateway/lambda_api.py).
        Route(LAMBDA_INVOKE_PATH, handle_lambda_invoke, methods=["POST"]),
        Route("/fn/{path:path}", handle_http_trigger, methods=_ALL_METHODS),
        # Signed webhooks and S3-compatible stores' pushes (gateway/hooks.py, hooks_s3.py).
        Route("/hooks/{path:path}", handle_hook, methods=["POST"]),
    ]
    by_path: dict[str, dict[str, Any]] = {}
    for path, method, endpoint in (
        *ROUTES,
        *RESPONSE_ROUTES,
        *TIMELINE_ROUTES,
        *QUOTA_ROUTES,
        *DLQ_ROUTES,
        *SUPPLY_ROUTES,
    ):
        by_path.setdefault(path, {})[method] = endpoint
    for path, endpoints in by_path.items():
        routes.append(Route(path, _dispatch(endpoints), methods=list(endpoints)))
    # The route table: /openapi.json describes exactly these (gateway/operations.py).
    app = GatewayApp(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: _not_found, 405: _method_not_allowed, 500: _server_error},
    )
    # A path with a slash too many is a 404 problem like any path the API has not, not a
    # 307 whose Location Starlette builds from the request's Host header (any host).
    app.router.redirect_slashes = False
    # The warm path's route, served below the middleware and router (gateway/hot_route.py).
    app.hot = HotRoute(invoke, _server_error)
    app.state.node = node
    app.state.readiness = Readiness(node)
    return app


def _allowed(endpoints: dict[str, Any]) -> list[str]:
    return [*endpoints, "HEAD"] if "GET" in endpoints else list(endpoints)


def _dispatch(endpoints: dict[str, Any]) -> Any:
    async def endpoint(request: Request) -> Response:
        # HEAD is GET without the body (RFC 9110, 9.3.2), as Starlette's own routes do.
        method = "GET" if request.method == "HEAD" else request.method
        handler = endpoints.get(method)
        if handler is None:
            return _not_allowed(request, ", ".join(_allowed(endpoints)))
        response: Response = await handler(request)
        return response

    return endpoint
