"""A warm worker's per-call controls, call after call: its output capture, the leftover
children it ends and the memory it reports (runtime/call.py, runtime/worker.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from donjon.manifest.policies import PolicyMode, RuntimePolicies
from donjon.sandbox import (
    CallResult,
    InstanceConfig,
    SandboxHost,
    SandboxPool,
    compile_filters,
    detect_resource_control,
)

pytestmark = pytest.mark.slow

HANDLER = """
import ctypes, os, subprocess, sys, time

_libc = ctypes.CDLL(None, use_errno=True)
CALLS = 0


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _start(how):
    if how == "fork":
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        return [pid]
    if how == "orphan":  # a grandchild: its parent exits, pid 1 (the worker) adopts it
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            grandchild = os.fork()
            if grandchild == 0:
                time.sleep(60)
                os._exit(0)
            os.write(w, str(grandchild).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        return [int(os.read(r, 32))]
    if how == "libc-fork":  # past Python's own fork machinery
        pid = _libc.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        return [pid]
    if how == "subprocess":
        return [subprocess.Popen(["sleep", "60"]).pid]
    raise ValueError(how)


def _tried(how):
    try:
        pids = _start(how)
    except OSError as e:
        return {"how": how, "errno": e.errno}
    if pids[0] < 0:
        return {"how": how, "errno": ctypes.get_errno()}
    return {"how": how, "pids": pids}


def handler(event, context):
    global CALLS
    CALLS += 1
    op = event.get("op")
    if op == "count":
        return {"calls": CALLS}
    if op == "start" and CALLS == event["on_call"]:
        return [_tried(how) for how in event["how"]]
    if op == "alive":
        return {str(pid): _alive(pid) for pid in event["pids"]}
    if op == "print":
        os.write(1, event["text"].encode())
    if op == "print-big":
        os.write(1, b"x" * event["size"] + b"END")
    if op == "close":
        os.close(1)
        os.close(2)
    if op == "dup2-null":
        null = os.open("/dev/null", os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
    if op == "seek":
        os.lseek(1, event["to"], os.SEEK_SET)
    if op == "stderr":
        print(event["text"], file=sys.stderr)
    return {"calls": CALLS}
"""

#: One call at a time on one warm worker (the pool's warm instance, concurrency 1).
Invoke = Callable[[dict[str, Any]], Awaitable[CallResult]]


def _meta() -> bytes:
    return json.dumps(
        {"request_id": "r", "function": "warmworker", "version": 1, "deadline": time.time() + 10}
    ).encode()


@asynccontextmanager
async def _worker(tmp_path: Path, child_processes: PolicyMode) -> AsyncIterator[Invoke]:
    (tmp_path / "main.py").write_text(HANDLER)
    policies = RuntimePolicies(child_processes=child_processes)
    config = InstanceConfig(
        "warmworker", 1, tmp_path, "main", "handler", True, 64, 8, 1, policies=policies
    )
    host = SandboxHost.detect(tmp_path.parent / "data")
    pool = SandboxPool(detect_resource_control(), compile_filters(), host)

    async def invoke(event: dict[str, Any]) -> CallResult:
        return await pool.invoke(config, _meta(), json.dumps(event).encode(), 10)

    try:
        yield invoke
    finally:
        await pool.close()


def _body(result: CallResult) -> Any:
    return json.loads(result.body)


@pytest.mark.parametrize("how", ["fork", "orphan", "libc-fork", "subprocess"])
def test_a_child_started_on_the_50th_call_is_ended_with_it(tmp_path: Path, how: str) -> None:
    """With child_processes allow, a process a call starts (by os.fork, a double fork, libc's
    fork or subprocess) after 49 calls that started none is gone once the call has answered."""

    async def go() -> tuple[list[dict[str, Any]], dict[str, bool], int]:
        async with _worker(tmp_path, PolicyMode.ALLOW) as invoke:
            for _ in range(49):
                await invoke({"op": "count"})
            started = _body(await invoke({"op": "start", "on_call": 50, "how": [how]}))
            pids = [pid for tried in started for pid in tried.get("pids", [])]
            alive = _body(await invoke({"op": "alive", "pids": pids}))
            calls = _body(await invoke({"op": "count"}))["calls"]
            return started, alive, calls

    started, alive, calls = asyncio.run(go())
    assert "pids" in started[0], started  # the policy let it start
    assert alive and not any(alive.values()), alive
    assert calls == 52  # the same worker served every call


def test_under_block_no_call_can_start_a_process(tmp_path: Path) -> None:
    """With child_processes block (the default), which lets a warm call skip the leftover
    check, every way to start a process fails on the 50th call as on the first."""
    ways = ["fork", "libc-fork", "subprocess"]

    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]], int | None]:
        async with _worker(tmp_path, PolicyMode.BLOCK) as invoke:
            first = _body(await invoke({"op": "start", "on_call": 1, "how": ways}))
            for _ in range(48):
                await invoke({"op": "count"})
            fiftieth = await invoke({"op": "start", "on_call": 50, "how": ways})
            return first, _body(fiftieth), fiftieth.memory_kb

    first, fiftieth, memory_kb = asyncio.run(go())
    for tried in (*first, *fiftieth):
        assert "pids" not in tried, tried
        assert tried["errno"] > 0, tried
    assert memory_kb is not None and memory_kb > 1024  # the worker's own peak, still reported


def test_output_is_each_calls_own_after_silent_and_loud_calls(tmp_path: Path) -> None:
    """A call's log holds what it wrote and nothing of the call before, loud or silent."""

    async def go() -> list[str]:
        async with _worker(tmp_path, PolicyMode.BLOCK) as invoke:
            events: list[dict[str, Any]] = [
                {"op": "print", "text": "one\n"},
                {"op": "count"},
                {"op": "count"},
                {"op": "print", "text": "four\n"},
                {"op": "stderr", "text": "five"},
                {"op": "count"},
            ]
            return [(await invoke(event)).output for event in events]

    assert asyncio.run(go()) == ["one\n", "", "", "four\n", "five\n", ""]


def test_output_over_the_cap_keeps_its_tail_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """A call writing past the cap logs its last 64 KiB (the gateway keeps no more); the next
    call's log is its own, none of the first call's bytes in it."""

    async def go() -> tuple[str, str]:
        async with _worker(tmp_path, PolicyMode.BLOCK) as invoke:
            big = await invoke({"op": "print-big", "size": 100_000})
            after = await invoke({"op": "print", "text": "small\n"})
            return big.output, after.output

    big, after = asyncio.run(go())
    assert big == ("x" * 100_000 + "END")[-65536:]
    assert after == "small\n"


@pytest.mark.parametrize(
    "tamper",
    [{"op": "close"}, {"op": "dup2-null"}, {"op": "seek", "to": 4096}],
    ids=["closed", "dup2-devnull", "seeked"],
)
def test_what_a_call_does_to_fd_1_and_2_leaves_the_next_calls_output_whole(
    tmp_path: Path, tamper: dict[str, Any]
) -> None:
    """A call that closes fd 1 and 2, points them at /dev/null or moves their offset does not
    cost the next calls a byte of their output."""

    async def go() -> list[str]:
        async with _worker(tmp_path, PolicyMode.BLOCK) as invoke:
            await invoke({"op": "print", "text": "before\n"})
            await invoke(tamper)
            return [
                (await invoke({"op": "print", "text": "next\n"})).output,
                (await invoke({"op": "count"})).output,
                (await invoke({"op": "stderr", "text": "last"})).output,
            ]

    assert asyncio.run(go()) == ["next\n", "", "last\n"]
