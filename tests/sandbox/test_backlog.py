"""Bounded waiting for a free slot (sandbox/backlog.py): the bounds, and the pool keeping them."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from donjon.gateway.problems import problem_from_error, status_for
from donjon.sandbox import (
    CallResult,
    CallShed,
    InstanceConfig,
    QueueBounds,
    SandboxHost,
    SandboxPool,
    ShedTiming,
    compile_filters,
    detect_resource_control,
)
from donjon.sandbox.backlog import BUDGET_FACTOR, Backlog, node_bounds

HANDLER = """
import time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"ok": True}
"""


def test_a_call_may_wait_below_every_bound() -> None:
    """Below the per-function and node bounds, and within the budget, a call may wait."""
    backlog = Backlog(QueueBounds(per_function=4, node=8, wait_s=5.0))
    backlog.admit("f", ahead=3, concurrency=2, service_s=0.01)
    assert backlog.shed == 0


def test_a_full_function_queue_sheds_with_503() -> None:
    """At `per_function` calls waiting, the next is shed: 503 with Retry-After, counted."""
    backlog = Backlog(QueueBounds(per_function=2, node=100, wait_s=5.0))
    with pytest.raises(CallShed) as caught:
        backlog.admit("f", ahead=2, concurrency=1, service_s=0.0)
    assert backlog.shed == 1
    assert status_for(caught.value) == 503
    response = problem_from_error(caught.value, request_id="r")
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1


def test_a_full_node_queue_sheds_whatever_the_function() -> None:
    """At `node` calls waiting in all, a call of a function with none waiting is shed too."""
    backlog = Backlog(QueueBounds(per_function=100, node=3, wait_s=5.0))
    backlog.waiting = 3
    with pytest.raises(CallShed, match="the node has 3 calls waiting"):
        backlog.admit("g", ahead=0, concurrency=1, service_s=0.0)


def test_a_call_that_would_wait_past_its_budget_is_shed() -> None:
    """A call expected to wait more than BUDGET_FACTOR service times is shed, not queued."""
    backlog = Backlog(QueueBounds(per_function=1000, node=1000, wait_s=60.0))
    ahead = int(BUDGET_FACTOR) * 2  # concurrency 2: BUDGET_FACTOR rounds of calls ahead
    with pytest.raises(CallShed, match="queue-time budget"):
        backlog.admit("f", ahead=ahead, concurrency=2, service_s=0.5)
    backlog.admit("f", ahead=ahead - 3, concurrency=2, service_s=0.5)  # one round less


def test_the_budget_never_exceeds_the_longest_wait() -> None:
    """However slow the function, a call is not queued to wait past `wait_s`."""
    backlog = Backlog(QueueBounds(per_function=1000, node=1000, wait_s=1.0))
    with pytest.raises(CallShed, match="budget"):
        backlog.admit("f", ahead=1, concurrency=1, service_s=2.0)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "main.py").write_text(HANDLER)
    return tmp_path


@pytest.mark.slow
def test_the_pool_sheds_past_its_bound_and_serves_the_rest(bundle: Path) -> None:
    """12 calls at once at concurrency 1 with room for 2 waiting: 3 served, 9 shed at once;
    nothing stays counted as waiting."""
    config = InstanceConfig("backlogtest", 1, bundle, "main", "handler", True, 64, 8, 1)
    meta = json.dumps(
        {"request_id": "r", "function": "backlogtest", "version": 1, "deadline": time.time() + 60}
    ).encode()

    async def go() -> tuple[list[CallResult | BaseException], int, int]:
        pool = SandboxPool(
            detect_resource_control(),
            compile_filters(),
            SandboxHost.detect(bundle.parent / "data"),
            bounds=QueueBounds(per_function=2, node=100, wait_s=60.0),
        )
        try:
            await pool.prestart(config)
            first = asyncio.ensure_future(pool.invoke(config, meta, b'{"sleep": 1}', 30))
            while pool.sizes().get("backlogtest", (0, 0))[0] == 0:  # until it holds the slot
                await asyncio.sleep(0.01)
            rest = await asyncio.gather(
                *(pool.invoke(config, meta, b"{}", 30) for _ in range(11)),
                return_exceptions=True,
            )
            return [await first, *rest], pool.backlog.waiting, pool.backlog.shed
        finally:
            await pool.close()

    results, waiting, shed = asyncio.run(go())
    served = [r for r in results if isinstance(r, CallResult)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(served) == 3
    assert len(refused) == 9 and all(isinstance(r, CallShed) for r in refused), refused
    assert waiting == 0
    assert shed == 9


def test_a_nodes_bounds_keep_a_functions_own_within_the_nodes() -> None:
    """DONJON_MAX_QUEUED_PER_FUNCTION above DONJON_MAX_QUEUED is taken as the node's: a
    function whose own calls fill the node is refused at its own bound (its queue is
    full: it counts towards its overflow), not as if other functions' calls had filled
    the node (`node_only`), which would never let its refusals arm anything."""
    bounds = node_bounds(64, 2, 5.0, ShedTiming())
    assert (bounds.per_function, bounds.node) == (2, 2)
    assert node_bounds(64, 512, 5.0, ShedTiming()).per_function == 64
    backlog = Backlog(bounds)
    backlog.waiting = 2  # both of them calls of f
    with pytest.raises(CallShed, match="f has 2 calls waiting") as own:
        backlog.admit("f", ahead=2, concurrency=1, service_s=0.0)
    assert not own.value.node_only
    with pytest.raises(CallShed, match="the node has 2 calls waiting") as others:
        backlog.admit("g", ahead=0, concurrency=1, service_s=0.0)
    assert others.value.node_only
