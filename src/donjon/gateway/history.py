"""Whose history a function's name holds: its versions' logs, SBOMs, provenance, events.

A name is reused: a function removed and deployed again is a new owner's (the
`functions.owner` column). What its earlier versions left behind (what they printed,
their SBOMs and provenance, their async calls' errors) is its earlier owners', and `*`
reaches only the caller's own functions (identity/policy_eval.py), so it reaches only
the runs of versions the caller owned (store/functions.py `owned_versions`): a
developer who deploys a removed function's name does not read what that function
printed, and one who removed its own function still reads its logs. A statement that
names the function, and the built-in admin, reach every version.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from donjon.gateway.access import authorize
from donjon.gateway.node import Node
from donjon.identity import Action, Principal
from donjon.store.functions import VersionRuns

__all__ = ["authorize_history", "history_of", "readable", "versions_of"]


async def history_of(
    node: Node, principal: Principal, action: Action, function: str
) -> VersionRuns | None:
    """The runs of `function`'s versions `principal` may do `action` on: None for every
    version, () for none. Decided quietly (nothing is audited)."""
    policy = node.policy
    if policy.reaches_whoever_owns(principal, action, function):
        return None
    if not policy.reaches_own(principal, action, function):
        return ()
    return await asyncio.to_thread(node.functions.owned_versions, function, principal.label)


async def authorize_history(
    node: Node,
    request: Request,
    principal: Principal,
    action: Action,
    request_id: str,
    function: str,
) -> VersionRuns | None:
    """`history_of`, or `Forbidden` (audited as `authorize` audits it) when it is none."""
    runs = await history_of(node, principal, action, function)
    if runs is None or runs:
        return runs
    # Refused as any request is, decided on the function as it stands (audited with its
    # statement). Allowed only if it was deployed as the caller's meanwhile: the runs
    # read before hold nothing, and nothing is shown.
    await authorize(node, request, principal, action, request_id, function)
    return runs


def versions_of(request: Request) -> VersionRuns | None:
    """The runs a `guarded(..., history=True)` route's caller may read (gateway/guarded.py)."""
    runs: VersionRuns | None = request.state.versions  # set by the guard, or AttributeError
    return runs


def readable(version: int, runs: VersionRuns | None) -> bool:
    """Whether `version` is in `runs` (None: every version)."""
    if runs is None:
        return True
    return any(first <= version and (last is None or version <= last) for first, last in runs)
