"""Whose history a function's name holds: its versions' logs, SBOMs and provenance.

A name is reused: a function removed and deployed again is a new owner's (the
`functions.owner` column). What its earlier versions left behind (what they printed,
their SBOMs and provenance) is its earlier owners', and `*` reaches only the caller's
own functions (identity/policy_eval.py), so it reaches only the runs of versions the
caller owned (store/functions.py `owned_versions`): a developer who deploys a removed
function's name does not read what that function printed, and one who removed its
own function still reads its logs. A statement that names the function, and the
built-in admin, reach every version.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from donjon.gateway.access import authorize
from donjon.gateway.node import Node
from donjon.identity import Action, Principal
from donjon.store.functions import VersionRuns

__all__ = ["authorize_history", "readable"]

#: An owner no principal is: "owned by someone else", for the policy's question
#: whether the caller reaches the function without owning it.
_SOMEONE_ELSE = "\x00"


async def authorize_history(
    node: Node,
    request: Request,
    principal: Principal,
    action: Action,
    request_id: str,
    function: str,
) -> VersionRuns | None:
    """The runs of `function`'s versions `principal` may do `action` on (None: all of
    them), or `Forbidden`, audited as `authorize` audits it."""
    policy = node.policy
    if policy.decide(principal, action, function, _SOMEONE_ELSE).allowed:
        return None  # named by a statement, or the admin: every version
    runs: VersionRuns = []
    if policy.decide(principal, action, function, principal.label).allowed:  # `*`: its own
        runs = await asyncio.to_thread(node.functions.owned_versions, function, principal.label)
    if not runs:
        # Refused as any request is, decided on the function as it stands (audited with
        # its statement). Allowed only if it was deployed as the caller's meanwhile: the
        # runs read before it hold nothing, and nothing is shown.
        await authorize(node, request, principal, action, request_id, function)
    return runs


def readable(version: int, runs: VersionRuns | None) -> bool:
    """Whether `version` is in `runs` (None: every version)."""
    if runs is None:
        return True
    return any(first <= version and (last is None or version <= last) for first, last in runs)
