"""Authentication and authorization of requests, with every denial audited."""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections.abc import Callable
from typing import Any, NoReturn

from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from donjon import boundedjson
from donjon.audit import AuditEvent
from donjon.client_network import client_network
from donjon.gateway.errors import BadRequest, Forbidden, PayloadTooLarge, Unauthorized
from donjon.gateway.node import Node
from donjon.identity import (
    Action,
    Decision,
    Principal,
    TokenRejected,
    looks_like_jwt,
    principal_from_claims,
)
from donjon.identity.apikeys import key_id_of
from donjon.identity.policy import OWNER_SCOPED
from donjon.monitor.throttles import Throttled
from donjon.obs import bind_request_id, mint_request_id

__all__ = [
    "authenticate",
    "authorize",
    "check_still_live",
    "check_throttles",
    "client_address",
    "credential_ended",
    "decide",
    "deny",
    "deny_caller",
    "forbid",
    "header",
    "new_request_id",
    "not_json",
    "parse_json",
    "query_time",
    "read_body",
]


def new_request_id() -> str:
    """A request's id, bound to its context: every log line served for it carries it."""
    request_id = mint_request_id()
    bind_request_id(request_id)
    return request_id


def client_address(request: Request) -> str:
    """The caller's address: the peer's, or what a trusted proxy forwarded (server.py).

    Only an IP address is recorded; anything else a proxy forwarded is "-".
    """
    client = request.scope.get("client")  # what `request.client` reads, without its tuple
    return _canonical_address(client[0] if client is not None else "")


def header(request: Request, name: bytes) -> str | None:
    """The request's first field `name` (lower case), as `request.headers.get` reads it
    (the same list, latin-1), without making Starlette's `Headers`: the hot path reads two."""
    for key, value in request.scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


@functools.lru_cache(maxsize=4096)
def _canonical_address(host: str) -> str:
    """`host` as an IP address in its canonical form, or "-" (parsed once per address)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return "-"


async def deny(
    node: Node,
    request: Request,
    actor: str,
    action: str,
    reason: str,
    request_id: str,
    extra: dict[str, str] | None = None,
    *,
    named: str = "",
) -> None:
    """Audit a refused request: at once if it is its source's first in the window, else counted.

    The aggregation (per client, actor and action) lives in `audit/denials.py`.
    """
    client = client_address(request)
    node.metrics.denied(action, reason)
    await node.denials.deny(
        AuditEvent(
            actor,
            action,
            request.url.path[:256],
            "denied",
            {
                "request_id": request_id,
                "reason": reason,
                "client": client,
                "method": request.method,
                **(extra or {}),
            },
        ),
        client,
        named,
    )


async def forbid(
    node: Node,
    request: Request,
    principal: Principal,
    reason: str,
    request_id: str,
    extra: dict[str, str],
    message: str,
) -> NoReturn:
    """Refuse `principal` what it asked (403 `message`), audited as `authz.denied` with
    `reason` and `extra`, aggregated as every denial is."""
    await deny(node, request, principal.label, "authz.denied", reason, request_id, extra)
    raise Forbidden(message)


async def check_throttles(
    node: Node, request: Request, request_id: str, principal: Principal | None = None
) -> None:
    """The monitor's throttles (monitor/throttles.py) on the request's source address, or
    on `principal`: `Throttled` (429, its refusals audited as `throttle.denied`, aggregated
    like every denial) once the throttle's bucket is spent. Free while no throttle is set."""
    if not node.throttles:
        return
    try:
        if principal is not None:
            await node.throttles.check("principal", principal.label)
        else:  # the address, and its /64 (what the monitor's findings name for IPv6)
            address = client_address(request)
            await node.throttles.check("source", address)
            network = client_network(address)
            if network != address:
                await node.throttles.check("source", network)
    except Throttled as e:
        actor = principal.label if principal is not None else "anonymous"
        await deny(node, request, actor, "throttle.denied", e.message, request_id)
        raise


