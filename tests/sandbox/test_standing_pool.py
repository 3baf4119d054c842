"""The pool's standing queue (sandbox/standing.py) with a real sandbox: it ends when the
queue drains, whatever way the next calls come in."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

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
    standing,
)
from donjon.sandbox.standing import OVERFLOW_REFUSALS

HANDLER = """
import time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"ok": True}
"""


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "main.py").write_text(HANDLER)
    return tmp_path


def _pool(bundle: Path, bounds: QueueBounds) -> SandboxPool:
    """A real pool on this machine's sandbox, its data beside `bundle`, with `bounds`."""
    return SandboxPool(
        detect_resource_control(),
        compile_filters(),
        SandboxHost.detect(bundle.parent / "data"),
        bounds=bounds,
    )


@pytest.mark.slow
def test_a_drained_standing_queue_takes_a_burst_at_the_request_head(bundle: Path) -> None:
    """A's call holds the only slot while B and C wait (past the target, an interval
    apart) and D is refused at the bound: the queue stands. Once all have run nobody
    waits and the slot is free; a burst of 2 heads then is asked as a burst (4 service
    times of budget), not shed with the drained queue's target."""
    config = InstanceConfig("standingtest", 1, bundle, "main", "handler", True, 64, 8, 1)
    meta = json.dumps(
        {"request_id": "r", "function": "standingtest", "version": 1, "deadline": time.time() + 60}
    ).encode()

    async def go() -> tuple[list[CallResult | BaseException], bool, str]:
        pool = _pool(bundle, QueueBounds(2, 100, 60.0, ShedTiming(target_s=0.05, interval_s=0.1)))
        try:
            await pool.prestart(config)
            await pool.invoke(config, meta, b'{"sleep": 0.2}', 30)  # a service time
            first = asyncio.ensure_future(pool.invoke(config, meta, b'{"sleep": 1}', 30))
            while pool.sizes().get("standingtest", (0, 0))[0] == 0:  # until A holds it
                await asyncio.sleep(0.01)
            rest = await asyncio.gather(
                pool.invoke(config, meta, b'{"sleep": 0.3}', 30),  # B
                pool.invoke(config, meta, b"{}", 30),  # C
                pool.invoke(config, meta, b"{}", 30),  # D: past the bound of 2
                return_exceptions=True,
            )
            results = [await first, *rest]
            slot = pool._slots[(config.function, config.version)]
            stood = slot.queue.standing
            try:
                pool.check_in_flight(config, 2)  # two heads let through at once
            except CallShed as e:
                return results, stood, e.message
            return results, stood, ""

        finally:
            await pool.close()

    results, stood, shed = asyncio.run(go())
    assert [type(r) for r in results] == [CallResult, CallResult, CallResult, CallShed], results
    assert stood  # the scenario made the queue stand
    assert shed == ""


def test_a_refusal_at_the_node_bound_does_not_make_a_function_queue_stand(
    bundle: Path,
) -> None:
    """Other functions' calls fill the node's queue, so a call of this one (two waiting,
    within its own bounds) is refused at the node's bound; its own calls then wait past
    the target for many intervals (a closed loop of its callers): its queue is not full,
    so it does not stand, and a call with two ahead still queues."""
    config = InstanceConfig("nodebound", 1, bundle, "main", "handler", True, 64, 8, 1)
    timing = ShedTiming()
    service_s = 0.01

    async def go() -> tuple[bool, str]:
        pool = _pool(bundle, QueueBounds(per_function=64, node=4, wait_s=60.0))
        slot = pool._new_slot(config)
        slot.service.note(service_s)
        await slot.gate.acquire()  # a call of it runs: the next ones queue
        slot.waiting, pool.backlog.waiting = 2, 4  # 2 of its own, 2 of other functions
        with pytest.raises(CallShed, match="the node has 4 calls waiting"):
            pool.check_capacity(config)
        pool.backlog.waiting = 2  # the other functions' calls are gone
        now = 100.0
        target, interval = timing.target(service_s), timing.interval(service_s)
        while now < 100.0 + 10 * interval:  # its own calls each wait 3 service times
            slot.queue.waited(3 * service_s, now, target, interval)
            now += 0.001
        try:
            pool.check_capacity(config)
        except CallShed as e:
            return slot.queue.standing, e.message
        return slot.queue.standing, ""

    standing, shed = asyncio.run(go())
    assert not standing
    assert shed == ""


