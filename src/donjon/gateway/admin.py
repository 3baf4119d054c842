"""The admin API under /v1/: functions, keys, roles, audit, logs, secrets.

ROUTES is the whole table of these routes, each behind `guarded` (guarded.py);
the functions' own routes are here, the others' handlers in their modules
(keys_api.py, roles_api.py, audit_api.py, secrets.py, ...).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from donjon.errors import Error
from donjon.gateway.access import query_time
from donjon.gateway.admin_issuers import add_issuer, list_issuers, remove_issuer
from donjon.gateway.alerts_api import list_alerts
from donjon.gateway.audit_api import (
    audit_checkpoints,
    audit_consistency,
    audit_export,
    audit_proof,
    audit_tail,
)
from donjon.gateway.deploy import deploy
from donjon.gateway.errors import BadRequest, NotFound
from donjon.gateway.guarded import Endpoint, Handler, guarded
from donjon.gateway.history import versions_of
from donjon.gateway.keys_api import create_key, list_keys, revoke_key, rotate_key
from donjon.gateway.node import Node
from donjon.gateway.permissions import unused_permissions
from donjon.gateway.roles_api import apply_role, list_roles, remove_role
from donjon.gateway.runtime_api import runtime_target
from donjon.gateway.schemas import render, rendered_list
from donjon.gateway.secrets import (
    create_secret,
    delete_secret,
    list_secrets,
    rekey_vault,
    rotate_secret,
)
from donjon.gateway.stored_views import ON_LOOP_BYTES
from donjon.gateway.views import AdvisoryFinding, FunctionView, LogEntry, QueueDepth
from donjon.identity import Action, Principal
from donjon.manifest.model import NAME_RE
from donjon.store import FunctionRecord

__all__ = ["ROUTES"]

log = logging.getLogger("donjon")

_FUNCTION_NAME = re.compile(NAME_RE)


def _function_view(
    node: Node, name: str, found: dict[str, list[AdvisoryFinding]] | None = None
) -> FunctionView:
    deployed = node.registry.get(name)
    if deployed is None:
        raise NotFound(f"no function named {name!r}")
    return _view_of(deployed.record, found)


def _view_of(
    r: FunctionRecord, found: dict[str, list[AdvisoryFinding]] | None = None
) -> FunctionView:
    """The view of the version `r`, its stored manifest parsed."""
    advisories = (found or {}).get(r.name, [])
    return FunctionView(
        name=r.name,
        version=r.version,
        digest=r.digest,
        deployed_at=r.created_at,
        deployed_by=r.created_by,
        owner=r.owner or None,
        manifest=json.loads(r.manifest),
        vulnerable=bool(advisories),
        advisories=advisories,
    )


async def _advisories(node: Node, names: list[str]) -> dict[str, list[AdvisoryFinding]]:
    """The open advisory findings of each named function's current version."""
    if node.advisory_watch is None or not names:
        return {}
    current = {n: d.record.version for n in names if (d := node.registry.get(n)) is not None}
    if not current:
        return {}
    found = await node.advisory_watch.findings_of(current)
    return {
        name: [AdvisoryFinding.model_validate(f.detail()) for f in findings]
        for name, findings in found.items()
    }


def _rendered_views(
    records: list[FunctionRecord], found: dict[str, list[AdvisoryFinding]]
) -> bytes:
    """The list of `records`' views, each manifest parsed and rendered in turn (on a
    thread of the stored views: the loop takes the GIL between them)."""
    return rendered_list([_view_of(r, found) for r in records])


async def list_functions(request: Request, node: Node, principal: Principal, _r: str) -> Response:
    # Only the functions this principal may read (its own, or those its role names).
    records = [
        d.record
        for d in node.registry.all()
        if node.policy.decide(principal, Action.READ, d.name, d.record.owner or None).allowed
    ]
    found = await _advisories(node, [r.name for r in records])
    # Each manifest is up to 64 KiB and an owner may have hundreds: parsed and rendered on
    # the loop, a large list held every other tenant's calls while it was made.
    if sum(len(r.manifest) for r in records) <= ON_LOOP_BYTES:
        return render([_view_of(r, found) for r in records])
    body = await node.stored_views.run(principal.label, _rendered_views, records, found)
    return Response(body, media_type="application/json")


async def get_function(request: Request, node: Node, _p: Principal, _r: str) -> Response:
    name = request.path_params["name"]
    view = _function_view(node, name, await _advisories(node, [name]))
    deployed = node.registry.get(name)
    if node.invocations is not None and deployed is not None:
        pending: int | None = None
        try:
            pending = (await node.invocations.pending(name)).get(name, 0)
        except Error as e:  # the function is still there: say its count is unknown
            log.warning("function %s: its pending count could not be read: %s", name, e.message)
        depth = QueueDepth(pending=pending, limit=deployed.manifest.limits.queued)
        view = view.model_copy(update={"queue": depth})
    return render(view)


