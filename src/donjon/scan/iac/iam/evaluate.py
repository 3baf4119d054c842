"""What a function's role grants: its policies' statements evaluated through the IAM
action catalog, Deny applied.

Each Allow statement becomes a `Grant`: the actions it names (patterns expanded; with
``NotAction``, every action but those), minus what a Deny statement of the same role
takes away, and whether its resources are unbounded. IAM's rules as followed here:

- a Deny wins over any Allow, but only where it surely applies: a Deny narrowed by a
  ``Condition``, written under ``Fn::If``, with unresolved parts, or with
  ``NotResource`` is not taken to remove anything (the grant may still hold);
- a Deny removes actions from an Allow when its resources cover the Allow's (``*``, or
  every Allow resource matched by one of its patterns);
- ``NotResource`` in an Allow grants every resource but those: unbounded;
- a ``Condition`` narrows a grant (`Grant.narrowed`) and ``Fn::If`` makes it
  conditional (`Grant.conditional`); rules report both, at lower confidence, never
  skip them.

Policies whose content is unknown (an unresolved ARN, a customer managed policy
defined elsewhere, an AWS managed policy outside the table, an unexpanded SAM policy
template, a role given by ARN with no policies in the template) are `Unknown`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from donjon.scan.iac.iam.actions import Action, catalog
from donjon.scan.iac.iam.managed import full_access_by_name, lookup, managed_name
from donjon.scan.iac.model import Effect, Function, Policy, Statement

__all__ = ["Access", "Grant", "Unknown", "evaluate", "unbounded", "written_in"]

# The resource part of an ARN that names every resource of its type: ``*``,
# ``role/*``, ``function:*``, ``*/*``.
_ANY_NAME = re.compile(r"(?:[\w-]+[/:])?[*/:]*\*")


def unbounded(resource: str) -> bool:
    """`resource` is ``*`` or every resource of one type (``arn:aws:iam::*:role/*``;
    for S3, whose ARNs start with the bucket's name, ``arn:aws:s3:::*`` or ``*/*``)."""
    text = resource.strip()
    if text == "*":
        return True
    parts = text.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return False
    if parts[2] == "s3":
        return parts[5].strip("*/") == ""
    return bool(_ANY_NAME.fullmatch(parts[5]))


@functools.lru_cache(maxsize=1024)
def _resource_regex(pattern: str) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL)


@dataclass(frozen=True)
class Grant:
    """What one Allow statement grants once the role's Deny statements are applied."""

    policy: Policy
    statement: Statement
    actions: frozenset[Action]
    #: Actions the statement names that a Deny takes away.
    denied: frozenset[Action]
    #: ``Action: "*"``.
    every_action: bool
    #: The statement uses ``NotAction`` (every action but those listed).
    not_action: bool
    #: ``Resource: "*"``, every resource of a type, or ``NotResource``.
    unbounded: bool
    #: Where a statement nobody in the project wrote comes from: ``AWS managed policy
    #: AdministratorAccess``, ``SAM policy template DynamoDBCrudPolicy``; empty for the
    #: template's own statements.
    source: str = ""

    @property
    def narrowed(self) -> bool:
        """A ``Condition`` limits when the grant holds."""
        return bool(self.statement.conditions)

    @property
    def conditional(self) -> bool:
        """The grant exists only in one branch of a template condition (``Fn::If``)."""
        return self.statement.conditional or self.policy.conditional

    @property
    def admin(self) -> bool:
        """Every action (or every action but a ``NotAction`` list) on unbounded resources."""
        return self.unbounded and (self.every_action or self.not_action)

    @property
    def line(self) -> int:
        return self.statement.line or self.policy.line

    def of(self, keys: Iterable[str]) -> tuple[Action, ...]:
        """The granted actions among `keys` (case-folded ``service:name``)."""
        found = {catalog().find(k) for k in keys}
        return tuple(sorted(a for a in found if a is not None and a in self.actions))


@dataclass(frozen=True)
class Unknown:
    """A role, policy or statement part whose content the scan cannot see."""

    line: int
    what: str
    expression: str
    reason: str
    #: The file it is written in when not the function's (empty: the function's).
    path: str = ""


@dataclass(frozen=True)
class Access:
    """Everything known about a function's permissions."""

    grants: tuple[Grant, ...] = ()
    unknown: tuple[Unknown, ...] = ()
    #: AWS managed ``*FullAccess`` policies outside the table, judged by name.
    full_access_by_name: tuple[Policy, ...] = ()


