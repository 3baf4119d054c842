"""The sandbox pool driven directly: concurrency, limits, idle reaping, retirement."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from donjon.gateway.problems import status_for
from donjon.sandbox import (
    CallResult,
    InstanceConfig,
    SandboxHost,
    SandboxPool,
    SandboxUnavailable,
    TooManyInvocations,
    compile_filters,
    detect_resource_control,
)

HANDLER = """
import os, time
PROCESS = os.urandom(8).hex()  # made once per process that imports the handler
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"process": PROCESS}
"""


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "main.py").write_text(HANDLER)
    return tmp_path


def _config(bundle: Path, *, warm: bool, concurrency: int = 4) -> InstanceConfig:
    return InstanceConfig("pooltest", 1, bundle, "main", "handler", warm, 64, 8, concurrency)


def _host(bundle: Path) -> SandboxHost:
    return SandboxHost.detect(bundle.parent / "data")


def _meta() -> bytes:
    return json.dumps(
        {"request_id": "r", "function": "pooltest", "version": 1, "deadline": time.time() + 10}
    ).encode()


T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_invocation_calls_run_concurrently_in_distinct_processes(bundle: Path) -> None:
    """Four overlapping calls of one invocation-mode function run in four processes at once."""

    async def go() -> list[str]:
        pool = SandboxPool(detect_resource_control(), compile_filters(), _host(bundle))
        try:
            cfg = _config(bundle, warm=False)
            results = await asyncio.gather(
                *(pool.invoke(cfg, _meta(), b'{"sleep": 0.5}', 5) for _ in range(4))
            )
            return [json.loads(r.body)["process"] for r in results]
        finally:
            await pool.close()

    pids = _run(go())
    assert isinstance(pids, list) and len(set(pids)) == 4


def test_warm_mode_reuses_one_process(bundle: Path) -> None:
    """Sequential calls of a warm function are served by the same process."""

    async def go() -> set[str]:
        pool = SandboxPool(detect_resource_control(), compile_filters(), _host(bundle))
        try:
            cfg = _config(bundle, warm=True, concurrency=1)
            return {
                json.loads((await pool.invoke(cfg, _meta(), b"{}", 5)).body)["process"]
                for _ in range(5)
            }
        finally:
            await pool.close()

    assert len(_run(go())) == 1


@pytest.mark.slow
def test_concurrency_limit_turns_excess_away(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past limits.concurrency a call waits briefly, then is refused with 429."""
    import donjon.sandbox.pool as pool_module

    monkeypatch.setattr(pool_module, "_QUEUE_WAIT_S", 0.2)

    async def go() -> tuple[CallResult | BaseException, CallResult | BaseException]:
        pool = SandboxPool(detect_resource_control(), compile_filters(), _host(bundle))
        try:
            cfg = _config(bundle, warm=False, concurrency=1)
            return await asyncio.gather(
                pool.invoke(cfg, _meta(), b'{"sleep": 1.5}', 5),
                pool.invoke(cfg, _meta(), b"{}", 5),
                return_exceptions=True,
            )
        finally:
            await pool.close()

    first, second = _run(go())
    assert not isinstance(first, BaseException)
    assert isinstance(second, TooManyInvocations)
    assert status_for(second) == 429


def test_idle_sandboxes_are_reaped(bundle: Path) -> None:
    """A sandbox idle past the timeout is stopped; the next call starts a new one."""

    async def go() -> tuple[int, int, str]:
        pool = SandboxPool(
            detect_resource_control(), compile_filters(), _host(bundle), idle_timeout_s=0.3
        )
        pool.start()
        try:
            cfg = _config(bundle, warm=True, concurrency=1)
            first = json.loads((await pool.invoke(cfg, _meta(), b"{}", 5)).body)["process"]
            running = pool.running()
            for _ in range(40):
                await asyncio.sleep(0.1)
                if pool.running() == 0:
                    break
            after = pool.running()
            await pool.invoke(cfg, _meta(), b"{}", 5)
            return running, after, first
        finally:
            await pool.close()

    running, after, _ = _run(go())
    assert running == 1 and after == 0