async def authenticate(
    node: Node, request: Request, request_id: str, *, jwt_only: bool = False
) -> Principal:
    """The caller behind the bearer credential (an API key or a JWT), or `Unauthorized` (audited).

    The two are told apart by shape: a key reads ``dj_...``, a JWT is three
    dot-separated segments. With `jwt_only` (``auth: jwt`` triggers) a key is refused.
    A throttled source is refused before its credential is looked at, a throttled
    principal once it is known (`check_throttles`).
    """
    # (`in_force`: the throttles' truth without a call; free while none is set)
    if node.throttles.in_force:
        await check_throttles(node, request, request_id)
    field = header(request, b"authorization") or ""
    scheme, _, token = field.partition(" ")
    token = token.strip()
    principal = None
    reason = "missing credentials" if not field else "invalid credentials"
    named = ""  # the key id a refused key names: for the monitor only, never recorded
    if scheme.lower() == "bearer" and token:
        if looks_like_jwt(token):
            principal = await _authenticate_jwt(node, request, request_id, token)
        elif jwt_only:
            reason = "jwt: the credential is not a JWT"
        else:
            principal, reason = node.key_index.check(token)
            if principal is None:
                named = key_id_of(token) or ""
    if principal is None:
        await deny(node, request, "anonymous", "auth.denied", reason, request_id, named=named)
        raise Unauthorized("missing, invalid or revoked credentials")
    if node.throttles.in_force:
        await check_throttles(node, request, request_id, principal)
    return principal


async def _authenticate_jwt(node: Node, request: Request, request_id: str, token: str) -> Principal:
    """A verified JWT's principal; 401 if any check fails, 403 if its issuer grants no role."""
    try:
        verified = await node.jwt.verify(token)
    except TokenRejected as e:
        await deny(node, request, "anonymous", "auth.denied", e.message, request_id)
        raise Unauthorized("missing, invalid or revoked credentials") from None
    issuer = verified.issuer.record
    principal = principal_from_claims(
        issuer, verified.sub, verified.claims, verified.kid, verified.fingerprint
    )
    if principal is None:
        await deny(
            node,
            request,
            f"jwt:{issuer.name}:{verified.sub}",
            "authz.denied",
            f"jwt: no role that issuer {issuer.name} may grant "
            f"(it may grant {', '.join(issuer.allowed_roles)})",
            request_id,
        )
        raise Forbidden("this credential does not allow that")
    return principal


def credential_ended(node: Node, principal: Principal) -> str | None:
    """Why `principal`'s credential stopped authenticating since its request's head was
    checked (its key revoked or expired, its token's `exp` or its retired secret's
    overlap passed), or None. A dict lookup and a comparison: the hot path asks it."""
    # (The clock read only for a credential that expires: most keys do not.)
    reason = node.key_index.ended(principal.id) if principal.kind == "key" else None
    if reason is None and principal.expires_at is not None and time.time() >= principal.expires_at:
        reason = "credential expired"
    return reason


async def check_still_live(
    node: Node, principal: Principal, target: str, request_id: str, **detail: str
) -> None:
    """`Unauthorized` (audited `auth.denied` on `target`, with `detail`) if
    `credential_ended`. A call runs, and an admin change is made, only once the body has
    arrived (and a call holds its slots), which a slow client stretched at will: a key
    revoked meanwhile still ran its call, and an admin key minted a key that outlived it."""
    reason = credential_ended(node, principal)
    if reason is None:
        return
    reason = f"{reason} while its request was on its way"
    await deny_caller(node, principal, "auth.denied", target, request_id, reason, detail)
    raise Unauthorized("missing, invalid or revoked credentials")


async def deny_caller(
    node: Node,
    principal: Principal,
    action: str,
    target: str,
    request_id: str,
    reason: str,
    detail: dict[str, str],
) -> None:
    """Audit a refusal of `principal`'s call where no request is at hand to name its source
    (a delivery's, a call's on its way): counted, aggregated per principal as `deny` does
    per client."""
    node.metrics.denied(action, reason)
    event = AuditEvent(
        principal.label,
        action,
        target,
        "denied",
        {"request_id": request_id, "reason": reason, **detail},
    )
    await node.denials.deny(event, principal.label)


def decide(
    node: Node, principal: Principal, action: Action, function: str | None = None
) -> Decision:
    """The policy's decision on `action` by `principal` (on `function`: on one that exists,
    its owner takes part, policy_eval.py); nothing audited (`authorize` does)."""
    owner = None
    if function is not None and action in OWNER_SCOPED:
        deployed = node.registry.get(function)
        owner = (deployed.record.owner or None) if deployed is not None else None
    return node.policy.decide(principal, action, function, owner)


