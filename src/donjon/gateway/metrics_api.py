"""GET /metrics: the node's Prometheus metrics, for principals holding `metrics:read`.

The auditor and admin roles hold it, and so does the built-in `metrics` role,
which holds nothing else (`donjon key create --role metrics` makes a key for a
scraper). The body is Prometheus' text exposition of this node's own registry
(obs/metrics.py); what it counts is listed in docs/observability.md ("Metrics").
It holds every function's series and the node's: a role allowed `metrics:read` on
some functions only is refused (gateway/read_scope.py `require_everything`).
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from donjon.errors import Error
from donjon.gateway.access import authenticate, authorize, new_request_id
from donjon.gateway.admin_rate import take_admin_token
from donjon.gateway.node import Node
from donjon.gateway.problems import problem_from_error
from donjon.gateway.read_scope import require_everything
from donjon.identity import Action
from donjon.obs import CONTENT_TYPE

__all__ = ["metrics"]

log = logging.getLogger("donjon")


async def metrics(request: Request) -> Response:
    node: Node = request.app.state.node
    request_id = new_request_id()
    try:
        principal = await authenticate(node, request, request_id)
        await take_admin_token(node, request, principal, request_id)  # a count of the queue
        await authorize(node, request, principal, Action.METRICS, request_id)
        await require_everything(
            node, request, principal, Action.METRICS, request_id, "the metrics"
        )
    except Error as e:
        return problem_from_error(e, request_id=request_id)
    if node.invocations is not None:
        try:  # one grouped count of the queue's pending rows per scrape
            counts = await node.invocations.pending()
        except Error as e:  # the rest of the metrics still answer
            log.warning("metrics: the queue's pending counts could not be read: %s", e.message)
        else:
            node.metrics.pending(counts, [d.name for d in node.registry.all()])
    return Response(node.metrics.render(), media_type=CONTENT_TYPE)
