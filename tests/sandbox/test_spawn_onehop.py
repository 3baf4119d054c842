"""A cold start's argv, cgroup and launcher come from one hop of the spawning thread on
cgroup v1 (spawn.py `make_and_start`): what fails there fails the start cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from donjon.sandbox import (
    InstanceConfig,
    SandboxHost,
    SandboxPool,
    SandboxUnavailable,
    compile_filters,
    detect_resource_control,
    instance,
)
from donjon.sandbox.instance_cgroups import InstanceCgroups
from donjon.sandbox.limits import Cgroup, ResourceMode
from donjon.sandbox.profile import SandboxSpec, bwrap_argv
from donjon.sandbox.spawn import _Spawner, _spawners

ECHO = "def handler(event, context):\n    return {'ok': True}\n"


def _meta(function: str) -> bytes:
    meta = {"request_id": "r", "function": function, "version": 1, "deadline": time.time() + 30}
    return json.dumps(meta).encode()


@pytest.mark.slow
def test_a_cgroup_that_cannot_be_made_refuses_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the sandbox's cgroup cannot be made (cgroupfs refuses the mkdir), the start is
    refused with a clear error, no launcher runs, and the next start, once cgroups can be
    made again, serves its call (the spawning thread is not left broken)."""
    if detect_resource_control().mode is ResourceMode.RLIMIT:
        pytest.skip("no writable cgroup hierarchy here: rlimits only")
    bundle = tmp_path / "fn"
    bundle.mkdir()
    (bundle / "main.py").write_text(ECHO)
    real_make = InstanceCgroups.make

    def refused(self: InstanceCgroups) -> Cgroup | None:
        raise OSError(28, "No space left on device")

    async def go() -> tuple[BaseException | None, bytes]:
        host = SandboxHost.detect(tmp_path / "data")
        pool = SandboxPool(detect_resource_control(), compile_filters(), host)
        cfg = InstanceConfig("onehop", 1, bundle, "main", "handler", True, 64, 8, 1)
        refusal: BaseException | None = None
        try:
            monkeypatch.setattr(InstanceCgroups, "make", refused)
            try:
                await pool.invoke(cfg, _meta("onehop"), b"{}", 20)
            except SandboxUnavailable as e:
                refusal = e
            monkeypatch.setattr(InstanceCgroups, "make", real_make)
            result = await pool.invoke(cfg, _meta("onehop"), b"{}", 20)
            return refusal, result.body
        finally:
            await pool.close()

    refusal, body = asyncio.run(go())
    assert refusal is not None
    assert "cgroup could not be made" in str(refusal)
    assert "No space left on device" in str(refusal)
    assert json.loads(body) == {"ok": True}
    assert not any(s.broken for s in _spawners.values())


def _echo_bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "fn"
    bundle.mkdir()
    (bundle / "main.py").write_text(ECHO)
    return bundle


