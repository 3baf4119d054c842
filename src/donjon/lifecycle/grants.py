"""What a deploy grants, checked before anything starts (deployments.py calls it): a
deployer grants no more than it may do, and grants name what exists."""

from __future__ import annotations

from donjon.identity import Action, Policy, Principal
from donjon.lifecycle.deploy_notes import check_granted_secrets
from donjon.lifecycle.errors import InvokeGrantForbidden, SecretGrantForbidden
from donjon.lifecycle.registry import FunctionRegistry
from donjon.manifest import Manifest, ManifestError
from donjon.manifest.exposure import trigger_secrets
from donjon.vault.service import Vault

__all__ = ["check_grants"]


async def check_grants(
    manifest: Manifest,
    principal: Principal,
    policy: Policy,
    registry: FunctionRegistry,
    vault: Vault | None,
) -> None:
    """A deployer grants no more than it may do, and grants name what exists: it may
    invoke each function in `permissions.invoke` and `destinations` (whose records
    carry its events) but this one, and those granted or named are deployed; it may use
    (`secret:use`) each secret granted or named by a trigger; granted ones exist and fit
    in one call (deploy_notes.check_granted_secrets)."""
    others = [n for n in manifest.permissions.invoke if n != manifest.name]
    ends = [
        d
        for d in (manifest.destinations.on_success, manifest.destinations.on_failure)
        if d and d != manifest.name
    ]
    for name in [*others, *ends]:  # rights first
        decision = policy.decide(principal, Action.INVOKE, name)
        if not decision.allowed:
            raise InvokeGrantForbidden(name, decision.statement)
    for secret in sorted({*manifest.permissions.secrets, *trigger_secrets(manifest)}):
        decision = policy.decide(principal, Action.SECRET_USE, secret)
        if not decision.allowed:
            raise SecretGrantForbidden(secret, decision.statement)
    absent = [n for n in others if registry.get(n) is None]
    if absent:
        raise ManifestError(
            f"permissions.invoke grants {', '.join(absent)}, not deployed",
            problems=[f"permissions.invoke: no function named {n}" for n in absent],
            hint="deploy the functions it invokes first, or remove them from the grant",
        )
    # Named before it exists, a destination's name could be taken by another developer,
    # whose function would get every record (its requestPayload is this one's event).
    unsent = sorted({d for d in ends if registry.get(d) is None})
    if unsent:
        raise ManifestError(
            f"destinations names {', '.join(unsent)}, not deployed",
            problems=[f"destinations: no function named {n}" for n in unsent],
            hint="deploy the destination first, or remove it from destinations",
        )
    await check_granted_secrets(vault, manifest)
