"""The admin API for trusted JWT issuers: /v1/issuers (admins only, every change audited)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import Response

from donjon.audit import AuditEvent
from donjon.audit.changes import AuditedChanges
from donjon.audit.errors import RecordPending
from donjon.errors import Error
from donjon.gateway.access import forbid, parse_json, read_body
from donjon.gateway.errors import Forbidden, NotFound
from donjon.gateway.key_reach import Reach, looser_than_own
from donjon.gateway.node import Node
from donjon.gateway.schemas import render
from donjon.gateway.views import IssuerView
from donjon.identity import (
    Issuer,
    KeySet,
    Principal,
    Role,
    fetch_jwks,
    parse_issuer_spec,
    parse_jwks,
    tls_context,
)
from donjon.identity.jwks import MAX_JWKS_BYTES, internal_address
from donjon.store import IssuerRecord, IssuerStore

__all__ = ["add_issuer", "list_issuers", "record_refresh", "remove_issuer"]


def _view(record: IssuerRecord, keys: KeySet | None) -> IssuerView:
    return IssuerView(
        name=record.name,
        issuer=record.issuer,
        jwks=record.jwks_url or "inline",
        audience=record.audience,
        roles_claim=record.roles_claim,
        allowed_roles=list(record.allowed_roles),
        key_ids=sorted(keys.keys) if keys else [],
        created_at=record.created_at,
        refreshed_at=record.refreshed_at,
    )


def _grants_within(principal: Principal, roles: Iterable[str]) -> bool:
    """Whether an issuer that may grant `roles` gives no one more than `principal` holds.

    Registering an issuer mints credentials: its keys' holder gets every role it may
    grant, on every function (a token carries no function limit). So, as for keys
    (keys_api.py), the built-in admin reaches every issuer; a custom role's
    `issuer:manage` only issuers granting its own role alone, and only from a caller not
    limited to some functions nor holding custom roles beside it (a JWT's: their denies
    would be shed; so too beside the built-in admin: Principal.sole_admin)."""
    if principal.sole_admin:
        return True
    no_more = principal.functions is None and not principal.more_roles
    return no_more and set(roles) <= {principal.role}


async def _check_grants(
    node: Node,
    request: Request,
    principal: Principal,
    request_id: str,
    verb: str,
    roles: Iterable[str],
) -> None:
    """`Forbidden` (audited `authz.denied`) unless `_grants_within(principal, roles)`; to
    add one, also unless its tokens' principals are bounded as the caller's own credential
    is (key_reach.py): they never expire and have their role's limits, so a key that
    expires, has limits or a daily quota of its own, or a token (it has an exp), would
    outlast or outrun itself through them. The built-in admin alone passes (a custom role
    beside it may deny it something: Principal.sole_admin)."""
    if principal.sole_admin:
        return
    why = None if _grants_within(principal, roles) else "another role, or limited functions"
    if why is None and verb == "add":
        why = await looser_than_own(node, principal, Reach(principal.role, None, bounded=True))
    if why is None:
        return
    await forbid(
        node,
        request,
        principal,
        f"issuer:manage: only an admin may {verb} an issuer granting "
        f"{', '.join(sorted(roles))} ({why})",
        request_id,
        {"role": principal.role, "statement": "only admins reach wider issuers"},
        f"only an admin may {verb} an issuer that grants another role than the caller's "
        f"own, or from a key limited to some functions, or bounded in time, rate or quota: {why}",
    )


async def _check_address(
    node: Node, request: Request, principal: Principal, request_id: str, url: str
) -> None:
    """`Forbidden` (audited `authz.denied`) if a caller other than the built-in admin names
    a JWKS URL on an internal address: the fetch's error (refused, timed out, a TLS or
    HTTP failure) would tell it what listens there, inside the node's network."""
    if principal.role == Role.ADMIN:
        return
    address = await internal_address(url)
    if address is None:
        return
    await forbid(
        node,
        request,
        principal,
        f"issuer:manage: only an admin may register a JWKS URL on an internal address "
        f"({address[:64]})",
        request_id,
        {"role": principal.role, "statement": "only admins reach internal addresses"},
        "only an admin may register an issuer whose JWKS URL is on an internal address "
        "(or does not resolve)",
    )


