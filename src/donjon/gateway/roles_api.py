"""/v1/roles: custom role documents (apply, list, remove), behind `role:manage`.

A document is validated (policy_doc.py) before anything is stored; the node's
in-memory `Policy` changes only after the store did.
"""

from __future__ import annotations

import asyncio
import json

from starlette.requests import Request
from starlette.responses import Response

from donjon.audit import AuditEvent
from donjon.gateway.access import forbid, parse_json, read_body
from donjon.gateway.errors import NotFound
from donjon.gateway.node import Node
from donjon.gateway.schemas import query_flag, render
from donjon.gateway.views import RoleApplied, RoleRemoved, RoleView
from donjon.identity import Principal, Role, parse_role
from donjon.identity.policy import BUILTIN_ROLES
from donjon.identity.policy_doc import RoleConflict, RoleError
from donjon.store import RoleStore

__all__ = ["apply_role", "list_roles", "remove_role"]

MAX_ROLE_BYTES = 64 * 1024


def _store(node: Node) -> RoleStore:
    if node.roles is None:
        raise RoleError("this node keeps no custom roles")
    return node.roles


async def _not_its_own(
    node: Node, request: Request, principal: Principal, request_id: str, verb: str, name: str
) -> None:
    """`Forbidden` (audited `authz.denied`) when a principal other than the built-in admin
    would change a role it holds itself: `role:manage` in a custom role must not rewrite
    its own statements into every action (as keys_api.py keeps `key:manage` from minting
    a wider key than its own), nor an admin's token the custom role that denies it
    something (Principal.sole_admin)."""
    if principal.sole_admin or name not in (principal.role, *principal.more_roles):
        return
    await forbid(
        node,
        request,
        principal,
        f"role:manage: only an admin may {verb} a role the caller holds ({name})",
        request_id,
        {"role": principal.role, "statement": "only admins change the roles they hold"},
        f"only an admin may {verb} a role the caller holds itself",
    )


async def apply_role(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    body = await read_body(request, MAX_ROLE_BYTES)
    data = await parse_json(node, request, principal.label, body or b"null", request_id)
    doc = parse_role(data)
    await _not_its_own(node, request, principal, request_id, "apply", doc.name)
    event = AuditEvent(  # and "created", from the store
        principal.label,
        "role.apply",
        f"role:{doc.name}",
        "ok",
        {"request_id": request_id, "statements": len(doc.statements)},
    )
    async with node.changes.change(event):  # the role and its record, committed together
        document = doc.model_dump(exclude_none=True)
        created = await asyncio.to_thread(_store(node).put, doc.name, document)
        node.policy.put(doc)
    applied = RoleApplied(
        name=doc.name, created=created, **doc.model_dump(exclude={"name"}, exclude_none=True)
    )
    return render(applied, 201 if created else 200)


def _view(name: str, statements: object, builtin: bool, limits: object = None) -> dict[str, object]:
    view: dict[str, object] = {"name": name, "builtin": builtin, "statements": statements}
    if limits is not None:
        view["limits"] = limits
    return view


async def list_roles(request: Request, node: Node, _p: Principal, _r: str) -> Response:
    builtin = [_view(name, json.loads(json.dumps(st)), True) for name, st in BUILTIN_ROLES.items()]
    custom = [
        _view(
            d.name,
            d.model_dump()["statements"],
            False,
            d.limits.model_dump(exclude_none=True) if d.limits else None,
        )
        for d in node.policy.custom()
    ]
    in_use = await asyncio.to_thread(node.keys.roles_in_use)
    return render(
        [
            RoleView.model_validate({**r, "keys": len(in_use.get(str(r["name"]), []))})
            for r in builtin + custom
        ]
    )


async def remove_role(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    name = request.path_params["role"]
    if name in set(Role):
        raise RoleError(f"{name!r} is a built-in role: it cannot be removed")
    if not any(d.name == name for d in node.policy.custom()):
        raise NotFound(f"no custom role named {name[:64]!r}")
    await _not_its_own(node, request, principal, request_id, "remove", name)
    holders = (await asyncio.to_thread(node.keys.roles_in_use)).get(name, [])
    force = query_flag(request, "force")
    if holders and not force:
        raise RoleConflict(
            f"role {name!r} is held by {len(holders)} live key(s): {', '.join(holders[:20])}",
            hint="revoke those keys first, or remove it anyway with --force "
            "(those keys are then denied everything)",
        )
    event = AuditEvent(
        principal.label,
        "role.remove",
        f"role:{name}",
        "ok",
        {"request_id": request_id, "keys_left_without_rights": holders},
    )
    async with node.changes.change(event):  # the removal and its record, committed together
        await asyncio.to_thread(_store(node).remove, name)
        node.policy.remove(name)
    return render(RoleRemoved(name=name, keys_left_without_rights=holders))