@pytest.mark.slow
def test_an_argv_that_cannot_be_built_leaves_no_cgroup_on_the_two_thread_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where two threads build the argv and make the cgroup side by side (v2, or v1 once
    the spawning thread is broken), an argv that fails at once (the bundle cannot be
    staged) refuses the start only once the cgroup is made, so the start's clean-up
    removes it: no cgroup directory is left (none is swept before the node restarts),
    and the next start serves its call."""
    if detect_resource_control().mode is ResourceMode.RLIMIT:
        pytest.skip("no writable cgroup hierarchy here: rlimits only")
    broken = _Spawner()
    broken.broken = True
    monkeypatch.setitem(_spawners, os.getpid(), broken)  # v1 too takes the two threads
    bundle = _echo_bundle(tmp_path)
    real_make, real_release = InstanceCgroups.make, InstanceCgroups.release
    real_argv = bwrap_argv
    released = threading.Event()
    made: list[Cgroup] = []

    def no_argv(spec: SandboxSpec, host: SandboxHost, control_fd: int) -> list[str]:
        raise OSError(28, "No space left on device (staging the bundle)")

    def late_make(self: InstanceCgroups) -> Cgroup | None:
        released.wait(3)  # after the start's clean-up, if it does not wait for this
        cgroup = real_make(self)
        made.extend([cgroup] if cgroup is not None else [])
        return cgroup

    async def noting_release(self: InstanceCgroups) -> None:
        released.set()
        await real_release(self)

    async def go() -> tuple[BaseException | None, bytes]:
        host = SandboxHost.detect(tmp_path / "data")
        pool = SandboxPool(detect_resource_control(), compile_filters(), host)
        cfg = InstanceConfig("twohop", 1, bundle, "main", "handler", True, 64, 8, 1)
        refusal: BaseException | None = None
        try:
            monkeypatch.setattr(instance, "bwrap_argv", no_argv)
            monkeypatch.setattr(InstanceCgroups, "make", late_make)
            monkeypatch.setattr(InstanceCgroups, "release", noting_release)
            try:
                await pool.invoke(cfg, _meta("twohop"), b"{}", 20)
            except (SandboxUnavailable, OSError) as e:
                refusal = e
            for _ in range(100):  # the cgroup's thread, if still out, finishes its make
                if made:
                    break
                await asyncio.sleep(0.05)
            monkeypatch.setattr(instance, "bwrap_argv", real_argv)
            monkeypatch.setattr(InstanceCgroups, "make", real_make)
            result = await pool.invoke(cfg, _meta("twohop"), b"{}", 20)
            return refusal, result.body
        finally:
            await pool.close()

    refusal, body = asyncio.run(go())
    assert refusal is not None
    assert "No space left on device" in str(refusal)
    assert made, "the cgroup was never made"
    left = [d for d in made[0].dirs if d.exists()]
    for d in left:  # what the defect leaves: empty, removed here so no run leaves it
        d.rmdir()
    assert left == []
    assert json.loads(body) == {"ok": True}


def _cgroups_of(tid: int) -> str:
    return Path(f"/proc/self/task/{tid}/cgroup").read_text()


@pytest.mark.slow
def test_a_launcher_that_cannot_start_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A launcher that cannot be executed (not installed), started by the spawning thread
    from inside the sandbox's fresh cgroup, refuses the start with the cause; the thread
    is back in the gateway's cgroups and usable, the cgroup is removed, no descriptor is
    left open, and the next start serves its call."""
    if detect_resource_control().mode is not ResourceMode.CGROUP_V1:
        pytest.skip("the spawning thread's one hop is cgroup v1's")
    bundle = _echo_bundle(tmp_path)
    real_make = InstanceCgroups.make
    made: list[Cgroup] = []

    def noted_make(self: InstanceCgroups) -> Cgroup | None:
        cgroup = real_make(self)
        made.extend([cgroup] if cgroup is not None else [])
        return cgroup

    def missing(self: SandboxHost, function: str = "") -> list[str]:
        return [str(tmp_path / "no-such-launcher")]

    async def go() -> tuple[BaseException | None, set[str], bytes]:
        host = SandboxHost.detect(tmp_path / "data")
        pool = SandboxPool(detect_resource_control(), compile_filters(), host)
        cfg = InstanceConfig("nolauncher", 1, bundle, "main", "handler", True, 64, 8, 1)
        refusal: BaseException | None = None
        try:
            monkeypatch.setattr(InstanceCgroups, "make", noted_make)
            monkeypatch.setattr(SandboxHost, "launcher", missing)
            fds = set(os.listdir("/proc/self/fd"))
            try:
                await pool.invoke(cfg, _meta("nolauncher"), b"{}", 20)
            except SandboxUnavailable as e:
                refusal = e
            left_open = set(os.listdir("/proc/self/fd")) - fds
            monkeypatch.undo()
            result = await pool.invoke(cfg, _meta("nolauncher"), b"{}", 20)
            return refusal, left_open, result.body
        finally:
            await pool.close()

    refusal, left_open, body = asyncio.run(go())
    assert refusal is not None
    assert "no-such-launcher is not installed" in str(refusal)
    assert made
    assert [d for d in made[0].dirs if d.exists()] == []
    assert left_open == set()
    spawner = _spawners[os.getpid()]
    assert not spawner.broken
    (tid,) = [t.native_id for t in threading.enumerate() if t.name.startswith("donjon-spawn")]
    assert tid is not None
    assert _cgroups_of(tid) == _cgroups_of(threading.get_native_id())
    assert json.loads(body) == {"ok": True}


