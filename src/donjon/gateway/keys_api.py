"""API keys under /v1/keys: create, list, rotate, revoke.

A key's secret is shown once, when it is made or rotated, with its SigV4
secret for the Lambda Invoke API (docs/security.md); the store keeps only
its keyed hash. Creation is checked field by field, so that a refusal says
what to fix, and a key never carries a wider role than its maker's unless
an admin makes it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from donjon.audit import AuditEvent
from donjon.gateway.access import deny, parse_json, read_body
from donjon.gateway.errors import BadRequest, Forbidden, NotFound
from donjon.gateway.key_reach import Reach, check_reach, reaches_key
from donjon.gateway.node import Node
from donjon.gateway.schemas import MAX_EXPIRY_S, KeyCreate, KeyRotate, parse_body, render
from donjon.gateway.views import KeyCreated, KeyRotated, KeyView
from donjon.identity import Principal, Role, hash_key, new_api_key, new_secret
from donjon.identity.sigv4 import derive_secret
from donjon.manifest.model import NAME_RE
from donjon.ratelimit.rates import BadRate, CallerLimits
from donjon.vault import KEY_HASH_PURPOSE, SIGV4_SECRET_PURPOSE

__all__ = [
    "MAX_KEY_FUNCTIONS",
    "MAX_KEY_NAME",
    "create_key",
    "list_keys",
    "revoke_key",
    "rotate_key",
]

_FUNCTION_NAME = re.compile(NAME_RE)

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
    reach = Reach(role, functions, expires_at, limits, bounded=True)
    await check_reach(node, request, principal, request_id, "create", reach)
    parse_body(KeyCreate, body)  # the model /openapi.json shows agrees: they cannot drift
    key = new_api_key(
        node.master.derive(KEY_HASH_PURPOSE),
        name,
        role,
        tuple(functions) if functions else None,
        expires_at,
        limits,
    )
    event = AuditEvent(
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
    async with node.changes.change(event):  # the key and its record, committed together
        await asyncio.to_thread(node.keys.add, key.record)
        node.key_index.add(key.record)
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


async def list_keys(request: Request, node: Node, principal: Principal, _r: str) -> Response:
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
            if reaches_key(principal, k)
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
    await check_reach(node, request, principal, request_id, "rotate", Reach.of(current))
    if current.expires_at is not None and current.expires_at <= time.time():
        raise BadRequest(f"key {key_id} has expired", hint="create a new key")
    secret = new_secret(key_id)
    until = time.time() + overlap
    event = AuditEvent(
        principal.label,
        "key.rotate",
        f"key:{key_id}",
        "ok",
        {"request_id": request_id, "overlap_s": overlap},
    )
    async with node.changes.change(event):  # the new digest and its record, together
        record = await asyncio.to_thread(
            node.keys.rotate, key_id, hash_key(node.master.derive(KEY_HASH_PURPOSE), secret), until
        )
        if record is None:
            raise NotFound(f"no live key with id {key_id!r}")
        node.key_index.add(record)
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
    current = await asyncio.to_thread(node.keys.get, key_id)
    if current is not None:  # an unknown id: the 404 below, as before
        reach = Reach(current.role, current.functions)  # (its bounds: revoking ends it)
        await check_reach(node, request, principal, request_id, "revoke", reach)
    event = AuditEvent(
        principal.label, "key.revoke", f"key:{key_id}", "ok", {"request_id": request_id}
    )
    async with node.changes.change(event):  # the revocation and its record, together
        if not await node.revoke_key(key_id):
            raise NotFound(f"no live key with id {key_id!r}")
    return Response(status_code=204)
