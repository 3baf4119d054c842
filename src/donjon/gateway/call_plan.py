"""A keyed caller's checks on one function version, resolved once (issue 14, target 1).

Every warm `invoke` by one API key of one function version asks the same questions
before anything that depends on the call itself: may this principal invoke this
function (the policy, the key's own function scope, the function's owner), what
limits apply to the caller (the key's, its roles', the server's), how large a body
the function takes, and the parts of the call's meta that name the function and
the caller. A `CallPlan` holds those answers; `plan_for` finds it with one lookup.

A plan is only ever used for the objects it was made from, compared by identity:
- the `Principal` the key index returned (a key created, rotated, re-scoped or
  given other limits is a new `Principal`; a revoked or expired key returns none,
  and the key is checked on every call, before any plan is looked up);
- the `Deployed` the registry holds now (a deploy, a redeploy with a new schema,
  limits or owner, or a removal replaces or drops it);
- the node's `Policy` at its `generation` (every role put or removed bumps it),
  and the node's `Settings`.
Anything else makes a new plan, so a change applies to the very next request.
What depends on the call is still checked on every call, after the plan: the
quarantine and throttles, the rate buckets and quotas (their counts), the node's
capacity, the concurrency slots, the body and its schema, and the audit record.
A JWT's principal is made afresh per request, so it never finds a plan: it is
resolved as before, without one (`plan_for` answers None and caches nothing).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from donjon.gateway.access import decide
from donjon.gateway.events import body_limit
from donjon.gateway.node import Node
from donjon.gateway.rate_buckets import caller_limits
from donjon.identity import Action, Policy, Principal
from donjon.lifecycle import Deployed

__all__ = ["MAX_PLANS", "CallPlan", "function_meta", "plan_for"]

#: Plans kept per node; past it the table starts again (a plan is cheap to remake).
MAX_PLANS = 4096

_json_string: Callable[[str], str] = json.encoder.encode_basestring_ascii


def function_meta(deployed: Deployed) -> str:
    """The call meta's fields that name the function version, as `json.dumps` writes
    them after the request id (invoke._meta)."""
    return (
        f', "function": {_json_string(deployed.name)}'
        f', "version": {int(deployed.record.version)}'
        f', "memory_mb": {int(deployed.manifest.memory_mb)}'
    )


class CallPlan:
    """What one key's calls of one function version all share (see the module)."""

    __slots__ = (
        "allowed",
        "body_limit",
        "deployed",
        "function_meta",
        "generation",
        "label",
        "limits",
        "policy",
        "principal",
        "principal_meta",
        "settings",
        "target",
    )

    def __init__(self, node: Node, principal: Principal, deployed: Deployed) -> None:
        self.principal = principal
        self.deployed = deployed
        self.policy: Policy = node.policy
        self.generation = node.policy.generation
        self.settings = node.settings
        #: Whether the policy lets the principal invoke the function (a refusal is not
        #: taken from here: `authorize` decides it again, and audits it).
        self.allowed = decide(node, principal, Action.INVOKE, deployed.name).allowed
        self.label = principal.label
        #: The caller's (count, period_s, burst, concurrency): `caller_limits`; resolved
        #: only for an allowed caller, as the call itself reads them after `authorize`.
        self.limits = caller_limits(node, principal) if self.allowed else None
        self.body_limit = body_limit(deployed, node.settings.requests.max_body_bytes)
        #: The meta's fields after the request id, and its principal (invoke._meta).
        self.function_meta = function_meta(deployed)
        self.principal_meta = _json_string(self.label)
        #: The call's audit target.
        self.target = f"{deployed.name}@{deployed.record.version}"

    def fits(self, node: Node, principal: Principal, deployed: Deployed) -> bool:
        """Whether this plan was made from exactly these objects, under this policy."""
        policy = node.policy
        return (
            self.principal is principal
            and self.deployed is deployed
            and self.policy is policy
            and self.generation == policy.generation
            and self.settings is node.settings
        )


def plan_for(node: Node, principal: Principal, deployed: Deployed) -> CallPlan | None:
    """The plan of `principal`'s calls of `deployed`: kept, or made now. None for a
    principal made per request (a JWT's), which no later request would find."""
    if principal.kind != "key":
        return None
    plans = node.call_plans
    # By name, not by version: a redeploy's plan takes the place of the old version's, so
    # a superseded `Deployed` is not kept alive here (`fits` still compares by identity).
    key = (id(principal), deployed.record.name)
    plan = plans.get(key)
    if plan is not None and plan.fits(node, principal, deployed):
        return plan
    plan = CallPlan(node, principal, deployed)
    if len(plans) >= MAX_PLANS:
        plans.clear()
    plans[key] = plan
    return plan