async def delete_function(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    await node.deployments.remove(request.path_params["name"], principal, request_id)
    return Response(status_code=204)


async def function_logs(request: Request, node: Node, principal: Principal, _r: str) -> Response:
    name = request.path_params["name"]
    if not _FUNCTION_NAME.fullmatch(name):  # no function ever had that name: nothing to list
        raise NotFound(f"no function named {name[:64]!r}")
    # Each entry holds up to 64 KiB of output: a few hundred at most per request.
    since, after, request_id = _log_filters(request)
    rows = await asyncio.to_thread(
        functools.partial(
            node.logs.recent,
            name,
            _limit(request, 500),
            since=since,
            after=after,
            request_id=request_id,
            versions=versions_of(request),  # the caller's runs of it (gateway/history.py)
        )
    )
    # A removed function's logs stay readable (to its owner then, and to whom the policy
    # names it for: gateway/history.py); a name never deployed is a mistake.
    if (
        not rows
        and node.registry.get(name) is None
        and not await asyncio.to_thread(node.functions.ever_deployed, name)
    ):
        raise NotFound(f"no function named {name!r} was ever deployed")
    # Up to 500 entries of 16 KiB (49 MB of JSON once escaped): rendered off the loop.
    size = sum(len(row["output"]) for row in rows)
    entries = [LogEntry.model_validate(row) for row in rows]
    return await node.stored_views.respond_list(principal.label, entries, size)


_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_CURSOR = re.compile(r"[0-9]{1,18}")


def _log_filters(request: Request) -> tuple[float | None, int | None, str | None]:
    """`since` (epoch seconds), `after` (a cursor) and `request_id`, each optional."""
    params = request.query_params
    since = query_time(request, "since")
    after: int | None = None
    if "after" in params:
        raw = params["after"]
        if not _CURSOR.fullmatch(raw):
            raise BadRequest("after must be a cursor: a whole number from a previous entry")
        after = int(raw)
    request_id = params.get("request_id")
    if request_id is not None and not _REQUEST_ID.fullmatch(request_id):
        raise BadRequest("request_id must be a request id (up to 64 letters, digits, - _ . :)")
    return since, after, request_id


def _limit(request: Request, most: int = 10_000) -> int:
    raw = request.query_params.get("n", "20")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not 1 <= int(raw) <= most:
        raise BadRequest(f"n must be a whole number from 1 to {most}")
    return int(raw)


def _secret_write(handler: Handler) -> Endpoint:
    """`secret:write` decided on the secret the path names."""
    return guarded(Action.SECRET_WRITE, handler, resource="secret")


ROUTES: list[tuple[str, str, Callable[[Request], Awaitable[Response]]]] = [
    ("/v1/functions", "POST", guarded(Action.DEPLOY, deploy)),  # gateway/deploy.py
    ("/v1/functions", "GET", guarded(Action.READ, list_functions)),
    ("/v1/functions/{name}", "GET", guarded(Action.READ, get_function)),
    ("/v1/functions/{name}", "DELETE", guarded(Action.DELETE, delete_function)),
    ("/v1/functions/{name}/logs", "GET", guarded(Action.LOGS, function_logs, history=True)),
    (  # gateway/permissions.py
        "/v1/functions/{name}/permissions/unused",
        "GET",
        guarded(Action.READ, unused_permissions),
    ),
    ("/v1/keys", "POST", guarded(Action.KEYS, create_key)),
    ("/v1/keys", "GET", guarded(Action.KEYS, list_keys)),
    ("/v1/keys/{key_id}", "DELETE", guarded(Action.KEYS, revoke_key, self_service=True)),
    ("/v1/keys/{key_id}/rotate", "POST", guarded(Action.KEYS, rotate_key, self_service=True)),
    ("/v1/roles", "POST", guarded(Action.ROLES, apply_role)),
    ("/v1/roles", "GET", guarded(Action.ROLES, list_roles)),
    ("/v1/roles/{role}", "DELETE", guarded(Action.ROLES, remove_role)),
    # The audit log, its checkpoints, proofs and export (gateway/audit_api.py).
    ("/v1/audit", "GET", guarded(Action.AUDIT, audit_tail)),
    ("/v1/alerts", "GET", guarded(Action.ALERTS, list_alerts)),  # gateway/alerts_api.py
    ("/v1/audit/checkpoints", "GET", guarded(Action.AUDIT, audit_checkpoints)),
    ("/v1/audit/proof", "GET", guarded(Action.AUDIT, audit_proof)),
    ("/v1/audit/consistency", "GET", guarded(Action.AUDIT, audit_consistency)),
    ("/v1/audit/export", "GET", guarded(Action.AUDIT, audit_export)),
    # The vault (gateway/secrets.py): values go in, never out.
    ("/v1/secrets", "GET", guarded(Action.SECRET_LIST, list_secrets)),
    # secret:write decided on the secret's name (a role's `team-a-*` reaches those only).
    ("/v1/secrets/{secret}", "POST", _secret_write(create_secret)),
    ("/v1/secrets/{secret}/versions", "POST", _secret_write(rotate_secret)),
    ("/v1/secrets/{secret}", "DELETE", _secret_write(delete_secret)),
    ("/v1/vault/rekey", "POST", guarded(Action.VAULT_REKEY, rekey_vault)),
    ("/v1/issuers", "POST", guarded(Action.ISSUERS, add_issuer)),  # gateway/admin_issuers.py
    ("/v1/issuers", "GET", guarded(Action.ISSUERS, list_issuers)),
    ("/v1/issuers/{issuer}", "DELETE", guarded(Action.ISSUERS, remove_issuer)),
    # What dependencies are vendored for (gateway/runtime_api.py).
    ("/v1/runtime", "GET", guarded(Action.DEPLOY, runtime_target)),
]
