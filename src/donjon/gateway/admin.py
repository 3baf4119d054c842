"""The admin API under /v1/: functions, keys, roles, audit, logs, secrets."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from donjon.audit import AuditEvent
from donjon.errors import Error
from donjon.gateway.access import (
    authenticate,
    authorize,
    deny,
    new_request_id,
    parse_json,
    query_time,
    read_body,
)
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
from donjon.gateway.errors import BadRequest, Forbidden, NotFound
from donjon.gateway.node import Node
from donjon.gateway.permissions import unused_permissions
from donjon.gateway.problems import problem_from_error
from donjon.gateway.roles_api import apply_role, list_roles, remove_role
from donjon.gateway.runtime_api import runtime_target
from donjon.gateway.schemas import (
    MAX_EXPIRY_S,
    MAX_OVERLAP_S,
    KeyCreate,
    KeyRotate,
    parse_body,
    render,
)
from donjon.gateway.secrets import (
    create_secret,
    delete_secret,
    list_secrets,
    rekey_vault,
    rotate_secret,
)
from donjon.gateway.views import (
    AdvisoryFinding,
    FunctionView,
    KeyCreated,
    KeyRotated,
    KeyView,
    LogEntry,
    QueueDepth,
)
from donjon.identity import Action, Principal, Role, hash_key, new_api_key, new_secret
from donjon.identity.sigv4 import derive_secret
from donjon.lifecycle import DeployBlocked
from donjon.manifest import ManifestError
from donjon.manifest.model import NAME_RE
from donjon.ratelimit.rates import BadRate, CallerLimits
from donjon.vault import KEY_HASH_PURPOSE, SIGV4_SECRET_PURPOSE

__all__ = ["MAX_EXPIRY_S", "MAX_OVERLAP_S", "ROUTES"]

_FUNCTION_NAME = re.compile(NAME_RE)

Handler = Callable[[Request, Node, Principal, str], Awaitable[Response]]


def _guarded(
    action: Action, handler: Handler, *, self_service: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """Authenticate, authorize `action`, then run `handler`.

    With `self_service`, a principal may also act on its own key (revoke it).
    """

    async def endpoint(request: Request) -> Response:
        node: Node = request.app.state.node
        request_id = new_request_id()
        try:
            principal = await authenticate(node, request, request_id)
            own_key = (
                self_service
                and principal.kind == "key"
                and request.path_params.get("key_id") == principal.id
            )
            if not own_key:
                await authorize(
                    node, request, principal, action, request_id, request.path_params.get("name")
                )
            response = await handler(request, node, principal, request_id)
        except ManifestError as e:
            return problem_from_error(e, request_id=request_id, extra={"problems": e.problems})
        except DeployBlocked as e:
            return problem_from_error(
                e, request_id=request_id, extra={"problems": e.problems, "report": e.report_text}
            )
        except Error as e:
            return problem_from_error(e, request_id=request_id)
        response.headers["x-request-id"] = request_id
        return response

    return endpoint


def _function_view(
    node: Node, name: str, found: dict[str, list[AdvisoryFinding]] | None = None
) -> FunctionView:
    deployed = node.registry.get(name)
    if deployed is None:
        raise NotFound(f"no function named {name!r}")
    r = deployed.record
    advisories = (found or {}).get(name, [])
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


async def list_functions(request: Request, node: Node, principal: Principal, _r: str) -> Response:
    # Only the functions this principal may read (its own, or those its role names).
    names = [
        d.name
        for d in node.registry.all()
        if node.policy.decide(principal, Action.READ, d.name, d.record.owner or None).allowed
    ]
    found = await _advisories(node, names)
    return render([_function_view(node, name, found) for name in names])


async def get_function(request: Request, node: Node, _p: Principal, _r: str) -> Response:
    name = request.path_params["name"]
    view = _function_view(node, name, await _advisories(node, [name]))
    deployed = node.registry.get(name)
    if node.invocations is not None and deployed is not None:
        pending = (await node.invocations.pending(name)).get(name, 0)
        depth = QueueDepth(pending=pending, limit=deployed.manifest.limits.queued)
        view = view.model_copy(update={"queue": depth})
    return render(view)


async def delete_function(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    await node.deployments.remove(request.path_params["name"], principal, request_id)
    return Response(status_code=204)


async def function_logs(request: Request, node: Node, _p: Principal, _r: str) -> Response:
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
        )
    )
    return render([LogEntry.model_validate(row) for row in rows])


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


_KEY_FIELDS = frozenset(
    {"name", "role", "functions", "expires_in_s", "rate", "burst", "concurrency"}
)
_KEY_USAGE = (
    'the body is {"name": text, "role": a role name, "functions": [names] (optional), '
    '"expires_in_s": seconds (optional), "rate": "50/second", "burst": n, '
    '"concurrency": n (each optional)}'
)
MAX_KEY_NAME = 128
MAX_KEY_FUNCTIONS = 1000


async def create_key(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    # Checked by hand, field by field, for messages and hints that say what to fix;
    # schemas.KeyCreate describes the same body in /openapi.json.
    body = await parse_json(
        node, request, principal.label, await read_body(request, 64 * 1024) or b"null", request_id
    )
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", hint=_KEY_USAGE)
    unknown = set(body) - _KEY_FIELDS
    if unknown:
        # A misspelt "functions" must not make a key for every function.
        raise BadRequest(
            f"unknown fields: {', '.join(sorted(str(f)[:64] for f in unknown))}", hint=_KEY_USAGE
        )
    name = body.get("name")
    # Any text (the CLI escapes what it prints), but whole: never truncated.
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_KEY_NAME:
        raise BadRequest(f"name must be 1-{MAX_KEY_NAME} characters", hint=_KEY_USAGE)
    role = body.get("role")
    if not isinstance(role, str) or not node.policy.exists(role):
        raise BadRequest(
            f"role must be a built-in role ({', '.join(Role)}) or a custom one",
            hint="`donjon role ls` lists the roles",
        )
    if principal.role not in (Role.ADMIN, role):
        # key:manage in a custom role never mints a wider key than its own.
        await deny(
            node,
            request,
            principal.label,
            "authz.denied",
            f"key:manage: only an admin may create a key of another role ({role})",
            request_id,
            {"role": principal.role, "statement": "only admins grant other roles"},
        )
        raise Forbidden("only an admin may create a key with another role than its own")
    expires_at = _expiry(body.get("expires_in_s"))
    functions = body.get("functions")
    if functions is not None:
        if role == Role.ADMIN:
            raise BadRequest(
                "functions cannot limit an admin key (it manages every key)",
                hint="give the key a narrower role, or omit functions",
            )
        if (
            not isinstance(functions, list)
            or not functions
            or len(functions) > MAX_KEY_FUNCTIONS
            or not all(isinstance(f, str) and _FUNCTION_NAME.match(f) for f in functions)
        ):
            raise BadRequest(
                f"functions must be a non-empty list of at most {MAX_KEY_FUNCTIONS} function names",
                hint="omit it for every function its role allows (shown as functions: *)",
            )
    limits = _key_limits(body)
    parse_body(KeyCreate, body)  # the model /openapi.json shows agrees: they cannot drift
    key = new_api_key(
        node.master.derive(KEY_HASH_PURPOSE),
        name,
        role,
        tuple(functions) if functions else None,
        expires_at,
        limits,
    )
    await asyncio.to_thread(node.keys.add, key.record)
    node.key_index.add(key.record)
    await node.audit.record(
        AuditEvent(
            principal.label,
            "key.create",
            f"key:{key.record.id}",
            "ok",
            {
                "request_id": request_id,
                "role": role,
                "name": key.record.name,
                "functions": functions,
                "expires_at": expires_at,
                **({"limits": limits.as_dict()} if limits else {}),
            },
        )
    )
    return render(
        KeyCreated(
            id=key.record.id,
            key=key.secret,
            # The Lambda Invoke API's secret access key (docs/security.md): shown once, too.
            sigv4_secret=_sigv4_secret(node, key.record.id, key.record.digest),
            name=key.record.name,
            role=role,
            functions=_reach(functions),
            expires_at=expires_at,
            rate=limits.rate,
            burst=limits.burst,
            concurrency=limits.concurrency,
        ),
        201,
    )


def _key_limits(body: dict[str, Any]) -> CallerLimits:
    """The key's own limits from the body (each optional), with a message that says what
    to fix: a rate such as 50/second, a whole burst and concurrency from 1."""
    rate, burst, concurrency = body.get("rate"), body.get("burst"), body.get("concurrency")
    if rate is not None and not isinstance(rate, str):
        raise BadRequest('rate must be text such as "50/second"', hint=_KEY_USAGE)
    for field, value in (("burst", burst), ("concurrency", concurrency)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise BadRequest(f"{field} must be a whole number from 1", hint=_KEY_USAGE)
    try:
        return CallerLimits(rate, burst, concurrency)
    except BadRate as e:
        raise BadRequest(e.message, hint=_KEY_USAGE) from None


def _seconds(value: object, field: str, most: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= most:
        raise BadRequest(
            f"{field} must be a whole number of seconds from 0 to {most}",
            hint="the CLI takes durations such as 90s, 15m, 12h or 30d",
        )
    return value


def _expiry(value: object) -> float | None:
    if value is None:
        return None
    seconds = _seconds(value, "expires_in_s", MAX_EXPIRY_S)
    if seconds == 0:
        raise BadRequest(
            "expires_in_s must be over 0", hint="omit it for a key that does not expire"
        )
    return time.time() + seconds


def _reach(functions: Sequence[str] | None) -> list[str]:
    """The functions a key may invoke, never silent about the wildcard: ["*"] for all."""
    return list(functions) if functions else ["*"]


async def list_keys(request: Request, node: Node, _p: Principal, _r: str) -> Response:
    keys = await asyncio.to_thread(node.keys.all)
    return render(
        [
            KeyView(
                id=k.id,
                name=k.name,
                role=k.role,
                functions=_reach(k.functions),
                created_at=k.created_at,
                revoked_at=k.revoked_at,
                expires_at=k.expires_at,
                previous_until=k.previous_until,
                rate=k.rate,
                burst=k.burst,
                concurrency=k.concurrency,
                last_used_at=max(
                    (t for t in (k.last_used_at, node.key_index.last_used(k.id)) if t),
                    default=None,
                ),
            )
            for k in keys
        ]
    )


async def rotate_key(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    """A new secret for the same key id; the old one keeps working for the overlap."""
    key_id = request.path_params["key_id"]
    body = await parse_json(
        node, request, principal.label, await read_body(request, 4096) or b"{}", request_id
    )
    overlap = parse_body(KeyRotate, body).overlap_s
    current = await asyncio.to_thread(node.keys.get, key_id)
    if current is None or current.revoked_at is not None:
        raise NotFound(f"no live key with id {key_id!r}")
    if current.expires_at is not None and current.expires_at <= time.time():
        raise BadRequest(f"key {key_id} has expired", hint="create a new key")
    secret = new_secret(key_id)
    until = time.time() + overlap
    record = await asyncio.to_thread(
        node.keys.rotate, key_id, hash_key(node.master.derive(KEY_HASH_PURPOSE), secret), until
    )
    if record is None:
        raise NotFound(f"no live key with id {key_id!r}")
    node.key_index.add(record)
    await node.audit.record(
        AuditEvent(
            principal.label,
            "key.rotate",
            f"key:{key_id}",
            "ok",
            {"request_id": request_id, "overlap_s": overlap},
        )
    )
    return render(
        KeyRotated(
            id=key_id,
            key=secret,
            sigv4_secret=_sigv4_secret(node, key_id, record.digest),
            previous_until=until,
        ),
        201,
    )


def _sigv4_secret(node: Node, key_id: str, digest: bytes) -> str:
    """The SigV4 secret of a key whose stored hash is `digest` (identity/sigv4.py)."""
    return derive_secret(node.master.derive(SIGV4_SECRET_PURPOSE), key_id, digest)


async def revoke_key(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    key_id = request.path_params["key_id"]
    if not await node.revoke_key(key_id):
        raise NotFound(f"no live key with id {key_id!r}")
    await node.audit.record(
        AuditEvent(principal.label, "key.revoke", f"key:{key_id}", "ok", {"request_id": request_id})
    )
    return Response(status_code=204)


ROUTES: list[tuple[str, str, Callable[[Request], Awaitable[Response]]]] = [
    ("/v1/functions", "POST", _guarded(Action.DEPLOY, deploy)),  # gateway/deploy.py
    ("/v1/functions", "GET", _guarded(Action.READ, list_functions)),
    ("/v1/functions/{name}", "GET", _guarded(Action.READ, get_function)),
    ("/v1/functions/{name}", "DELETE", _guarded(Action.DELETE, delete_function)),
    ("/v1/functions/{name}/logs", "GET", _guarded(Action.LOGS, function_logs)),
    (  # gateway/permissions.py
        "/v1/functions/{name}/permissions/unused",
        "GET",
        _guarded(Action.READ, unused_permissions),
    ),
    ("/v1/keys", "POST", _guarded(Action.KEYS, create_key)),
    ("/v1/keys", "GET", _guarded(Action.KEYS, list_keys)),
    ("/v1/keys/{key_id}", "DELETE", _guarded(Action.KEYS, revoke_key, self_service=True)),
    ("/v1/keys/{key_id}/rotate", "POST", _guarded(Action.KEYS, rotate_key, self_service=True)),
    ("/v1/roles", "POST", _guarded(Action.ROLES, apply_role)),
    ("/v1/roles", "GET", _guarded(Action.ROLES, list_roles)),
    ("/v1/roles/{role}", "DELETE", _guarded(Action.ROLES, remove_role)),
    # The audit log, its checkpoints, proofs and export (gateway/audit_api.py).
    ("/v1/audit", "GET", _guarded(Action.AUDIT, audit_tail)),
    ("/v1/alerts", "GET", _guarded(Action.ALERTS, list_alerts)),  # gateway/alerts_api.py
    ("/v1/audit/checkpoints", "GET", _guarded(Action.AUDIT, audit_checkpoints)),
    ("/v1/audit/proof", "GET", _guarded(Action.AUDIT, audit_proof)),
    ("/v1/audit/consistency", "GET", _guarded(Action.AUDIT, audit_consistency)),
    ("/v1/audit/export", "GET", _guarded(Action.AUDIT, audit_export)),
    # The vault (gateway/secrets.py): values go in, never out.
    ("/v1/secrets", "GET", _guarded(Action.SECRET_LIST, list_secrets)),
    ("/v1/secrets/{secret}", "POST", _guarded(Action.SECRET_WRITE, create_secret)),
    ("/v1/secrets/{secret}/versions", "POST", _guarded(Action.SECRET_WRITE, rotate_secret)),
    ("/v1/secrets/{secret}", "DELETE", _guarded(Action.SECRET_WRITE, delete_secret)),
    ("/v1/vault/rekey", "POST", _guarded(Action.VAULT_REKEY, rekey_vault)),
    ("/v1/issuers", "POST", _guarded(Action.ISSUERS, add_issuer)),  # gateway/admin_issuers.py
    ("/v1/issuers", "GET", _guarded(Action.ISSUERS, list_issuers)),
    ("/v1/issuers/{issuer}", "DELETE", _guarded(Action.ISSUERS, remove_issuer)),
    # What dependencies are vendored for (gateway/runtime_api.py).
    ("/v1/runtime", "GET", _guarded(Action.DEPLOY, runtime_target)),
]
