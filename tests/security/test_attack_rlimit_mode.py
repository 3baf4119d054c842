"""On a host with no writable cgroup (rlimits only), a call's processes are bounded all the
same. `detect_resource_control` falls back to rlimits where no cgroup hierarchy is
writable (a container without cgroup delegation); there a worker had RLIMIT_AS, which
bounds one process, and nothing bounded how many: a call forked without end, every
child allowed the function's memory, and drew on the host's process table and memory
past any limit of its manifest (invariant 5). A worker of a sandbox without a pids
cgroup now has RLIMIT_NPROC at the sandbox's process ceiling (its uid is its sandbox's
own, in the sandbox's user namespace), so the bomb stops where the pids cgroup would
have stopped it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from donjon.manifest.policies import RuntimePolicies
from donjon.sandbox import InstanceConfig, SandboxHost, SandboxPool, compile_filters
from donjon.sandbox.callgroups import sandbox_pids_max
from donjon.sandbox.cgroupfs import ResourceMode
from donjon.sandbox.limits import ResourceControl
from sec_support import call_meta

pytestmark = pytest.mark.slow

#: Far past any sandbox's ceiling, few enough not to trouble the host when unbounded.
TRIES = 1000

HANDLER = f"""
import errno
import os
import time


def handler(event, context):
    forked = 0
    while forked < {TRIES}:
        try:
            pid = os.fork()
        except OSError as e:
            return {{"forked": forked, "stopped_by": errno.errorcode.get(e.errno, e.errno)}}
        if pid == 0:
            time.sleep(5)
            os._exit(0)
        forked += 1
    return {{"forked": forked, "stopped_by": None}}
"""


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "invocation"])
def test_fork_bomb_is_capped_without_cgroups(tmp_path: Path, warm: bool) -> None:
    """With rlimits only, a call that forks without end stops at the sandbox's process
    ceiling, and its sandbox serves the next call."""
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "main.py").write_text(HANDLER)
    allow = RuntimePolicies.model_validate({"child_processes": "allow"})
    config = InstanceConfig(
        "rlbomb", 1, tmp_path / "fn", "main", "handler", warm, 64, 8, 2, policies=allow
    )

    async def go() -> list[Any]:
        host = SandboxHost.detect(tmp_path / "data")
        pool = SandboxPool(ResourceControl(ResourceMode.RLIMIT, {}), compile_filters(), host)
        try:
            bomb = await pool.invoke(config, call_meta("rlbomb"), b"{}", 30)
            after = await pool.invoke(config, call_meta("rlbomb"), b"{}", 30)
            return [json.loads(bomb.body), json.loads(after.body)]
        finally:
            await pool.close()

    bomb, after = asyncio.run(go())
    assert bomb["stopped_by"] == "EAGAIN", bomb
    assert bomb["forked"] < sandbox_pids_max(config.calls_per_instance), bomb
    assert after["stopped_by"] == "EAGAIN", after