def test_a_head_shed_at_the_node_bound_alone_does_not_mark_the_queue_full(
    bundle: Path,
) -> None:
    """The request head's shed (`check_in_flight`, then `refused_at_head` when the gateway
    does shed it) follows the same rule: the node's bound alone does not make the
    function's queue full; its own bound does."""
    config = InstanceConfig("headbound", 1, bundle, "main", "handler", True, 64, 8, 1)
    timing = ShedTiming()
    service_s = 0.01

    async def go() -> tuple[bool, bool]:
        pool = _pool(bundle, QueueBounds(per_function=3, node=4, wait_s=60.0))
        slot = pool._new_slot(config)
        slot.service.note(service_s)
        await slot.gate.acquire()
        target, interval = timing.target(service_s), timing.interval(service_s)

        def stands_after(ahead: int) -> bool:
            slot.queue.took_free_slot()  # start afresh
            with pytest.raises(CallShed) as caught:
                pool.check_in_flight(config, ahead + 1)
            pool.refused_at_head(config, caught.value)
            now = 100.0
            while now < 100.0 + 10 * interval:
                slot.queue.waited(3 * service_s, now, target, interval)
                now += 0.001
            return slot.queue.standing

        pool.backlog.waiting = 4  # other functions' calls fill the node's queue
        by_node = stands_after(0)
        pool.backlog.waiting = 0
        by_own = stands_after(3)  # 3 ahead: its own bound
        return by_node, by_own

    by_node, by_own = asyncio.run(go())
    assert not by_node
    assert by_own


def test_heads_let_through_count_behind_the_waiting_when_no_slot_is_free(
    bundle: Path,
) -> None:
    """With every slot taken, the calls already let through from their heads will all
    wait behind the calls waiting now: the next head is asked with both ahead of it, as
    `admit` will ask it (one slot, 4 service times of budget). With a slot free, calls
    let through may take it: the head is asked with only those past the free slots."""
    config = InstanceConfig("headsahead", 1, bundle, "main", "handler", True, 64, 8, 1)

    async def go() -> list[str]:
        pool = _pool(bundle, QueueBounds(per_function=64, node=512, wait_s=60.0))
        slot = pool._new_slot(config)
        slot.service.note(0.25)  # a budget of 1 s: 4 calls' service ahead of it at most

        def asked(waiting: int, in_flight: int) -> str:
            slot.waiting = waiting
            try:
                pool.check_in_flight(config, in_flight)
            except CallShed as e:
                return e.message
            return ""

        free = [asked(0, 3), asked(2, 2)]
        await slot.gate.acquire()  # the one slot taken
        taken = [asked(2, 1), asked(2, 2), asked(0, 4)]
        slot.gate.release()
        # Asked is not refused: only the gateway's refusal counts as a call shed.
        assert pool.backlog.shed == 0
        pool.refused_at_head(config, CallShed("overloaded"))
        assert pool.backlog.shed == 1
        return free + taken

    free_3, free_2_2, taken_2_1, taken_2_2, taken_0_4 = asyncio.run(go())
    assert free_3 == ""  # 3 let through, one may take the free slot: 2 ahead, 0.75 s
    assert free_2_2 == ""
    assert taken_2_1 == ""  # 3 ahead: answers in 1 s, within the budget
    assert "would answer in about 1250 ms" in taken_2_2  # 4 ahead, not max(2, 2 - 1)
    assert "would answer in about 1250 ms" in taken_0_4


def test_heads_shed_at_the_head_make_the_queue_overflow(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Heads the gateway shed (`refused_at_head`) count towards the queue's overflow,
    but not those the node's bound alone refused, nor those of callers over their own
    limits (`counts`). Sixteen that count with no call served: a head asked then, with
    a slot free and one call let through ahead of it, is held to the target (one
    service time), not to 4 service times, until the overflow's hold is over."""
    config = InstanceConfig("overflowing", 1, bundle, "main", "handler", True, 64, 8, 1)

    async def go() -> list[str]:
        pool = _pool(bundle, QueueBounds(per_function=64, node=512, wait_s=60.0))
        slot = pool._new_slot(config)
        slot.service.note(0.25)  # target 0.25 s; budget 1 s

        def asked(in_flight: int) -> str:
            try:
                pool.check_in_flight(config, in_flight)
            except CallShed as e:
                return e.message
            return ""

        def shed_heads(shed: CallShed, *, counts: bool = True) -> None:
            for _ in range(OVERFLOW_REFUSALS):
                pool.refused_at_head(config, shed, counts=counts)

        answers = [asked(2)]  # the slot free, 2 let through: 1 ahead, 0.5 s
        shed_heads(CallShed("overloaded", node_only=True))
        shed_heads(CallShed("overloaded"), counts=False)
        answers.append(asked(2))
        shed_heads(CallShed("overloaded"))
        answers += [asked(2), asked(1)]  # none ahead: within the target
        monkeypatch.setattr(standing, "OVERFLOW_S", 0.05)
        shed_heads(CallShed("overloaded"))  # a new window, held 50 ms from now
        await asyncio.sleep(0.2)
        answers.append(asked(2))
        return answers

    idle, not_counted, overflowing, alone, lapsed = asyncio.run(go())
    assert idle == not_counted == ""
    assert "has a standing queue: it would answer in about 500 ms" in overflowing
    assert alone == ""
    assert lapsed == ""
