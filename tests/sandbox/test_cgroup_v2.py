"""cgroup v2 code on the host's real unified mount (tests/README: a hybrid host has one).

On a hybrid host (memory, pids and cpu on v1; an empty cgroup2 mount at
/sys/fs/cgroup/unified) detection picks v1, so these tests drive the v2 code
directly on the unified mount: the node's and each sandbox's cgroups, the move
of bubblewrap and the supervisor into a leaf at hello, per-call cgroups that
workers join through the descriptors the host opened, and the removal of all
of it. The memory and pids knobs need those controllers on v2, which this host
does not have: the limits themselves are exercised on v1 (test_callgroups.py,
tests/security/test_attack_node_budget.py).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from donjon.sandbox import InstanceConfig, SandboxHost, SandboxPool, compile_filters
from donjon.sandbox.budget import Budget
from donjon.sandbox.cgroupfs import v2_root
from donjon.sandbox.limits import ResourceControl, ResourceMode

HANDLER = (
    "def handler(event, context):\n"
    "    return {'cgroup': open('/proc/self/cgroup').read().splitlines()[-1]}\n"
)


@pytest.fixture
def v2_base() -> Iterator[Path]:
    root = v2_root()
    if root is None:
        pytest.skip("no cgroup v2 mount on this host")
    base = root / f"donjon-test-{secrets.token_hex(4)}"
    try:
        base.mkdir()
    except OSError as e:
        pytest.skip(f"the cgroup v2 mount is not writable here: {e}")
    try:
        yield base
    finally:
        for d in sorted(base.rglob("*"), key=lambda p: -len(p.parts)):
            if d.is_dir():
                d.rmdir()
        base.rmdir()


def test_calls_run_in_per_call_cgroups_on_cgroup_v2(tmp_path: Path, v2_base: Path) -> None:
    """On v2 the supervisor sits in the sandbox's leaf and each worker in a call-N cgroup of
    the same sandbox, under the node's cgroup; all of it is removed when the sandbox ends."""
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "main.py").write_text(HANDLER)
    resources = ResourceControl(ResourceMode.CGROUP_V2, {"unified": v2_base})
    resources.open_node(Budget(256 << 20, 64, "test", "test"), "0123abcd")
    node_dir = resources.node_dirs[0]

    async def go() -> tuple[dict[str, object], dict[str, list[str]]]:
        pool = SandboxPool(resources, compile_filters(), SandboxHost.detect(tmp_path / "d"))
        cfg = InstanceConfig("vtwo", 1, tmp_path / "fn", "main", "handler", False, 64, 8, 2)
        meta = {"request_id": "r", "function": "vtwo", "version": 1, "deadline": time.time() + 10}
        try:
            result = await pool.invoke(cfg, json.dumps(meta).encode(), b"{}", 10)
            (sandbox,) = [d for d in node_dir.iterdir() if d.is_dir()]
            for _ in range(100):  # the spare worker is made after the call: wait for it (10 s)
                layout = {
                    d.name: (d / "cgroup.procs").read_text().split()
                    for d in sandbox.iterdir()
                    if d.is_dir()
                }
                if any(v for k, v in layout.items() if k.startswith("call-")):
                    break
                await asyncio.sleep(0.1)
            layout["."] = (sandbox / "cgroup.procs").read_text().split()
            return json.loads(result.body), layout
        finally:
            await pool.close()

    body, layout = asyncio.run(go())
    assert body["cgroup"] == "0::/"  # the worker's own cgroup namespace, rooted at its call-N
    assert layout["."] == []  # no internal process: all moved to the leaf
    assert layout["sandbox"]  # bubblewrap and the supervisor
    calls = {k: v for k, v in layout.items() if k.startswith("call-")}
    assert len(calls) == 2 * 2 + 2
    assert any(calls.values())  # the spare worker waits in its call cgroup
    assert [d for d in node_dir.iterdir() if d.is_dir()] == []
    resources.close_node()
    assert not node_dir.exists()


def test_the_node_cgroup_of_a_dead_node_is_swept(v2_base: Path) -> None:
    """A node that died left its cgroup and a sandbox's inside: the next start removes both."""
    resources = ResourceControl(ResourceMode.CGROUP_V2, {"unified": v2_base})
    dead = v2_base / "node-999999999-0123abcd"  # no such process
    (dead / "fn-v1-0123456789ab" / "call-0").mkdir(parents=True)
    (dead / "fn-v1-0123456789ab" / "sandbox").mkdir()
    assert resources.sweep() == 1
    assert not dead.exists()


def test_a_live_nodes_cgroup_is_never_swept(v2_base: Path) -> None:
    """Another live node's cgroup (its process exists) stays, empty or not."""
    resources = ResourceControl(ResourceMode.CGROUP_V2, {"unified": v2_base})
    live = v2_base / "node-1-0123abcd"  # pid 1 always exists
    (live / "fn-v1-0123456789ab").mkdir(parents=True)
    resources.sweep()
    assert (live / "fn-v1-0123456789ab").exists()