async def authorize(
    node: Node,
    request: Request,
    principal: Principal,
    action: Action,
    request_id: str,
    function: str | None = None,
) -> None:
    """`Forbidden` (audited, with the deciding statement) unless the policy allows `action`
    (`decide`)."""
    decision = decide(node, principal, action, function)
    if not decision.allowed:
        target = f" on {function}" if function is not None else ""
        await deny(
            node,
            request,
            principal.label,
            "authz.denied",
            f"{action.value}{target} denied: {decision.statement}",
            request_id,
            {
                "role": ",".join((principal.role, *principal.more_roles)),
                "statement": decision.statement,
                "permission": action.value,
            },
        )
        raise Forbidden("this credential does not allow that")


async def read_body(
    request: Request,
    limit: int,
    *,
    check_declared: bool = True,
    too_large: Callable[[], PayloadTooLarge] | None = None,
) -> bytes:
    """The request body, refusing more than `limit` bytes before reading it all (without
    `check_declared`, the caller has already refused a Content-Length over `limit`);
    `too_large` makes the refusal (else this route's own, naming `limit`)."""
    if too_large is None:
        too_large = functools.partial(_too_large, limit)
    if check_declared:
        declared = header(request, b"content-length")
        if (
            declared is not None
            and declared.isascii()
            and declared.isdigit()
            and int(declared) > limit
        ):
            raise too_large()
    # (Starlette's own fields: the stream not read, no body kept; one look-up, no getattr)
    fields = request.__dict__
    if fields.get("_stream_consumed") is False and "_body" not in fields:
        return await _received(request, limit, too_large)
    chunks = []
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise too_large()
            chunks.append(chunk)
    except ClientDisconnect:
        raise _cut_short() from None
    return b"".join(chunks)


async def _received(
    request: Request, limit: int, too_large: Callable[[], PayloadTooLarge]
) -> bytes:
    """`read_body`'s loop on the ASGI messages themselves, as Starlette's `stream()` reads
    them, without its async generator (about fifteen Python calls a request, the warm
    path's); the body kept as `Request.body()` keeps it, so a later read gets it too."""
    receive = request._receive  # (what its `receive` property returns, without the call)
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        # The whole body in one message (most calls'): kept as it came, no list, no join.
        body = message.get("body", b"")
        if len(body) > limit:
            raise too_large()
        if type(body) is not bytes:
            body = bytes(body)  # (what `b"".join` makes of it)
    else:
        body = await _pieces(request, message, limit, too_large)
    request._stream_consumed = True
    request._body = body
    return body


async def _pieces(
    request: Request, message: Message, limit: int, too_large: Callable[[], PayloadTooLarge]
) -> bytes:
    """`_received`'s body in more than one message, `message` the first."""
    receive = request._receive
    chunks = []
    total = 0
    while True:
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif kind == "http.disconnect":
            request._is_disconnected = True  # (as `stream()` marks it)
            raise _cut_short()
        message = await receive()
    return b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request body over {limit} bytes", hint=f"this route takes at most {limit} bytes"
    )


def _cut_short() -> BadRequest:
    # The client left, or its framing broke (the connection answered 400 and closed): a
    # request that never arrived whole, not the server's fault; nobody reads this.
    return BadRequest("the request body ended before it was whole")


async def parse_json(
    node: Node, request: Request, actor: str, body: bytes, request_id: str, *, finite: bool = False
) -> Any:
    """`body` as JSON, or `BadRequest`; nesting past `boundedjson.MAX_DEPTH` is also audited.
    `finite`: NaN, Infinity and numbers past a float are refused (an event an input_schema
    checks: NaN would pass its numeric bounds)."""
    try:
        return boundedjson.loads(body, finite=finite)
    except boundedjson.JSONTooDeep as e:
        await deny(node, request, actor, "input.refused", e.message, request_id)
        raise BadRequest(e.message, hint=e.hint) from e
    except ValueError as e:
        raise not_json(str(e)) from e


def not_json(reason: str) -> BadRequest:
    """The 400 for a request body json cannot parse, saying json's `reason`."""
    return BadRequest(
        f"the request body is not valid JSON: {reason}", hint="send a JSON document (UTF-8)"
    )


def query_time(request: Request, name: str) -> float | None:
    """The query parameter `name` as a time in seconds since the epoch, if given."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise BadRequest(f"{name} must be a time in seconds since the epoch (0 or more)")
    return value