async def add_issuer(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    """Check the request and the issuer's keys; store nothing unless all of it is good."""
    raw = await read_body(request, MAX_JWKS_BYTES + 16 * 1024) or b"null"
    body = await parse_json(node, request, principal.label, raw, request_id)
    name = body.get("name") if isinstance(body, dict) else None
    try:
        spec = parse_issuer_spec(body, node.policy.exists)
        await _check_grants(node, request, principal, request_id, "add", spec.allowed_roles)
        if spec.jwks_url is not None:
            await _check_address(node, request, principal, request_id, spec.jwks_url)
            ca = node.settings.jwks_ca_file
            keys = await fetch_jwks(spec.jwks_url, tls_context(str(ca) if ca else None))
        else:
            keys = parse_jwks(spec.jwks or "")
        now = time.time()
        record = IssuerRecord(
            name=spec.name,
            issuer=spec.issuer,
            jwks_url=spec.jwks_url,
            jwks=keys.document,
            audience=spec.audience,
            roles_claim=spec.roles_claim,
            allowed_roles=spec.allowed_roles,
            created_at=now,
            refreshed_at=now,
        )
        event = AuditEvent(
            principal.label,
            "issuer.add",
            f"issuer:{record.name}",
            "ok",
            {
                "request_id": request_id,
                "issuer": record.issuer,
                "jwks": record.jwks_url or "inline",
                "audience": record.audience,
                "allowed_roles": list(record.allowed_roles),
                "key_ids": sorted(keys.keys),
            },
        )
        async with node.changes.change(event):  # the issuer and its record, together
            await asyncio.to_thread(node.issuers.add, record)  # StoreConflict: name/iss taken
            # The fetch just made counts as the first of the once-a-minute refreshes.
            node.jwt.issuers.add(Issuer(record, keys, last_refresh=time.monotonic()))
    except (RecordPending, Forbidden):  # made (its record in the outbox), or authz.denied
        raise
    except Error as e:
        await node.audit.record(
            AuditEvent(
                principal.label,
                "issuer.add",
                f"issuer:{str(name)[:63]}",
                "refused",
                {"request_id": request_id, "reason": e.message[:500]},
            )
        )
        raise
    return render(_view(record, keys), 201)


async def list_issuers(request: Request, node: Node, _p: Principal, _r: str) -> Response:
    records = await asyncio.to_thread(node.issuers.all)
    views = []
    for record in records:
        live = node.jwt.issuers.by_iss(record.issuer)
        views.append(_view(record, live.keys if live is not None else None))
    return render(views)


async def remove_issuer(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    name = request.path_params["issuer"]
    records = await asyncio.to_thread(node.issuers.all)
    for found in records:
        if found.name == name:
            await _check_grants(node, request, principal, request_id, "remove", found.allowed_roles)
    event = AuditEvent(
        principal.label, "issuer.remove", f"issuer:{name}", "ok", {"request_id": request_id}
    )
    async with node.changes.change(event):  # the removal and its record, together
        if not await asyncio.to_thread(node.issuers.remove, name):
            raise NotFound(f"no issuer named {name!r}")
        node.jwt.issuers.remove(name)  # its tokens are refused from the next request on
    return Response(status_code=204)


def _canonical(jwks: str) -> str:
    """A JWKS document in one form (member order, spacing, the order of its keys), so a
    refetch alike is alike: one whose servers list the same keys in another order is."""
    try:
        doc = json.loads(jwks)
    except ValueError:
        return jwks
    if isinstance(doc, dict) and isinstance(doc.get("keys"), list):
        doc["keys"] = sorted(json.dumps(k, sort_keys=True) for k in doc["keys"])
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def _key_ids(jwks: str) -> list[str]:
    try:
        return sorted(parse_jwks(jwks, strict=False).keys)
    except Error:
        return []


async def record_refresh(store: IssuerStore, changes: AuditedChanges, issuer: Issuer) -> None:
    """Store the JWKS a refresh fetched (identity/jwt_verifier.py, on a token's unknown kid).

    From now on the node trusts those keys, and the request that made it fetch them may
    be anyone's: when they differ from the stored ones, the write is an audited change
    (`issuer.keys`, actor `system:jwks`, the key ids before and after), as an admin's
    `issuer add` is. A refetch of the same keys only updates `refreshed_at`."""
    record = issuer.record
    stored = next(
        (
            r
            for r in await asyncio.to_thread(store.all)
            if r.name == issuer.name and r.created_at == record.created_at
        ),
        None,
    )
    if stored is None:  # removed, or removed and added again, while the fetch ran
        return
    write = (issuer.name, record.created_at, record.jwks, record.refreshed_at)
    if _canonical(stored.jwks) == _canonical(record.jwks):
        await asyncio.to_thread(store.set_jwks, *write)
        return
    event = AuditEvent(
        "system:jwks",
        "issuer.keys",
        f"issuer:{issuer.name}",
        "ok",
        {
            "jwks": record.jwks_url or "inline",
            "key_ids": sorted(issuer.keys.keys),
            "previous_key_ids": _key_ids(stored.jwks),
        },
    )
    async with changes.change(event):  # the new keys and their record, committed together
        await asyncio.to_thread(store.set_jwks, *write)
