"""What a deploy records and says beyond its result: the audit record's detail, the
escape hatches it used (logged as warnings every time, and returned to the deployer),
and the checks of what its triggers name.

Broad grants and public triggers are only ever stored when an admin asked for them
(`--unsafe-allow-broad`, `--unsafe-allow-public`: the gate refuses them otherwise),
so the manifest itself says which hatch a deploy used.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from donjon.identity import Principal
from donjon.lifecycle.gate import Accepted
from donjon.manifest import Manifest, ManifestError
from donjon.manifest.exposure import public_triggers, trigger_secrets
from donjon.manifest.grants import broad_grants
from donjon.store import FunctionRecord
from donjon.store.supply import SupplyRecord
from donjon.vault.service import Vault

__all__ = [
    "audit_detail",
    "check_granted_secrets",
    "check_secrets_kept",
    "check_trigger_secrets",
    "not_yet_granted",
    "supply_detail",
    "unsafe_warnings",
]

log = logging.getLogger("donjon")


def audit_detail(request_id: str, accepted: Accepted, skip_scan: bool) -> dict[str, object]:
    """The detail of the deploy's `function.deploy` record."""
    detail: dict[str, object] = {"request_id": request_id, "digest": accepted.digest}
    broad = broad_grants(accepted.manifest.permissions)
    if broad:
        detail["unsafe_allow_broad"] = True
        detail["broad_grants"] = broad
    public = public_triggers(accepted.manifest)
    if public:
        detail["unsafe_allow_public"] = True
        detail["public_triggers"] = public
    if skip_scan:
        detail["unsafe_skip_scan"] = True
    else:
        detail["findings"] = len(accepted.report.findings) if accepted.report else 0
    return detail


def unsafe_warnings(
    principal: Principal, record: FunctionRecord, manifest: Manifest, skip_scan: bool
) -> tuple[str, ...]:
    """Log each escape hatch a deploy used; the broad grants and public triggers, as
    warnings for the deployer."""
    if skip_scan:
        log.warning(
            "UNSAFE: %s deployed %s@%s without the scan (--unsafe-skip-scan)",
            principal.label,
            record.name,
            record.version,
        )
    broad = broad_grants(manifest.permissions)
    hatches = [("--unsafe-allow-broad", "a broad grant", g) for g in broad]
    hatches += [("--unsafe-allow-public", "a public trigger", t) for t in public_triggers(manifest)]
    for flag, what, item in hatches:
        log.warning(
            "UNSAFE: %s deployed %s@%s with %s (%s): %s",
            principal.label,
            record.name,
            record.version,
            what,
            flag,
            item,
        )
    return tuple(f"UNSAFE ({flag}): {item}" for flag, _, item in hatches)


def not_yet_granted(manifest: Manifest) -> tuple[str, ...]:
    """Grants this node cannot honour yet: said plainly, never silently ignored."""
    perms = manifest.permissions
    out = []
    if perms.invoke:
        out.append("permissions.invoke: calling other functions is not in this version")
    return tuple(out)


async def check_trigger_secrets(vault: Vault | None, manifest: Manifest) -> None:
    """`ManifestError` if a trigger (webhook, s3, postgres) names a secret the vault lacks."""
    names = trigger_secrets(manifest)
    if vault is not None and names:
        await _refuse_missing(vault, names, "triggers name secrets", "triggers")


async def check_granted_secrets(vault: Vault | None, manifest: Manifest) -> None:
    """`ManifestError` if `permissions.secrets` grants a secret the vault lacks;
    `GrantedTooLarge` (422) if their values are more than one call carries together:
    no call of this version could start (the vault checks each call too, as a rotation
    may grow a value after the deploy)."""
    names = manifest.permissions.secrets
    if vault is None or not names:
        return
    await _refuse_missing(vault, names, "permissions.secrets grants", "permissions.secrets")
    await vault.open_granted(names)


async def check_secrets_kept(vault: Vault | None, manifest: Manifest) -> None:
    """`ManifestError` if a secret the deploy granted or its triggers name was removed
    since they were checked: called in the switch, which a removal's check holds too
    (before, a removal landing while the new version's sandbox started left the function
    deployed granted a secret the vault lacked)."""
    names = {*manifest.permissions.secrets, *trigger_secrets(manifest)}
    gone = await vault.missing(names) if vault is not None and names else []
    if gone:
        raise ManifestError(
            f"secret {', '.join(gone)} was removed while this deploy ran",
            problems=[f"no secret named {n} any more" for n in gone],
            hint="set it again (`donjon secret set NAME`), then deploy again",
        )


def supply_detail(supply: SupplyRecord | None) -> dict[str, object]:
    """What the deploy's audit record says of the version's SBOM and provenance."""
    if supply is None:
        return {}
    return {"sbom_digest": supply.sbom_digest, "provenance_digest": supply.statement_digest}


async def _refuse_missing(vault: Vault, names: Iterable[str], said: str, where: str) -> None:
    missing = await vault.missing(names)
    if missing:
        raise ManifestError(
            f"{said} {', '.join(missing)}, not in the vault",
            problems=[f"{where}: no secret named {n}" for n in missing],
            hint="create it first: `donjon secret set NAME` (the value from stdin)",
        )