@pytest.mark.slow
def test_a_cgroup_made_in_part_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sandbox's cgroup whose last hierarchy refuses its limit (pids.max: EINVAL), after
    the others' directories were made, refuses the start and leaves no directory of it in
    any hierarchy (none is swept before the node restarts); the next start serves."""
    if detect_resource_control().mode is not ResourceMode.CGROUP_V1:
        pytest.skip("v1: a directory per hierarchy")
    bundle = _echo_bundle(tmp_path)
    real_write = Path.write_text

    def refuses_pids(self: Path, data: str, *args: object, **kwargs: object) -> int:
        if self.name == "pids.max":
            raise OSError(22, "Invalid argument")
        return real_write(self, data)

    async def go() -> tuple[BaseException | None, list[Path], bytes]:
        resources = detect_resource_control()
        pool = SandboxPool(resources, compile_filters(), SandboxHost.detect(tmp_path / "data"))
        cfg = InstanceConfig("halfmade", 1, bundle, "main", "handler", True, 64, 8, 1)
        refusal: BaseException | None = None
        try:
            monkeypatch.setattr(Path, "write_text", refuses_pids)
            try:
                await pool.invoke(cfg, _meta("halfmade"), b"{}", 20)
            except SandboxUnavailable as e:
                refusal = e
            monkeypatch.undo()
            left = [d for b in resources.hierarchies.values() for d in b.glob("halfmade-v1-*")]
            for d in left:  # what the defect leaves: empty, removed here so no run leaves it
                d.rmdir()
            result = await pool.invoke(cfg, _meta("halfmade"), b"{}", 20)
            return refusal, left, result.body
        finally:
            await pool.close()

    refusal, left, body = asyncio.run(go())
    assert refusal is not None
    assert "Invalid argument" in str(refusal)
    assert left == []
    assert json.loads(body) == {"ok": True}


def _children() -> list[int]:
    """This process's live children (zombies, already ended, are not)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_a_start_cancelled_while_its_cgroup_is_made_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start cancelled (a subcall's deadline) while its thread makes the cgroup: that
    thread goes on, so the start's clean-up waits for it. Nothing is left: no launcher
    started for nobody (nor one handed descriptor numbers the gateway had closed and
    may have reused), no cgroup directory; the next start serves its call."""
    if detect_resource_control().mode is ResourceMode.RLIMIT:
        pytest.skip("no writable cgroup hierarchy here: rlimits only")
    bundle = _echo_bundle(tmp_path)
    real_make = InstanceCgroups.make
    entered, go_on = threading.Event(), threading.Event()
    made: list[Cgroup] = []

    def held_make(self: InstanceCgroups) -> Cgroup | None:
        entered.set()
        go_on.wait(10)
        cgroup = real_make(self)
        made.extend([cgroup] if cgroup is not None else [])
        return cgroup

    async def go() -> tuple[bool, list[int], bytes]:
        host = SandboxHost.detect(tmp_path / "data")
        pool = SandboxPool(detect_resource_control(), compile_filters(), host)
        cfg = InstanceConfig("cancelled", 1, bundle, "main", "handler", True, 64, 8, 1)
        try:
            monkeypatch.setattr(InstanceCgroups, "make", held_make)
            before = set(_children())  # an earlier test's, still ending, is not this one's
            call = asyncio.ensure_future(pool.invoke(cfg, _meta("cancelled"), b"{}", 20))
            await asyncio.to_thread(entered.wait, 10)
            call.cancel()
            await asyncio.sleep(0)  # the cancellation reaches the start first
            go_on.set()
            with contextlib.suppress(asyncio.CancelledError):
                await call
            for _ in range(100):  # a launcher started for nobody would be running now
                await asyncio.sleep(0.01)
            children = sorted(set(_children()) - before)
            monkeypatch.undo()
            result = await pool.invoke(cfg, _meta("cancelled"), b"{}", 20)
            return call.cancelled(), children, result.body
        finally:
            go_on.set()
            await pool.close()

    cancelled, children, body = asyncio.run(go())
    assert cancelled
    assert made
    left = [d for d in made[0].dirs if d.exists()]
    for d in left:  # what the defect leaves: removed here so no run leaves it
        d.rmdir()
    assert left == []
    assert children == []
    assert json.loads(body) == {"ok": True}
