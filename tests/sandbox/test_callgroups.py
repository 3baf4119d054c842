"""Per-call cgroups on the host (cgroup v1): each call's share of processes, and the sweep."""

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
    SandboxHost,
    SandboxPool,
    compile_filters,
    detect_resource_control,
)
from donjon.sandbox.callgroups import CALL_PIDS, CallGroups, sandbox_pids_max
from donjon.sandbox.limits import ResourceMode

HANDLER = "def handler(event, context):\n    return {}\n"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "main.py").write_text(HANDLER)
    return tmp_path


def _v1_only() -> None:
    if detect_resource_control().mode is not ResourceMode.CGROUP_V1:
        pytest.skip("per-call cgroups exist on cgroup v1 only")


def test_each_call_slot_has_its_own_share_of_processes(bundle: Path) -> None:
    """A sandbox's pids.max is every call's share plus the supervisor's room; each per-call
    pids cgroup has one share (read from the host's cgroupfs)."""
    _v1_only()
    concurrency = 3

    async def go() -> list[tuple[str, str]]:
        resources = detect_resource_control()
        pool = SandboxPool(resources, compile_filters(), SandboxHost.detect(bundle.parent / "d"))
        cfg = InstanceConfig("callpids", 1, bundle, "main", "handler", False, 64, 8, concurrency)
        meta = {"request_id": "r", "function": "callpids", "version": 1}
        try:
            meta["deadline"] = time.time() + 10
            await pool.invoke(cfg, json.dumps(meta).encode(), b"{}", 5)
            dirs = cgroupfs.pids_cgroups(os.getpid(), "callpids")
            return [(d.name, (d / "pids.max").read_text().strip()) for d in dirs]
        finally:
            await pool.close()

    found = asyncio.run(go())
    sandbox, calls = found[0], found[1:]
    assert sandbox[1] == str(sandbox_pids_max(concurrency)) == str(concurrency * CALL_PIDS + 16)
    assert len(calls) == 2 * concurrency + 2
    assert {limit for _, limit in calls} == {str(CALL_PIDS)}


def test_a_sweep_removes_left_behind_per_call_cgroups_in_every_hierarchy() -> None:
    """A sandbox's cgroups left behind empty (a crash) go at the next sweep, its per-call
    memory and pids cgroups with them."""
    _v1_only()
    resources = detect_resource_control()
    cgroup = resources.create("callpids-orphan", 64 << 20, 32)
    assert cgroup is not None
    groups = CallGroups.make(cgroup, 2, 16 << 20)
    assert groups is not None
    assert {d.parent.parent.parent.name for d in groups.dirs} == {"memory", "pids"}
    old = time.time() - 3600
    for d in cgroup.dirs:
        os.utime(d, (old, old))  # empty for an hour: nobody's
    resources.sweep()
    assert [d for d in (*groups.dirs, *cgroup.dirs) if d.exists()] == []
