"""The http triggers under /fn/ and schedule triggers: each a call through invoke.py's
`_run`, with its own way of authenticating and its own event and response shapes."""

from __future__ import annotations

import contextlib
import datetime as dt
import json

from starlette.requests import Request
from starlette.responses import Response

from donjon.errors import Error
from donjon.gateway.access import (
    authenticate,
    authorize,
    check_throttles,
    client_address,
    new_request_id,
)
from donjon.gateway.admission import admit, busy_given_back
from donjon.gateway.apigw import apigw_event
from donjon.gateway.call_errors import error_response, reveals
from donjon.gateway.events import body_limit, check_event, read_event, refuse_declared
from donjon.gateway.http_event import function_headers, http_event
from donjon.gateway.http_routes import refuse_unrouted
from donjon.gateway.invoke import _run
from donjon.gateway.large_events import PAST_LOOP, event_json
from donjon.gateway.node import Node
from donjon.gateway.problems import quarantined
from donjon.gateway.response_policy import (
    function_json_response,
    http_response,
    route_of,
)
from donjon.identity import Action, Principal
from donjon.lifecycle import Deployed
from donjon.monitor.quarantine import FunctionQuarantined

__all__ = ["handle_http_trigger", "run_scheduled"]


async def run_scheduled(node: Node, name: str, expression: str, minute: dt.datetime) -> None:
    """Fire one schedule trigger: a call like any other, audited with actor `schedule`."""
    deployed = node.registry.get(name)
    if deployed is None:
        return
    event = json.dumps(
        {"trigger": "schedule", "schedule": expression, "time": minute.isoformat()}
    ).encode()
    request_id = new_request_id()
    with contextlib.suppress(Error):  # the outcome is in the audit log and `donjon logs`
        await admit(node, deployed, None, request_id, "schedule")
        await _run(
            node,
            deployed,
            None,
            event,
            request_id,
            "schedule",
            lambda result: function_json_response(result.body, request_id),
        )


async def handle_http_trigger(request: Request) -> Response:
    node: Node = request.app.state.node
    request_id = new_request_id()
    path = "/" + request.path_params["path"].strip("/")
    caller: tuple[Principal | None, Deployed] | None = None
    try:
        route = node.registry.route(path.rstrip("/") or "/", request.method)
        if route is None:
            await refuse_unrouted(node, request, request_id, path.rstrip("/") or "/")
        deployed, spec = route
        auth = spec.auth
        principal: Principal | None = None
        if auth == "key":
            principal = await authenticate(node, request, request_id)
            await authorize(node, request, principal, Action.INVOKE, request_id, deployed.name)
        elif auth == "jwt":
            # Any registered issuer; its token's principal must be allowed to invoke.
            principal = await authenticate(node, request, request_id, jwt_only=True)
            await authorize(node, request, principal, Action.INVOKE, request_id, deployed.name)
        else:  # a public trigger: only a throttled source address is slowed
            await check_throttles(node, request, request_id)
        caller = (principal, deployed)
        limit = body_limit(deployed, node.settings.requests.max_body_bytes)
        refuse_declared(request, deployed, limit)
        await admit(node, deployed, principal, request_id, "http", client=client_address(request))
        body = await read_event(request, deployed, limit)
        client = client_address(request)
        if deployed.validator is not None:  # the schema describes the request's JSON body
            actor = principal.label if principal else "anonymous"
            checked = check_event(node, request, actor, deployed, body or b"{}", request_id)
            await busy_given_back(checked, node, deployed, principal, "http", client=client)
        headers = function_headers(request, strip_auth=auth != "public", issuers=node.jwt.issuers)
        own_path = route_of(path)
        label = principal.label if principal else None
        if spec.event_format is None:
            made = http_event(request, path, body, label, headers)
        else:  # API Gateway's proxy event and response (apigw.py)
            made = apigw_event(
                spec.event_format, request, path, spec.path, headers, body, label, request_id
            )
        # Past ON_LOOP_BYTES, encoded in a child (large_events.py): the loop free.
        event = (
            await busy_given_back(
                node.large_events.encoded(label or "anonymous", made),
                node,
                deployed,
                principal,
                "http",
                client=client,
            )
            if body[PAST_LOOP]
            else event_json(made)
        )
        return await _run(
            node,
            deployed,
            principal,
            event,
            request_id,
            "http",
            lambda result: http_response(result.body, request_id, own_path),
            client=client_address(request),
            # The worker splits a proxy response in this format (sandbox/runtime/httpresult.py).
            fields={"response": spec.event_format or "http"},
        )
    except FunctionQuarantined as e:  # anyone at all (public) is not told why
        return quarantined(e, request_id, public=caller is not None and caller[0] is None)
    except Error as e:
        return error_response(e, request_id, reveal=reveals(node, caller, e))