def test_an_idle_function_leaves_nothing_in_the_pool(bundle: Path) -> None:
    """Once its sandboxes are reaped, an idle function's slot goes too (an idle node holds
    nothing per function); its next call starts a sandbox again and is served."""

    async def go() -> tuple[bool, bool, int]:
        pool = SandboxPool(
            detect_resource_control(), compile_filters(), _host(bundle), idle_timeout_s=0.3
        )
        pool.start()
        try:
            cfg = _config(bundle, warm=True, concurrency=1)
            await pool.invoke(cfg, _meta(), b"{}", 5)
            listed = "pooltest" in pool.sizes()
            deadline = time.monotonic() + 60
            while "pooltest" in pool.sizes() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            gone = "pooltest" not in pool.sizes()
            await pool.invoke(cfg, _meta(), b"{}", 5)
            return listed, gone, pool.cold_starts
        finally:
            await pool.close()

    listed, gone, cold_starts = _run(go())
    assert listed and gone
    assert cold_starts == 2


def test_retire_stops_old_versions(bundle: Path) -> None:
    """Retiring a function stops its sandboxes but keeps the version asked to stay."""

    async def go() -> tuple[int, int]:
        pool = SandboxPool(detect_resource_control(), compile_filters(), _host(bundle))
        try:
            old = _config(bundle, warm=True, concurrency=1)
            new = InstanceConfig("pooltest", 2, bundle, "main", "handler", True, 64, 8, 1)
            await pool.invoke(old, _meta(), b"{}", 5)
            await pool.invoke(new, _meta(), b"{}", 5)
            before = pool.running()
            await pool.retire("pooltest", keep_version=2)
            return before, pool.running()
        finally:
            await pool.close()

    assert _run(go()) == (2, 1)


@pytest.mark.slow
def test_retire_with_drain_lets_calls_in_flight_finish(bundle: Path) -> None:
    """A new version's retirement of the old one waits for the old one's calls in flight."""

    async def go() -> tuple[bool, int]:
        pool = SandboxPool(detect_resource_control(), compile_filters(), _host(bundle))
        try:
            old = _config(bundle, warm=True, concurrency=1)
            await pool.invoke(old, _meta(), b"{}", 5)
            in_flight = asyncio.ensure_future(pool.invoke(old, _meta(), b'{"sleep": 1.0}', 5))
            await asyncio.sleep(0.3)
            await pool.retire("pooltest", keep_version=2, drain=True)
            result = await in_flight
            return bool(json.loads(result.body)["process"]), pool.running()
        finally:
            await pool.close()

    finished, running = _run(go())
    assert finished
    assert running == 0


def test_a_sweep_by_another_node_leaves_a_live_sandboxs_call_cgroups(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another node's start-up sweep (which takes cgroups nobody uses) never removes the
    per-call cgroups of a sandbox that is running: every later call still gets its answer."""
    from donjon.sandbox import limits

    async def go() -> list[int]:
        resources = detect_resource_control()
        pool = SandboxPool(resources, compile_filters(), _host(bundle))
        try:
            cfg = _config(bundle, warm=False)
            await pool.invoke(cfg, _meta(), b"{}", 5)  # the sandbox and its call cgroups exist
            monkeypatch.setattr(limits, "_ORPHAN_AGE_S", -1.0)  # every cgroup looks unused
            detect_resource_control().sweep()  # what a node starting beside this one does
            answered = []
            for _ in range(6):  # past every per-call cgroup the sandbox holds
                r = await pool.invoke(cfg, _meta(), b"{}", 5)
                answered.append(len(json.loads(r.body)["process"]))
            return answered
        finally:
            await pool.close()

    assert _run(go()) == [16] * 6


def test_a_closed_pool_starts_no_sandbox(bundle: Path) -> None:
    """After `close` (the node stopping), a call that still reaches the pool (a schedule,
    a queue's worker, a request in flight) is refused with 503, and no sandbox is started
    that nothing would ever close: before, it made a new slot and started one."""

    async def go() -> tuple[int, int]:
        pool = SandboxPool(detect_resource_control(), compile_filters(), _host(bundle))
        cfg = _config(bundle, warm=True)
        await pool.invoke(cfg, _meta(), b"{}", 5)  # a sandbox, then the node stops
        await pool.close()
        with pytest.raises(SandboxUnavailable) as refused:
            await pool.invoke(cfg, _meta(), b"{}", 5)
        assert status_for(refused.value) == 503
        assert "stopping" in refused.value.message
        return pool.cold_starts, pool.running()

    assert _run(go()) == (1, 0)
