"""A keyed caller's plan (gateway/call_plan.py): kept for the same objects, remade on any change."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from donjon.config import Settings
from donjon.gateway.call_plan import MAX_PLANS, plan_for
from donjon.gateway.invoke import _meta
from donjon.identity import Policy, Principal
from donjon.identity.policy_doc import parse_role
from donjon.lifecycle import FunctionRegistry
from donjon.manifest import parse_manifest


def _deployed(version: int = 1, extra: str = "") -> Any:
    manifest = parse_manifest(f"name: fn\nhandler: main.handler\nmemory_mb: 96\n{extra}")
    record = SimpleNamespace(name="fn", version=version, owner="")
    return SimpleNamespace(
        name="fn", record=record, manifest=manifest, rate=manifest.limits.parsed_rate
    )


def _node(*deployed: Any) -> Any:
    registry = FunctionRegistry()
    registry._functions.update({d.name: d for d in deployed})  # stand-ins: no routes to build
    return SimpleNamespace(
        policy=Policy(),
        settings=Settings(data_dir=Path("/nonexistent"), url="https://127.0.0.1:1", api_key=None),
        registry=registry,
        call_plans={},
    )


def _role(name: str, *functions: str) -> Any:
    statement = {"effect": "allow", "actions": ["function:invoke"], "resources": list(functions)}
    return parse_role({"name": name, "statements": [statement]})


KEY = Principal(id="k1", name="one", role="custom-r")


def test_plan_is_kept_for_the_same_key_version_and_policy() -> None:
    """Two calls of one key and one version find the same plan."""
    deployed = _deployed()
    node = _node(deployed)
    node.policy.put(_role("custom-r", "fn"))
    first = plan_for(node, KEY, deployed)
    assert first is not None and first.allowed
    assert plan_for(node, KEY, deployed) is first


def test_policy_change_remakes_the_plan() -> None:
    """A role put or removed (the policy's generation) gives the next lookup a new decision."""
    deployed = _deployed()
    node = _node(deployed)
    node.policy.put(_role("custom-r", "fn"))
    plan = plan_for(node, KEY, deployed)
    assert plan is not None and plan.allowed
    node.policy.put(_role("custom-r", "other"))
    plan = plan_for(node, KEY, deployed)
    assert plan is not None and not plan.allowed
    node.policy.put(_role("custom-r", "fn"))
    node.policy.remove("custom-r")
    plan = plan_for(node, KEY, deployed)
    assert plan is not None and not plan.allowed


def test_new_version_and_other_key_get_their_own_plans() -> None:
    """A redeployed version or another key never finds a plan made for other objects."""
    old, new = _deployed(1), _deployed(2, "limits: {body: 1KiB}\n")
    node = _node(old)
    node.policy.put(_role("custom-r", "fn"))
    kept = plan_for(node, KEY, old)
    assert kept is not None
    fresh = plan_for(node, KEY, new)
    assert fresh is not None and fresh is not kept
    assert (fresh.body_limit, fresh.target) == (1024, "fn@2")
    same_id = Principal(id="k1", name="one", role="custom-r")  # equal, not the same object
    assert plan_for(node, same_id, old) is not kept


def test_a_redeploy_takes_the_old_versions_place() -> None:
    """One plan per key and function name: a superseded version is not kept alive by it."""
    node = _node(_deployed(1))
    node.policy.put(_role("custom-r", "fn"))
    for version in range(1, 51):
        deployed = _deployed(version)
        plan = plan_for(node, KEY, deployed)
        assert plan is not None and plan.deployed is deployed
    assert len(node.call_plans) == 1


def test_jwt_principal_gets_no_plan() -> None:
    """A JWT's principal is made per request: nothing is resolved ahead or kept for it."""
    deployed = _deployed()
    node = _node(deployed)
    jwt = Principal(id="iss:sub", name="sub", role="invoker", kind="jwt")
    assert plan_for(node, jwt, deployed) is None
    assert node.call_plans == {}


def test_plans_are_bounded() -> None:
    """Past MAX_PLANS kept plans the table starts again rather than grow."""
    deployed = _deployed()
    node = _node(deployed)
    keys = [Principal(id=f"k{i}", name="n", role="invoker") for i in range(MAX_PLANS + 5)]
    for key in keys:
        plan_for(node, key, deployed)
    assert len(node.call_plans) <= MAX_PLANS


def test_meta_from_a_plan_is_the_same_bytes() -> None:
    """The call's meta built from a plan's parts is byte for byte the one built without."""
    deployed = _deployed(7)
    node = _node(deployed)
    label_key = Principal(id='a"b\u00e9', name="n", role="invoker")
    plan = plan_for(node, label_key, deployed)
    assert plan is not None
    raw = _meta(deployed, "0123456789abcdef", label_key, {"s": "v"}, 5.0, plan=plan)
    without = _meta(deployed, "0123456789abcdef", label_key, {"s": "v"}, 5.0)
    meta, other = json.loads(raw), json.loads(without)
    assert raw == json.dumps(meta).encode()  # what json.dumps writes, as without a plan
    assert {**meta, "deadline": 0} == {**other, "deadline": 0}
    assert meta["principal"] == label_key.label and meta["function"] == "fn"