def _expand(patterns: Iterable[str]) -> frozenset[Action]:
    found: set[Action] = set()
    for pattern in patterns:
        found |= catalog().expand(pattern)
    return frozenset(found)


def _named(statement: Statement) -> frozenset[Action]:
    """The actions a statement names (with NotAction: every other known action)."""
    if statement.not_actions:
        return catalog().all - _expand(statement.not_actions)
    return _expand(statement.actions)


def _covers(deny: Statement, allow: Statement) -> bool:
    """The Deny surely applies wherever the Allow grants."""
    if deny.conditions or deny.conditional or deny.unresolved or deny.not_resources:
        return False
    if any(r.strip() == "*" for r in deny.resources):
        return True
    if not allow.resources or allow.not_resources:
        return False
    return all(
        any(_resource_regex(d.strip()).fullmatch(r.strip()) for d in deny.resources)
        for r in allow.resources
    )


def _unknown_role(function: Function) -> list[Unknown]:
    role = function.role
    found = [Unknown(role.line, "role", u.expression, u.reason) for u in role.unresolved]
    if not found and not function.policies:
        for arn in role.known:
            if arn.startswith("arn:"):
                reason = "the role is defined outside the template: its policies are unseen"
                found.append(Unknown(role.line, "role", arn, reason))
    return found


def written_in(part: Policy | Statement) -> str:
    """The file a policy or statement is written in, when a loader records it (the
    Terraform loader does: a module spans files); "" for the function's own file."""
    path = getattr(part, "path", "")
    return path if isinstance(path, str) else ""


def _source(policy: Policy) -> str:
    """Who wrote the policy's statements, when not the template's author."""
    name = managed_name(policy.managed) if policy.managed else None
    if name is not None:
        return f"AWS managed policy {name}"
    if policy.template:
        return f"SAM policy template {policy.template}"
    return ""


def _policy_statements(
    policy: Policy, unknown: list[Unknown], by_name: list[Policy]
) -> list[tuple[Statement, str]]:
    path = written_in(policy)
    unknown.extend(
        Unknown(policy.line, "policy", u.expression, u.reason, path) for u in policy.unresolved
    )
    if policy.statements:
        return [(s, _source(policy)) for s in policy.statements]
    if policy.managed:
        known = lookup(policy.managed, policy.line)
        if known is not None:
            return [(s, f"AWS managed policy {known.name}") for s in known.statements]
        name = managed_name(policy.managed)
        if name is not None and full_access_by_name(name):
            by_name.append(policy)
        elif name is not None:
            reason = "an AWS managed policy outside Donjon's table: its content is unseen"
            unknown.append(Unknown(policy.line, "policy", policy.managed, reason, path))
        else:
            reason = "a managed policy defined outside the template: its content is unseen"
            unknown.append(Unknown(policy.line, "policy", policy.managed, reason, path))
    elif policy.template:
        reason = "a SAM policy template the loader did not expand"
        unknown.append(Unknown(policy.line, "policy", policy.template, reason, path))
    return []


def evaluate(function: Function) -> Access:
    """The function's grants, the parts of its permissions that are unknown, and the
    ``*FullAccess`` policies known only by name."""
    unknown = _unknown_role(function)
    by_name: list[Policy] = []
    written: list[tuple[Policy, Statement, str]] = []
    for policy in function.policies:
        for statement, source in _policy_statements(policy, unknown, by_name):
            written.append((policy, statement, source))
            where = written_in(statement) or written_in(policy)
            unknown.extend(
                Unknown(statement.line or policy.line, "statement", u.expression, u.reason, where)
                for u in statement.unresolved
            )
    denies = [s for _, s, _ in written if s.effect is Effect.DENY]
    grants: list[Grant] = []
    for policy, statement, source in written:
        if statement.effect is not Effect.ALLOW:
            continue
        named = _named(statement)
        denied: frozenset[Action] = frozenset()
        for deny in denies:
            if _covers(deny, statement):
                denied |= named & _named(deny)
        resources = statement.resources
        grants.append(
            Grant(
                policy=policy,
                statement=statement,
                actions=named - denied,
                denied=denied,
                every_action=any(a.strip() in ("*", "*:*") for a in statement.actions),
                not_action=bool(statement.not_actions),
                unbounded=bool(statement.not_resources) or any(unbounded(r) for r in resources),
                source=source,
            )
        )
    return Access(tuple(grants), tuple(unknown), tuple(by_name))
