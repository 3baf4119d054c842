"""A cold start joins its cgroups as before, only faster (cgroup v1's `tasks`, issue 14).

The sandbox (bubblewrap's launcher, between fork and exec) and each worker's
parent join their cgroups by writing "0" to descriptors the host opened; on
v1 these are now `tasks`, which moves the writer's one thread: these tests
check, from the host, that every thread of every process of a sandbox is in
its cgroups, and that the limits hold for a handler's import on a cold start.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

import cgroupfs
from donjon.sandbox import (
    InstanceConfig,
    SandboxError,
    SandboxHost,
    SandboxPool,
    compile_filters,
    detect_resource_control,
)
from donjon.sandbox.cgroupfs import open_joins
from donjon.sandbox.limits import ResourceMode

#: 400 MiB of memfd pages at import: no RLIMIT_AS sees them (they are never mapped), so
#: only the cgroups can stop them (a call's ceiling is 64 + 8 + 32 MiB here).
HOG_AT_IMPORT = (
    "import os\n"
    "_fd = os.memfd_create('at-import', 0)\n"
    "_chunk = b'x' * (1 << 20)\n"
    "for _ in range(400):\n"
    "    os.write(_fd, _chunk)\n"
    "def handler(event, context):\n"
    "    return {'survived': True}\n"
)
ECHO = "def handler(event, context):\n    return {'ok': True}\n"


def _cgroups_in_force() -> None:
    if detect_resource_control().mode is ResourceMode.RLIMIT:
        pytest.skip("no writable cgroup hierarchy here: rlimits only")


def _meta(function: str) -> bytes:
    meta = {"request_id": "r", "function": function, "version": 1, "deadline": time.time() + 30}
    return json.dumps(meta).encode()


def _bundle(tmp_path: Path, source: str) -> Path:
    bundle = tmp_path / "fn"
    bundle.mkdir()
    (bundle / "main.py").write_text(source)
    return bundle


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "invocation"])
def test_memory_filled_at_import_on_a_cold_start_is_stopped(tmp_path: Path, warm: bool) -> None:
    """A handler that fills 400 MiB of memfd pages at import, on its sandbox's first start,
    is killed by its cgroups: the call fails, nothing of the import survives."""
    _cgroups_in_force()
    bundle = _bundle(tmp_path, HOG_AT_IMPORT)

    async def go() -> object:
        host = SandboxHost.detect(tmp_path / "data")
        pool = SandboxPool(detect_resource_control(), compile_filters(), host)
        cfg = InstanceConfig("coldhog", 1, bundle, "main", "handler", warm, 64, 8, 1)
        try:
            return await pool.invoke(cfg, _meta("coldhog"), b"{}", 20)
        except SandboxError as e:
            return e
        finally:
            await pool.close()

    outcome = asyncio.run(go())
    assert isinstance(outcome, SandboxError), outcome


def test_every_thread_of_a_sandbox_is_in_its_cgroups(tmp_path: Path) -> None:
    """bubblewrap, the supervisor and the worker (made by one clone: a function without
    egress has no worker's parent): every thread of each is in the sandbox's cgroup in
    each hierarchy, and the worker's in a per-call one."""
    _cgroups_in_force()
    bundle = _bundle(tmp_path, ECHO)
    resources = detect_resource_control()

    async def go() -> list[list[dict[str, str]]]:
        pool = SandboxPool(resources, compile_filters(), SandboxHost.detect(tmp_path / "data"))
        cfg = InstanceConfig("cgwho", 1, bundle, "main", "handler", True, 64, 8, 1)
        mine = os.getpid()
        # Children this process had before (a session's scan helper, say) are not the sandbox's.
        before = set(cgroupfs.descendants(mine))
        try:
            await pool.invoke(cfg, _meta("cgwho"), b"{}", 20)
            return [
                cgroupfs.thread_cgroups(p)
                for p in cgroupfs.descendants(mine)
                if p != mine and p not in before
            ]
        finally:
            await pool.close()

    processes = asyncio.run(go())
    assert len(processes) >= 3, processes  # bubblewrap, supervisor, worker
    hierarchies = ["memory", "pids"] if resources.mode is ResourceMode.CGROUP_V1 else [""]
    if "cpu" in resources.hierarchies:
        hierarchies.append("cpu")
    in_calls = 0
    for threads in processes:
        for paths in threads:
            for controller in hierarchies:
                assert "/cgwho-v1-" in paths[controller], (controller, paths)
        in_calls += all("/call-" in threads[0][c] for c in hierarchies if c != "cpu")
    assert in_calls >= 1, processes  # the worker


def test_the_gateway_stays_in_its_own_cgroups_after_a_start(tmp_path: Path) -> None:
    """The thread that starts a sandbox inside its cgroups goes back: after a start, no
    thread of the starting process is in a sandbox's cgroup, and each is where it was."""
    _cgroups_in_force()
    bundle = _bundle(tmp_path, ECHO)
    before = {tuple(sorted(p.items())) for p in cgroupfs.thread_cgroups(os.getpid())}

    async def go() -> list[dict[str, str]]:
        pool = SandboxPool(
            detect_resource_control(), compile_filters(), SandboxHost.detect(tmp_path / "data")
        )
        cfg = InstanceConfig("cghome", 1, bundle, "main", "handler", False, 64, 8, 1)
        try:
            await pool.invoke(cfg, _meta("cghome"), b"{}", 20)
            return cgroupfs.thread_cgroups(os.getpid())
        finally:
            await pool.close()

    after = asyncio.run(go())
    assert all("/cghome-v1-" not in path for paths in after for path in paths.values()), after
    assert {tuple(sorted(p.items())) for p in after} <= before, (before, after)


def test_joins_open_tasks_on_v1_and_cgroup_procs_elsewhere(tmp_path: Path) -> None:
    """open_joins picks a directory's `tasks` (cgroup v1) and else its cgroup.procs."""
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    for d in (v1, v2):
        d.mkdir()
        (d / "cgroup.procs").write_text("")
    (v1 / "tasks").write_text("")
    fds = open_joins([v1, v2])
    try:
        assert [os.readlink(f"/proc/self/fd/{fd}") for fd in fds] == [
            str(v1 / "tasks"),
            str(v2 / "cgroup.procs"),
        ]
    finally:
        for fd in fds:
            os.close(fd)
