"""What a read of node-wide records shows a principal whose role reaches some functions only.

The audit log, its timeline, the alerts, the monitor's responses and the quotas hold
records about every function and about the node. A role allowed `audit:read` (or
`alert:read`, `quota:manage`) on `billing-*` passes the route's check (a request that
names no function is allowed by a statement on any resource, identity/policy_eval.py),
so the handler narrows what it shows: the records about functions in scope
(audit/subjects.py), none that names a function outside it, and no node-wide record
(keys, roles, the node, a refusal of a request path). A key limited to some functions
(`functions`) reads as if its role named those only. What is whole by nature (the
export of every record, the metrics of every function) needs the action on `*`
(`require_everything`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from donjon.audit.subjects import functions_named
from donjon.gateway.access import forbid
from donjon.gateway.node import Node
from donjon.identity import Action, Principal
from donjon.identity.policy_eval import Policy

__all__ = ["ReadScope", "read_scope", "require_everything"]


@dataclass(frozen=True, slots=True)
class ReadScope:
    """What `principal`'s `action` reaches of records about many functions."""

    policy: Policy
    principal: Principal
    action: Action
    #: Every record: the action is allowed on `*` (no deny), and the key is not limited.
    everything: bool

    def function(self, name: str) -> bool:
        """Whether records about function `name` are in scope."""
        if self.everything:
            return True
        limited = self.principal.functions
        if limited is not None and name not in limited:
            return False
        return self.policy.decide(self.principal, self.action, name).allowed

    def record(self, record: Mapping[str, Any]) -> bool:
        """Whether an audit record is in scope: it names functions, each of them in scope."""
        if self.everything:
            return True
        names = functions_named(record)
        return bool(names) and all(self.function(n) for n in names)

    def subject(self, subject: str) -> bool:
        """Whether a `kind:name` subject (an alert's, a throttle's, a quota's) is in scope:
        `function:NAME` of a function in scope; any other (a key, a role, a source) is
        node-wide."""
        if self.everything:
            return True
        kind, sep, name = subject.partition(":")
        return bool(sep) and kind == "function" and self.function(name)


def read_scope(node: Node, principal: Principal, action: Action) -> ReadScope:
    """The scope of `principal`'s reads under `action` (already authorized by the route)."""
    everything = principal.functions is None and node.policy.reaches_every(principal, action)
    return ReadScope(node.policy, principal, action, everything)


async def require_everything(
    node: Node,
    request: Request,
    principal: Principal,
    action: Action,
    request_id: str,
    what: str,
) -> None:
    """`Forbidden` (audited) unless `principal` reads every record under `action`: `what`
    holds records about every function and the node."""
    if read_scope(node, principal, action).everything:
        return
    await forbid(
        node,
        request,
        principal,
        f"{action.value} on {what} needs it on * (this credential reaches some functions only)",
        request_id,
        {"statement": "no statement allows it on every function", "permission": action.value},
        f"{what} covers every function: this credential may read its own functions' records only",
    )
