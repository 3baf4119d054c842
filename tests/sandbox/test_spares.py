"""Spare one-call workers sized by demand (runtime/spares.py), and never reused."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from donjon.sandbox import (
    InstanceConfig,
    SandboxHost,
    SandboxPool,
    compile_filters,
    detect_resource_control,
)
from donjon.sandbox.runtime.spares import TAU_S, Demand

# Every process that imports the handler counts its own calls from zero.
HANDLER = """
CALLS = 0
def handler(event, context):
    global CALLS
    CALLS += 1
    return {"calls": CALLS}
"""


def test_one_spare_without_demand() -> None:
    """With no calls yet, one spare is kept."""
    assert Demand(8).spares(now=100.0, busy=0) == 1


def test_demand_up_means_more_spares() -> None:
    """Calls coming faster than a worker is made call for more spares than one."""
    demand = Demand(8)
    demand.made(0.05)  # a worker takes 50 ms to be ready
    demand.call_ended(0.01)
    now = 100.0
    for _ in range(200):  # 100 calls a second for two seconds
        now += 0.01
        demand.called(now)
    assert demand.spares(now, busy=0) >= 3


def test_idle_means_back_to_one_spare() -> None:
    """Once calls stop, the wanted spares fall back to one within a few time constants."""
    demand = Demand(8)
    demand.made(0.05)
    now = 100.0
    for _ in range(200):
        now += 0.01
        demand.called(now)
    assert demand.spares(now, busy=0) > 1
    assert demand.spares(now + 10 * TAU_S, busy=0) == 1


def test_spares_stay_within_the_sandboxs_room() -> None:
    """Spares and calls in flight together never pass concurrency + 2 (the sandbox's
    memory and pids are sized so), and one spare is always kept."""
    demand = Demand(2)
    demand.made(1.0)
    now = 100.0
    for _ in range(1000):
        now += 0.001
        demand.called(now)
    assert demand.spares(now, busy=0) == 4
    assert demand.spares(now, busy=2) == 2
    assert demand.spares(now, busy=10) == 1


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "main.py").write_text(HANDLER)
    return tmp_path


def _meta() -> bytes:
    return json.dumps(
        {"request_id": "r", "function": "sparetest", "version": 1, "deadline": time.time() + 30}
    ).encode()


def test_no_worker_serves_a_second_call_under_load(bundle: Path) -> None:
    """Back-to-back and concurrent calls of an invocation function each find a worker
    that has served nothing before (its call count starts at one), spares or not."""
    config = InstanceConfig("sparetest", 1, bundle, "main", "handler", False, 64, 8, 4)

    async def go() -> list[int]:
        host = SandboxHost.detect(bundle.parent / "data")
        pool = SandboxPool(detect_resource_control(), compile_filters(), host)
        try:
            counts = []
            for _ in range(15):
                result = await pool.invoke(config, _meta(), b"{}", 10)
                counts.append(json.loads(result.body)["calls"])
            for _ in range(3):
                results = await asyncio.gather(
                    *(pool.invoke(config, _meta(), b"{}", 10) for _ in range(4))
                )
                counts += [json.loads(r.body)["calls"] for r in results]
            return counts
        finally:
            await pool.close()

    counts = asyncio.run(go())
    assert len(counts) == 27 and set(counts) == {1}
