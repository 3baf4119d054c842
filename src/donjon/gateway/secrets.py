"""The vault's admin API under /v1/secrets and /v1/vault: values go in, never out.

No route here answers with a value: set and rotate answer the name and the
version, list answers names, versions, dates and the deployed functions
granted each. Every change is audited (name and version, never the value).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from donjon.audit import AuditEvent
from donjon.audit.errors import RecordPending
from donjon.gateway.access import parse_json, read_body
from donjon.gateway.errors import BadRequest
from donjon.gateway.node import Node
from donjon.gateway.schemas import render
from donjon.gateway.views import RekeyResult, SecretSummary, SecretVersion
from donjon.identity import Action, Principal, Role
from donjon.lifecycle import Deployed
from donjon.manifest.exposure import trigger_secrets
from donjon.secret import Secret
from donjon.store import StoreConflict
from donjon.vault.errors import GraceEndForbidden, GrantedTooLarge
from donjon.vault.keyring import rekey
from donjon.vault.names import MAX_VALUE_BYTES, check_name, check_value
from donjon.vault.service import MAX_GRANTED

__all__ = ["create_secret", "delete_secret", "list_secrets", "rekey_vault", "rotate_secret"]

# The value's bytes, JSON-escaped at worst six times over, and the envelope.
_MAX_BODY = MAX_VALUE_BYTES * 6 + 1024


async def _value(
    request: Request, node: Node, principal: Principal, request_id: str, *, rotation: bool = False
) -> tuple[Secret[str], bool]:
    """The body's value, and (a `rotation`'s) whether it asks for no grace."""
    body = await parse_json(
        node, request, principal.label, await read_body(request, _MAX_BODY) or b"null", request_id
    )
    allowed = {"value", "no_grace"} if rotation else {"value"}
    if not isinstance(body, dict) or "value" not in body or not set(body) <= allowed:
        shown = '{"value": "...", "no_grace": false}' if rotation else '{"value": "..."}'
        raise BadRequest(
            f"the body must be {shown} and nothing else",
            hint="`donjon secret set NAME` reads the value from stdin or --from-file",
        )
    no_grace = body.get("no_grace", False)
    if not isinstance(no_grace, bool):
        raise BadRequest("no_grace must be true or false")
    return Secret(check_value(body["value"])), no_grace


async def _check_fits(node: Node, name: str, value: Secret[str], principal: Principal) -> None:
    """`GrantedTooLarge` (422, nothing changed) if `value` would take a deployed function's
    granted secrets past what one call carries (vault MAX_GRANTED): every call of it would
    be refused until the value shrank. Names only the functions `principal` may read.

    Weighed only for the functions whose other granted secrets `principal` may use (a
    function it deployed would read them): otherwise the refusal, said or not, told a
    writer of one secret the others' length, by trying values of growing size. Those
    functions' calls are refused instead, as after any value that breaks them."""
    over: list[Deployed] = []
    size = len(value.reveal())
    for deployed in _granted_to(node, name):
        others = [g for g in deployed.manifest.permissions.secrets if g != name]
        if not all(node.policy.decide(principal, Action.SECRET_USE, g).allowed for g in others):
            continue
        try:
            total = size + sum(len(v) for v in (await node.vault.open_granted(others)).values())
        except GrantedTooLarge:  # past it already, whatever this value is
            total = size + MAX_GRANTED
        if total > MAX_GRANTED:
            over.append(deployed)
    if not over:
        return
    shown = [d.name for d in over if _may_read(node, principal, d)]
    hidden = len(over) - len(shown)
    named = ", ".join([*shown, *([f"{hidden} other function(s)"] if hidden else [])])
    raise GrantedTooLarge(
        f"secret {name} with this value would take the secrets granted to {named} past the"
        f" {MAX_GRANTED} characters one call carries: their calls would all be refused",
        hint="give it a smaller value, or grant those functions fewer or smaller secrets",
    )


def _event(
    principal: Principal,
    action: str,
    name: str,
    request_id: str,
    outcome: str = "ok",
    detail: dict[str, object] | None = None,
) -> AuditEvent:
    """A secret change's record (the version, if any, is added by the store)."""
    return AuditEvent(
        principal.label,
        action,
        f"secret:{name}",
        outcome,
        {"request_id": request_id, **(detail or {})},
    )


