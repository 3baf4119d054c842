"""/v1/quotas: daily quotas per key, role or function (denial of wallet), behind `quota:manage`.

- `GET /v1/quotas`: every quota with today's usage (UTC day) and when it resets.
- `PUT /v1/quotas/{quota}`: set (replace) a subject's quota, `{"invocations": N,
  "compute_seconds": S}` (a measure left out is unlimited; with neither, the usage is
  only counted, for `donjon quota show`); the subject must exist
  (a live key's id, a built-in or custom role, a deployed function); audited `quota.set`.
- `DELETE /v1/quotas/{quota}`: remove it; audited `quota.rm`.
Outside the built-in admin, `quota:manage` sets and removes no quota that binds the
caller's own calls (its key's, its roles'): 403, audited `authz.denied`.
The book in force and the counter live in ratelimit/ (quota_book.py, memory_quota.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from donjon.audit import AuditEvent
from donjon.gateway.access import forbid, parse_json, read_body
from donjon.gateway.errors import BadRequest, NotFound
from donjon.gateway.guarded import guarded
from donjon.gateway.node import Node
from donjon.gateway.quota_check import next_reset, subjects_of
from donjon.gateway.quota_views import Measure, QuotaRemoved, QuotaSet, QuotaView
from donjon.gateway.read_scope import read_scope
from donjon.gateway.schemas import parse_body, render
from donjon.identity import Action, Principal, Role
from donjon.ratelimit.memory_quota import utc_day
from donjon.ratelimit.quota_book import split_subject
from donjon.store.quotas import QuotaRecord

__all__ = ["ROUTES"]

MAX_QUOTA_BYTES = 4096


def _subject(request: Request) -> tuple[str, str, str]:
    subject: str = request.path_params["quota"]
    parts = split_subject(subject)
    if parts is None:
        raise BadRequest(
            f"{subject[:80]!r} is not a quota's subject: key:ID, role:NAME or function:NAME"
        )
    return subject, *parts


async def _not_own(
    node: Node, request: Request, principal: Principal, subject: str, verb: str, request_id: str
) -> None:
    """`Forbidden` (audited `authz.denied`) if `subject` is a quota bounding `principal`'s
    own calls (its key's, one of its roles'), unless it is the built-in admin: `quota:manage`
    granted to a custom role lifted its own quotas (hE-52), as `key:manage` mints no key
    wider than its own (key_reach.py)."""
    own = subjects_of(principal, "")[1:]  # its key's and its roles' (not a function's)
    if principal.role == Role.ADMIN or subject not in own:
        return
    await forbid(
        node,
        request,
        principal,
        f"quota:manage: only an admin may {verb} a quota that binds the caller ({subject})",
        request_id,
        {"role": principal.role, "statement": "only admins manage their own quotas"},
        f"only an admin may {verb} the quota of {subject}: it binds the caller's own calls",
    )


async def _exists(node: Node, kind: str, name: str) -> bool:
    if kind == "function":
        return node.registry.get(name) is not None
    if kind == "role":
        return name in {r.value for r in Role} or any(d.name == name for d in node.policy.custom())
    record = await asyncio.to_thread(node.keys.get, name)
    return record is not None and record.revoked_at is None


def _view(record: QuotaRecord, used: tuple[int, int], day: str, reset: str) -> QuotaView:
    ms = record.max_compute_ms
    return QuotaView(
        subject=record.subject,
        invocations=Measure(used=used[0], limit=record.max_invocations),
        compute_seconds=Measure(used=used[1] / 1000, limit=None if ms is None else ms / 1000),
        day=day,
        resets_at=reset,
        updated_at=record.updated_at,
        updated_by=record.updated_by,
    )


async def _views(node: Node, records: list[QuotaRecord]) -> list[QuotaView]:
    now = time.time()
    day = utc_day(now)
    reset = next_reset(now).strftime("%Y-%m-%dT%H:%M:%SZ")
    usage = await node.quota_counter.usage([r.subject for r in records], day)
    return [_view(r, usage.get(r.subject, (0, 0)), day, reset) for r in records]


async def list_quotas(request: Request, node: Node, principal: Principal, _r: str) -> Response:
    # A role allowed quota:manage on some functions lists their quotas only
    # (gateway/read_scope.py): a key's or a role's quota is node-wide.
    scope = read_scope(node, principal, Action.QUOTAS)
    return render(await _views(node, [q for q in node.quotas.all() if scope.subject(q.subject)]))


async def set_quota(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    subject, kind, name = _subject(request)
    await _not_own(node, request, principal, subject, "set", request_id)
    body = await read_body(request, MAX_QUOTA_BYTES)
    wanted = parse_body(
        QuotaSet, await parse_json(node, request, principal.label, body or b"null", request_id)
    )
    if not await _exists(node, kind, name):
        raise NotFound(f"no {kind} {name!r} to set a quota on", hint=_EXISTS_HINT[kind])
    seconds = wanted.compute_seconds
    record = QuotaRecord(
        subject=subject,
        max_invocations=wanted.invocations,
        max_compute_ms=None if seconds is None else round(seconds * 1000),
        updated_at=time.time(),
        updated_by=principal.label,
    )
    event = AuditEvent(
        principal.label,
        "quota.set",
        subject,
        "ok",
        {
            "request_id": request_id,
            "invocations": record.max_invocations,
            "compute_ms": record.max_compute_ms,
        },  # and "created", from the store
    )
    async with node.changes.change(event):  # the quota and its record, committed together
        created = await node.quotas.put(record)
    (view,) = await _views(node, [record])
    return render(view, 201 if created else 200)


_EXISTS_HINT = {
    "key": "a live API key's id (donjon key ls)",
    "role": "a built-in or custom role (donjon role ls)",
    "function": "a deployed function (donjon ls)",
}


async def remove_quota(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    subject, _, _ = _subject(request)
    await _not_own(node, request, principal, subject, "remove", request_id)
    event = AuditEvent(principal.label, "quota.rm", subject, "ok", {"request_id": request_id})
    async with node.changes.change(event):  # the removal and its record, committed together
        if not await node.quotas.remove(subject):  # the store decides (another node's too)
            raise NotFound(f"{subject} has no quota", hint="donjon quota show lists them")
    return render(QuotaRemoved(subject=subject, removed=True))


ROUTES: list[tuple[str, str, Callable[[Request], Awaitable[Response]]]] = [
    ("/v1/quotas", "GET", guarded(Action.QUOTAS, list_quotas)),
    ("/v1/quotas/{quota}", "PUT", guarded(Action.QUOTAS, set_quota, subject="quota")),
    ("/v1/quotas/{quota}", "DELETE", guarded(Action.QUOTAS, remove_quota, subject="quota")),
]
