"""`FunctionRegistry.by_name`, what the early shed and the invoke route look a name up in,
against `get`, after every way the registry changes."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

from donjon.lifecycle.registry import FunctionRegistry
from donjon.manifest import parse_manifest


def _deployed(name: str, version: int) -> Any:
    manifest = parse_manifest(f"name: {name}\nhandler: main.handler\nmemory_mb: 96\n")
    record = SimpleNamespace(name=name, version=version, owner="")
    return SimpleNamespace(name=name, record=record, manifest=manifest)


def test_by_name_answers_as_get_after_every_put_and_remove() -> None:
    """Random deploys (new functions and new versions) and removals, with holds between:
    for every name, deployed or not, `by_name.get` is `get`'s very object."""
    draws = random.Random(214)  # noqa: S311 - a repeatable run of steps, not a secret
    registry = FunctionRegistry()
    names = [f"fn-{i}" for i in range(6)]
    for step in range(400):
        name = draws.choice(names)
        roll = draws.random()
        if roll < 0.5:
            registry.put(_deployed(name, step))
        elif roll < 0.85:
            registry.remove(name)
        else:
            registry.hold(name, "key:owner")
        for each in [*names, "never-deployed"]:
            assert registry.by_name.get(each) is registry.get(each)
        assert sorted(registry.by_name) == [d.name for d in registry.all()]
