"""Whose limits a caller gets (gateway/rate_buckets.py `caller_limits`): the key's, else
its roles', else the server's, the rate and its burst as a pair."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from donjon.config import LimitSettings, Settings
from donjon.gateway.rate_buckets import caller_limits
from donjon.identity import Policy, Principal, parse_role
from donjon.ratelimit.rates import NO_LIMITS, BadRate, CallerLimits, parse_rate

STATEMENTS = [{"effect": "allow", "actions": ["function:invoke"], "resources": ["*"]}]


def _node(*roles: dict[str, Any]) -> Any:
    policy = Policy(
        parse_role({"name": r["name"], "statements": STATEMENTS, "limits": r["limits"]})
        for r in roles
    )
    settings = Settings(
        data_dir=Path("/nonexistent"),
        url="https://127.0.0.1:1",
        api_key=None,
        limits=LimitSettings(rate_per_principal=(1000, 1.0), concurrency_per_principal=64),
    )
    return SimpleNamespace(policy=policy, settings=settings)


def _principal(role: str, limits: CallerLimits = NO_LIMITS, *more: str) -> Principal:
    return Principal(id="k", name="k", role=role, limits=limits, more_roles=more)


def test_the_server_default_applies_without_key_or_role_limits() -> None:
    """No limits anywhere: DONJON_RATE_PER_PRINCIPAL, its count as burst, the default cap."""
    assert caller_limits(_node(), _principal("invoker")) == (1000, 1.0, 1000, 64)


def test_the_keys_own_limits_come_first() -> None:
    """A key's rate, burst and concurrency win over its role's."""
    node = _node({"name": "r", "limits": {"rate": "5/minute", "burst": 9, "concurrency": 2}})
    own = CallerLimits(rate="50/second", burst=100, concurrency=3)
    assert caller_limits(node, _principal("r", own)) == (50, 1.0, 100, 3)


def test_a_keys_rate_without_burst_does_not_take_the_roles_burst() -> None:
    """The rate and its burst are a pair: a key's rate alone bursts to its own count."""
    node = _node({"name": "r", "limits": {"rate": "5/minute", "burst": 9}})
    assert caller_limits(node, _principal("r", CallerLimits(rate="50/second"))) == (
        50,
        1.0,
        50,
        64,
    )


def test_the_roles_limits_fill_what_the_key_leaves_unset() -> None:
    """A key with a concurrency only gets its role's rate and burst."""
    node = _node({"name": "r", "limits": {"rate": "5/minute", "burst": 9}})
    assert caller_limits(node, _principal("r", CallerLimits(concurrency=2))) == (5, 60.0, 9, 2)


def test_a_jwt_principal_takes_the_first_of_its_roles_that_sets_a_limit() -> None:
    """Several roles (a JWT's): the first, in granted order, that sets each field."""
    node = _node(
        {"name": "a", "limits": {"concurrency": 4}},
        {"name": "b", "limits": {"rate": "7/second", "concurrency": 9}},
    )
    assert caller_limits(node, _principal("invoker", CallerLimits(), "a", "b")) == (
        7,
        1.0,
        7,
        4,
    )


def test_a_rate_with_a_trailing_newline_is_refused() -> None:
    """parse_rate refuses "50/second\\n" on its own, as any other text that is not a rate
    (the pattern's `$` matched before the final newline; keys and roles check first)."""
    assert parse_rate("50/second") == (50, 1.0)
    with pytest.raises(BadRate):
        parse_rate("50/second\n")
