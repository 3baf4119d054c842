"""Whether a principal may deploy a function of a given name: the policy (its owner's
or its role's), then, for a new function, the functions it already owns
(DONJON_MAX_FUNCTIONS_PER_OWNER). Each function keeps bounded logs, dead letters,
results and a bundle; only a bound on how many functions one principal owns makes what
it can keep bounded as a whole (docs/limits.md).

A function removed while its dead letters (or pending invocations, dead-lettered unrun
once they come up) remain still counts as owned until they are redriven or purged: they
are kept, never dropped, and before this an owner could deploy, fill a function's
dead-letter queue, remove it and deploy another name, again and again, each time keeping
another `DONJON_QUEUE_MAX_DEAD` of them."""

from __future__ import annotations

import asyncio

from donjon.identity import Action, Policy, Principal
from donjon.lifecycle.errors import DeployForbidden, OwnedFunctionsLimit
from donjon.lifecycle.registry import FunctionRegistry
from donjon.store import FunctionStore

__all__ = ["may_deploy"]


async def may_deploy(
    policy: Policy,
    registry: FunctionRegistry,
    functions: FunctionStore,
    principal: Principal,
    name: str,
    max_owned: int,
) -> None:
    """Raise `DeployForbidden` or `OwnedFunctionsLimit` unless `principal` may deploy
    `name` now. Run under the name's lock: the owner checked is the owner when it switches."""
    owner = registry.owner_of(name)
    decision = policy.decide(principal, Action.DEPLOY, name, owner)
    if not decision.allowed:
        # Another's function: its owner (a key id, a JWT's issuer and subject) is in
        # the audit record; the caller is told only that it is someone else's.
        other = owner is not None and owner != principal.label
        shown = "the function is owned by another principal" if other else None
        raise DeployForbidden(name, decision.statement, shown)
    if registry.get(name) is None:
        owned = sum(1 for d in registry.all() if d.record.owner == principal.label)
        if owned >= max_owned:
            raise OwnedFunctionsLimit(max_owned)
        # This name itself takes back its own place: its dead letters stay counted once.
        held = await asyncio.to_thread(functions.removed_holding, principal.label)
        held.discard(name)
        if owned + len(held) >= max_owned:
            raise OwnedFunctionsLimit(max_owned, sorted(held))
