"""The policy evaluator: built-in roles, custom documents, deny wins, wildcards, owners."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from donjon.identity import Action, Policy, Principal, RoleError, parse_role

ADMIN = Principal("a1", "admin", "admin")
DEV = Principal("d1", "dev", "developer")
INV = Principal("i1", "inv", "invoker")
AUD = Principal("u1", "aud", "auditor")


def _policy(*statements: dict[str, object], name: str = "billing-invoker") -> Policy:
    return Policy([parse_role({"name": name, "statements": list(statements)})])


def test_deny_wins_over_allow() -> None:
    """An explicit deny beats an allow that matches too, and names the statement that decided."""
    policy = _policy(
        {"effect": "allow", "actions": ["function:invoke"], "resources": ["billing-*"]},
        {"effect": "deny", "actions": ["function:invoke"], "resources": ["billing-admin"]},
    )
    p = Principal("k", "n", "billing-invoker")
    assert policy.decide(p, Action.INVOKE, "billing-report").allowed
    denied = policy.decide(p, Action.INVOKE, "billing-admin")
    assert not denied.allowed and denied.statement == "billing-invoker#1"


def test_deny_by_default() -> None:
    """What no statement allows is denied, and the decision says so."""
    policy = _policy({"effect": "allow", "actions": ["function:invoke"], "resources": ["b-*"]})
    p = Principal("k", "n", "billing-invoker")
    for action, fn in ((Action.INVOKE, "other"), (Action.DEPLOY, "b-x"), (Action.KEYS, None)):
        decision = policy.decide(p, action, fn)
        assert not decision.allowed and decision.statement == "no statement allows"


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("billing-*", ["billing-a", "billing-"], ["billin", "x-billing-a"]),
        ("*-report", ["daily-report", "-report"], ["report-daily"]),
        ("*pay*", ["pay", "repayment"], ["pa-y"]),
        ("exact", ["exact"], ["exact2", "xexact"]),
        ("*", ["anything"], []),
    ],
)
def test_wildcards(pattern: str, yes: list[str], no: list[str]) -> None:
    """`*` at the start and/or end of a function name, or alone."""
    policy = _policy({"effect": "allow", "actions": ["function:invoke"], "resources": [pattern]})
    p = Principal("k", "n", "billing-invoker")
    assert all(policy.decide(p, Action.INVOKE, f).allowed for f in yes)
    assert not any(policy.decide(p, Action.INVOKE, f).allowed for f in no)


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ({"name": "r", "statements": []}, "at least one statement"),
        (
            {
                "name": "r",
                "statements": [{"effect": "allow", "actions": ["fn:run"], "resources": ["*"]}],
            },
            "unknown action 'fn:run'",
        ),
        (
            {
                "name": "r",
                "statements": [
                    {"effect": "allow", "actions": ["functions:invoke"], "resources": ["*"]}
                ],
            },
            "unknown action",
        ),
        (
            {
                "name": "r",
                "statements": [
                    {"effect": "allow", "actions": ["function:invoke"], "resources": ["a*b"]}
                ],
            },
            "bad resource pattern",
        ),
        (
            {
                "name": "r",
                "statements": [
                    {"effect": "allow", "actions": ["function:invoke"], "resources": ["../x"]}
                ],
            },
            "bad resource pattern",
        ),
        (
            {
                "name": "r",
                "statements": [
                    {"effect": "maybe", "actions": ["function:invoke"], "resources": ["*"]}
                ],
            },
            "effect",
        ),
        (
            {
                "name": "r",
                "statements": [
                    {
                        "effect": "allow",
                        "actions": ["function:invoke"],
                        "resources": ["*"],
                        "when": 1,
                    }
                ],
            },
            "when",
        ),
        (
            {"name": "r", "statements": [{"effect": "allow", "actions": [], "resources": ["*"]}]},
            "actions",
        ),
        ({"name": "r", "statments": []}, "statments"),
        (
            {
                "name": "Bad Name",
                "statements": [{"effect": "allow", "actions": ["audit:read"], "resources": ["*"]}],
            },
            "role name",
        ),
        ("not a mapping", "invalid role document"),
    ],
)
def test_bad_documents_are_clear_errors(doc: object, says: str) -> None:
    """Unknown actions, empty statements, bad patterns, unknown fields: a clear RoleError."""
    with pytest.raises(RoleError) as e:
        parse_role(doc)
    assert says in e.value.message


@pytest.mark.parametrize("name", ["admin", "developer", "invoker", "auditor"])
def test_builtin_roles_cannot_be_overwritten(name: str) -> None:
    """A document named like a built-in role is refused."""
    with pytest.raises(RoleError, match="built-in"):
        parse_role(
            {
                "name": name,
                "statements": [{"effect": "allow", "actions": ["audit:read"], "resources": ["*"]}],
            }
        )


def test_builtin_roles() -> None:
    """admin does everything; developer functions only; invoker invokes; auditor reads only."""
    policy = Policy()
    assert all(policy.decide(ADMIN, a, "f", owner="key:other").allowed for a in Action)
    assert policy.decide(DEV, Action.DEPLOY, "new").allowed
    assert not policy.decide(DEV, Action.KEYS).allowed
    assert not policy.decide(DEV, Action.AUDIT).allowed
    assert policy.decide(INV, Action.INVOKE, "f").allowed
    assert not policy.decide(INV, Action.READ, "f").allowed
    readable = {Action.AUDIT, Action.ALERTS, Action.METRICS, Action.REPORTS, Action.API_READ}
    for action in Action:
        assert policy.decide(AUD, action, None).allowed is (action in readable), action
    assert not policy.decide(AUD, Action.INVOKE, "f").allowed
    assert not policy.decide(AUD, Action.DEPLOY, "f").allowed


def test_developer_acts_only_on_its_own_functions() -> None:
    """`*` reaches a developer's own functions and new names, never another's."""
    policy = Policy()
    mine, theirs = DEV.label, "key:someone"
    for action in (Action.DEPLOY, Action.READ, Action.DELETE, Action.LOGS):
        assert policy.decide(DEV, action, "f", owner=mine).allowed
        denied = policy.decide(DEV, action, "f", owner=theirs)
        assert not denied.allowed and "owned by key:someone" in denied.statement
    assert policy.decide(DEV, Action.DEPLOY, "brand-new", owner=None).allowed
    assert not policy.decide(DEV, Action.LOGS, "gone", owner=None).allowed
    assert policy.decide(DEV, Action.INVOKE, "f", owner=theirs).allowed  # invoking is not owned


def test_a_role_that_names_a_function_reaches_it_whoever_owns_it() -> None:
    """A statement naming `billing-*` lets its holder act on billing functions it does not own."""
    policy = _policy(
        {
            "effect": "allow",
            "actions": ["function:deploy", "function:logs"],
            "resources": ["billing-*"],
        },
        {"effect": "allow", "actions": ["function:deploy"], "resources": ["*"]},
        name="billing-dev",
    )
    p = Principal("k", "n", "billing-dev")
    assert policy.decide(p, Action.DEPLOY, "billing-a", owner="key:admin").allowed
    assert policy.decide(p, Action.LOGS, "billing-a", owner="key:admin").allowed
    assert not policy.decide(p, Action.DEPLOY, "other", owner="key:admin").allowed
    assert policy.decide(p, Action.DEPLOY, "other", owner=p.label).allowed


def test_key_function_limit_applies_to_every_function_action() -> None:
    """A key limited to some functions is denied on the others, whatever its role allows."""
    p = Principal("d", "n", "developer", frozenset({"a"}))
    policy = Policy()
    assert policy.decide(p, Action.INVOKE, "a").allowed
    assert not policy.decide(p, Action.INVOKE, "b").allowed
    assert not policy.decide(p, Action.DEPLOY, "b").allowed


def test_unknown_role_is_denied_everything() -> None:
    """A key whose role was removed is denied, saying the role does not exist."""
    decision = Policy().decide(Principal("k", "n", "gone"), Action.INVOKE, "f")
    assert not decision.allowed and "does not exist" in decision.statement


def test_removed_custom_role_stops_allowing() -> None:
    policy = _policy({"effect": "allow", "actions": ["audit:read"], "resources": ["*"]}, name="r")
    p = Principal("k", "n", "r")
    assert policy.decide(p, Action.AUDIT).allowed
    policy.remove("r")
    assert not policy.decide(p, Action.AUDIT).allowed
    policy.remove("admin")  # built-ins stay
    assert policy.decide(ADMIN, Action.AUDIT).allowed


@pytest.mark.parametrize("name", ["admin\n", "ops\n"])
def test_a_role_name_with_a_trailing_newline_is_refused(name: str) -> None:
    """`admin\\n` is no role name (a regex's `$` matches before a final newline): refused,
    not stored beside `admin` to pass for it where a script strips what it reads."""
    with pytest.raises(RoleError, match="role name"):
        parse_role(
            {
                "name": name,
                "statements": [{"effect": "allow", "actions": ["audit:read"], "resources": ["*"]}],
            }
        )


def test_a_principals_label_is_its_kind_and_id_however_it_was_made() -> None:
    """`label` is made with the principal (not a property read per call): "<kind>:<id>"
    after `replace` and a deep copy (what a pickle does) too, and neither its repr nor its equality
    takes it in."""
    key = Principal(id="k1", name="n", role="invoker")
    assert key.label == "key:k1"
    token = dataclasses.replace(key, id="iss:sub", kind="jwt")
    assert token.label == "jwt:iss:sub"
    assert copy.deepcopy(token).label == "jwt:iss:sub"
    assert "label" not in repr(key)
    assert key == Principal(id="k1", name="n", role="invoker")
    assert hash(key) == hash(Principal(id="k1", name="n", role="invoker"))