async def create_secret(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    name = check_name(request.path_params["secret"])
    value, _ = await _value(request, node, principal, request_id)
    await _check_fits(node, name, value, principal)
    async with node.changes.change(_event(principal, "secret.set", name, request_id)):
        done = await node.vault.set(name, value, principal.label)
    await _recycle(node, name)
    return render(SecretVersion(name=name, version=done.version), 201)


async def rotate_secret(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    """A new version of the secret; with `no_grace` (the admin's or the secret's creator's)
    its older versions are deleted with it: a webhook accepts none of them from now on."""
    name = check_name(request.path_params["secret"])
    value, no_grace = await _value(request, node, principal, request_id, rotation=True)
    await _check_fits(node, name, value, principal)
    extra: dict[str, object] = {"no_grace": True} if no_grace else {}
    try:
        async with node.changes.change(
            _event(principal, "secret.rotate", name, request_id, detail=extra)
        ):
            done = await node.vault.rotate(
                name, value, principal.label, no_grace=no_grace, admin=principal.role == Role.ADMIN
            )
    except GraceEndForbidden:
        await node.audit.record(
            _event(principal, "secret.rotate", name, request_id, "denied", extra)
        )
        raise
    await _recycle(node, name)
    return render(SecretVersion(name=name, version=done.version), 201)


async def _recycle(node: Node, name: str) -> None:
    """Start afresh the warm sandboxes of the functions granted `name`: none keeps the old
    value past the change (a worker keeping it in a global printed it, unredacted, to the
    log of a later call, whose redactor knows only the new value)."""
    if node.pool is None:
        return
    for deployed in _granted_to(node, name):
        await node.pool.recycle(deployed.name)


def _granted_to(node: Node, name: str) -> list[Deployed]:
    """The deployed functions whose code is granted secret `name` (`permissions.secrets`)."""
    return [d for d in node.registry.all() if name in d.manifest.permissions.secrets]


def _grants(node: Node, reader: Principal | None = None) -> dict[str, list[str]]:
    """Secret -> the deployed functions that use it: granted to their code
    (`permissions.secrets`) or named by their triggers (a webhook's, a storage event's,
    a database event's: the platform reads those), each function once; with `reader`,
    only those it may read (`function:read`): a listing named every owner's functions."""
    out: dict[str, list[str]] = {}
    for deployed in node.registry.all():
        if reader is not None and not _may_read(node, reader, deployed):
            continue
        manifest = deployed.manifest
        for secret in sorted({*manifest.permissions.secrets, *trigger_secrets(manifest)}):
            out.setdefault(secret, []).append(deployed.name)
    return out


def _may_read(node: Node, principal: Principal, deployed: Deployed) -> bool:
    owner = deployed.record.owner or None
    return node.policy.decide(principal, Action.READ, deployed.name, owner).allowed


def _refuse_used(node: Node, name: str, principal: Principal) -> None:
    """`StoreConflict` if a deployed function uses secret `name` (`_grants`)."""
    users = _grants(node).get(name)
    if users:
        shown = sorted(_grants(node, principal).get(name, []))
        others = len(users) - len(shown)
        named = ", ".join([*shown, *([f"{others} other function(s)"] if others else [])])
        raise StoreConflict(
            f"secret {name} is used by {named} (granted to their code, or named by their triggers)",
            hint="deploy them without the grant or the trigger naming it (or remove them) first",
        )


async def delete_secret(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    name = check_name(request.path_params["secret"])
    # Checked and removed with no deploy switching meanwhile: one granting it that started
    # before checks again in its switch (lifecycle/deploy_notes.py).
    event = _event(principal, "secret.rm", name, request_id)
    async with node.changes.change(event), node.deployments.switching:
        _refuse_used(node, name, principal)
        await node.vault.remove(name)
    return Response(status_code=204)


async def list_secrets(request: Request, node: Node, principal: Principal, _r: str) -> Response:
    """The secrets `secret:list` reaches by name (a statement on `team-a-*` lists those;
    `*` all), with the functions using each; never a value."""
    grants = _grants(node, principal)
    return render(
        [
            SecretSummary(
                name=s.name,
                versions=s.versions,
                latest=s.latest,
                created_at=s.created_at,
                updated_at=s.updated_at,
                granted_to=sorted(grants.get(s.name, [])),
            )
            for s in await node.vault.summaries()
            if node.policy.decide(principal, Action.SECRET_LIST, s.name).allowed
        ]
    )


async def rekey_vault(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    # The rekey's record is committed with the re-wrapped rows ("rewrapped", "kek_id").
    event = AuditEvent(principal.label, "vault.rekey", "vault", "ok", {"request_id": request_id})
    try:
        async with node.changes.change(event):
            result = await rekey(node.vault, node.keyring)
    except RecordPending:  # made: its record waits in the outbox, not a failure
        raise
    except Exception as e:
        await node.audit.record(
            AuditEvent(
                principal.label,
                "vault.rekey",
                "vault",
                "failed",
                {"request_id": request_id, "error": type(e).__name__},
            )
        )
        raise
    return render(RekeyResult(rewrapped=result.rewrapped, kek_id=result.kek_id))
