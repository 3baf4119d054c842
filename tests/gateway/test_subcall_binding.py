"""A call's `context.invoke` answerer, bound lazily (`answer_call`, gateway/invoke.py's
`_subcalls`), answers what the `FunctionCalls` made up front answered: the same answers,
the same callee runs (principal, event, ids, chain) and the same audited refusals."""

from __future__ import annotations

import asyncio
import functools
import itertools
from types import SimpleNamespace
from typing import Any

import pytest

from donjon.gateway import invoke
from donjon.gateway.function_calls import Chain, ChainParts, FunctionCalls, answer_call
from donjon.identity import Principal

_CALLER = Principal(id="k1", name="alice", role="invoker")


def _deployed(name: str, grants: tuple[str, ...] = ()) -> Any:
    return SimpleNamespace(
        name=name,
        manifest=SimpleNamespace(permissions=SimpleNamespace(invoke=grants), timeout_s=5.0),
        grant_holds=lambda callee: True,
    )


class _Node:
    """What `FunctionCalls` asks of the node, with what it did recorded."""

    def __init__(self, deployed: dict[str, Any]) -> None:
        self.deployed = deployed
        self.registry = SimpleNamespace(get=deployed.get)
        self.quarantines = SimpleNamespace(get=lambda name: None)
        self.done: list[Any] = []
        self.metrics = SimpleNamespace(denied=lambda *args: self.done.append(("metric", args)))

        async def deny(event: Any, actor: str) -> None:
            self.done.append(("denied", event.actor, event.action, event.target, event.detail))

        self.denials = SimpleNamespace(deny=deny)


def _answers(bind: str, parts: ChainParts, name: str) -> tuple[Any, list[Any]]:
    """What one `context.invoke` of `name` by `caller` gets, and what the node did."""
    node = _Node({"caller": _deployed("caller", ("callee",)), "callee": _deployed("callee")})
    ids = itertools.count(1)

    async def run(
        node_: Any, callee: Any, principal: Any, event: bytes, rid: str, chain: Any
    ) -> bytes:
        node.done.append(("ran", callee.name, principal, event, rid, chain))
        return b'{"r": 1}'

    async def go() -> Any:
        caller: Any = node.deployed["caller"]
        anyone: Any = node
        if bind == "up front":
            calls = FunctionCalls(anyone, caller, Chain(*parts), run, lambda: f"c{next(ids)}")
            return await calls(name, b"{}")
        return await answer_call(anyone, caller, parts, run, lambda: f"c{next(ids)}", name, b"{}")

    return asyncio.run(go()), node.done


@pytest.mark.parametrize("name", ["callee", "other", "missing"])
@pytest.mark.parametrize("depth", [0, 4])
def test_lazy_binding_answers_as_the_calls_made_up_front(name: str, depth: int) -> None:
    parts: ChainParts = ("r0", depth, 10**9, "r1", _CALLER)
    lazy = _answers("lazy", parts, name)
    assert lazy == _answers("up front", parts, name)
    if name == "callee" and depth == 0:  # the callee ran, in the chain the parts name
        ran = lazy[1][0]
        assert ran[1] == "callee" and ran[4] == "c1"
        assert ran[5] == Chain("r0", 1, ran[5].deadline, "r1", _CALLER)
    else:
        assert any(step[0] == "denied" for step in lazy[1]) or b'"ok": false' in lazy[0][0]


@pytest.mark.parametrize("chained", [False, True])
def test_subcalls_binds_the_chain_the_call_made_before(chained: bool) -> None:
    """`_subcalls` binds the fields of the `Chain` it used to make: the chain's start, its
    depth, the deadline (never past the caller's), the call's own id and the payer."""
    payer = Principal(id="k9", name="bob", role="invoker")
    chain = Chain("r0", 2, 10**12, "r-made-by", payer) if chained else None
    node: Any = SimpleNamespace()
    timeout_s, calls = invoke._subcalls(node, _deployed("caller"), "r1", chain, _CALLER)
    assert timeout_s == 5.0
    assert isinstance(calls, functools.partial)
    assert calls.func is answer_call
    bound = Chain(*calls.args[2])
    assert (bound.request_id, bound.depth, bound.made_by, bound.payer) == (
        ("r0", 2, "r1", payer) if chained else ("r1", 0, "r1", _CALLER)
    )
    assert calls.args[3] is invoke._call_function
