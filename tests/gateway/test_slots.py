"""A call's concurrency slots (gateway/slots.py) are given back however the call ends.

In process, with a stand-in pool: the sandbox side is not what is tested (the real
node's tests are in test_limits_node.py); the ends a real client cannot cause on
demand are: the call's task cancelled mid-call, and the pool raising.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from donjon.audit import AuditEvent
from donjon.audit.errors import AuditUnavailable
from donjon.audit.inflight import IN_FLIGHT, CallsInFlight, read_notes
from donjon.config import LimitSettings, SandboxSettings, Settings
from donjon.gateway import invoke
from donjon.gateway.slots import NODE_KEY, ConcurrencyFull, Held, hold_slots
from donjon.identity import Policy, Principal
from donjon.manifest import parse_manifest
from donjon.obs import Metrics
from donjon.ratelimit import BucketKey, MemoryConcurrencyLimiter
from donjon.ratelimit.quota_book import QuotaBook
from donjon.sandbox import SandboxError
from donjon.store.trim import CountedTrim

PRINCIPAL = Principal(id="0123456789abcdef", name="t", role="invoker")
OWN_KEY = BucketKey(principal=PRINCIPAL.label, scope="concurrency")


class Pool:
    """Blocks each call until `go` is set, then raises `error` (if any) or never returns."""

    def __init__(self, error: Exception | None = None) -> None:
        self.started = asyncio.Event()
        self.error = error

    async def invoke(self, *_args: Any) -> Any:
        self.started.set()
        if self.error is not None:
            raise self.error
        await asyncio.Event().wait()  # until cancelled


class Denials:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def deny(self, event: AuditEvent, client: str, named: str = "", **_: Any) -> None:
        self.events.append(event)


class Audit:
    def require_writer(self) -> None:  # a writer runs: the call is not refused
        return None

    async def record(self, *_args: Any) -> None:
        return None


def _node(tmp_path: Path, pool: Pool, **limits: Any) -> Any:
    settings = Settings(
        data_dir=tmp_path,
        url="https://127.0.0.1:1",
        api_key=None,
        sandbox=SandboxSettings(max_queue_wait_s=0.05),
        limits=LimitSettings(**limits),
    )
    return SimpleNamespace(
        settings=settings,
        slots=MemoryConcurrencyLimiter(),
        node_slots=MemoryConcurrencyLimiter(),
        policy=Policy(),
        metrics=Metrics(),
        denials=Denials(),
        audit=Audit(),
        pool=pool,
        quotas=QuotaBook(),  # none set: nothing is charged
        log_bound=CountedTrim("invocation log", _no_trim, 10),  # each call's entry counted
        key_index=_EveryKeyLive(),
        calls_in_flight=CallsInFlight(tmp_path / IN_FLIGHT),  # (audit/inflight.py)
    )


class _EveryKeyLive:
    """The key index as a call asks it again once it holds its slots (gateway/access.py
    `credential_ended`): every key live here (a key revoked in flight is
    tests/security/test_attack_revoked_in_flight.py's)."""

    def ended(self, key_id: str, now: float | None = None) -> str | None:
        del key_id, now
        return None


async def _no_trim(function: str, keep: int, batch: int) -> int:
    del function, keep, batch
    return 0


def _deployed() -> Any:
    manifest = parse_manifest("name: slotted\nhandler: main.handler\n")
    return SimpleNamespace(
        name="slotted",
        manifest=manifest,
        record=SimpleNamespace(name="slotted", version=1),
        config=None,
    )


async def _held(node: Any) -> tuple[int, int, int]:
    """The principal's slots held, the node's, and the calls noted in flight."""
    return (
        await node.slots.held(OWN_KEY),
        await node.node_slots.held(NODE_KEY),
        node.calls_in_flight.in_flight(),
    )


def _never_rendered(result: Any) -> Any:  # the stand-in pool never returns a result
    raise AssertionError(result)


async def _call(node: Any) -> Any:
    return await invoke._run(node, _deployed(), PRINCIPAL, b"{}", "r1", "invoke", _never_rendered)


async def _running(call: asyncio.Task[Any], pool: Pool) -> None:
    """Until `call` reached the pool; if it ends first, its error: never a wait forever."""
    started = asyncio.create_task(pool.started.wait())
    await asyncio.wait([call, started], return_when=asyncio.FIRST_COMPLETED)
    if not started.done():
        started.cancel()
        raise AssertionError(f"the call ended before it ran: {call.result()!r}")


def test_a_cancelled_call_gives_its_slots_back(tmp_path: Path) -> None:
    """A call cancelled while its sandbox runs (a client gone, the node stopping) leaves
    neither its principal's slot nor the node's held, nor its note of a call in flight
    (its record was written as it ended)."""

    async def go() -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        pool = Pool()
        node = _node(tmp_path, pool)
        task = asyncio.create_task(_call(node))
        await _running(task, pool)
        during = await _held(node)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return during, await _held(node)

    during, after = asyncio.run(go())
    assert during == (1, 1, 1)
    assert after == (0, 0, 0)


def test_a_failed_call_gives_its_slots_back(tmp_path: Path) -> None:
    """A call whose sandbox fails leaves no slot held and no note of a call in flight."""

    async def go() -> tuple[int, int, int]:
        node = _node(tmp_path, Pool(SandboxError("the sandbox failed")))
        with pytest.raises(SandboxError):
            await _call(node)
        return await _held(node)

    assert asyncio.run(go()) == (0, 0, 0)


class _RefusingAudit(Audit):
    async def record(self, *_args: Any) -> None:
        raise AuditUnavailable("the writer is gone")


def test_a_call_whose_record_failed_stays_noted_in_flight(tmp_path: Path) -> None:
    """A call whose record the log refused ended with no record: its note stays in the
    journal, so the node's next start records it `interrupted` (its slots are freed)."""

    async def go() -> tuple[int, int, int]:
        node = _node(tmp_path, Pool(SandboxError("the sandbox failed")))
        node.audit = _RefusingAudit()
        with pytest.raises(AuditUnavailable):
            await _call(node)
        return await _held(node)

    assert asyncio.run(go()) == (0, 0, 1)
    (left,) = read_notes(tmp_path / IN_FLIGHT)
    assert (left.request_id, left.target, left.trigger) == ("r1", "slotted@1", "invoke")


def test_a_full_cap_refuses_after_the_bounded_wait_and_is_audited(tmp_path: Path) -> None:
    """With the node's cap of one held, the next call waits the bounded time, gets
    `ConcurrencyFull` (503) without keeping its principal's slot, and is audited."""

    async def go() -> tuple[tuple[int, int], Any]:
        pool = Pool()
        node = _node(tmp_path, pool, max_concurrency=1)
        running = asyncio.create_task(_call(node))
        await _running(running, pool)
        other = Principal(id="fedcba9876543210", name="o", role="invoker")
        with pytest.raises(ConcurrencyFull) as refused:
            await hold_slots(node, _deployed(), other, "r2", "invoke")
        held = (
            await node.slots.held(BucketKey(principal=other.label, scope="concurrency")),
            await node.node_slots.held(NODE_KEY),
        )
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        return held, (refused.value, node.denials.events)

    held, (error, events) = asyncio.run(go())
    assert held == (0, 1)  # its own slot given back; the node's still the running call's
    assert error.retry_after_s >= 1 and error.cap == "node"
    assert [e.action for e in events] == ["function.concurrency"]


def test_a_step_after_processes_already_gone_runs_at_once() -> None:
    """A call whose processes ran on past its answer, but ended before its caller asked
    for the step after them (they often end while its record is written): the step runs
    then. Before, it was kept for a finish that had already run: the call's compute was
    never charged, and its reservation held the caller's quota for the rest of the day."""

    async def main() -> list[str]:
        ran: list[str] = []
        held = Held()
        gone = held.runs_on()
        gone()  # the processes end: the finish runs (as a task)
        await asyncio.sleep(0)
        await asyncio.sleep(0)

        async def step() -> None:
            ran.append("charged")

        await held.after(step)
        await held.end()
        return ran

    assert asyncio.run(main()) == ["charged"]


def test_a_step_kept_while_processes_run_on_runs_once_they_are_gone() -> None:
    async def main() -> list[str]:
        ran: list[str] = []
        held = Held()
        gone = held.runs_on()

        async def step() -> None:
            ran.append("charged")

        await held.after(step)
        await held.end()
        assert ran == []  # still running: kept
        gone()
        for _ in range(3):
            await asyncio.sleep(0)
        return ran

    assert asyncio.run(main()) == ["charged"]
