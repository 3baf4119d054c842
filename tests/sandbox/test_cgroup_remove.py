"""A sandbox's cgroup removed with a process still in it: the process is killed, the
directory goes (limits.Cgroup.remove, cgroupfs.remove_cgroup_dirs with kill)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from donjon.sandbox import detect_resource_control
from donjon.sandbox.limits import ResourceMode


def test_removing_a_sandbox_cgroup_kills_what_was_left_in_it() -> None:
    """What a cancelled start once left: a process whose parent died before it could ask
    to die with it, alone in the sandbox's cgroup. Before the fix the removal waited out
    its time and left both the directory and the process, for good."""
    resources = detect_resource_control()
    if resources.mode is ResourceMode.RLIMIT:
        pytest.skip("no writable cgroup hierarchy here: rlimits only")
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cgroup = resources.create("removal", 64 * 1024 * 1024, 16, pid=orphan.pid)
        assert cgroup is not None
        assert all(str(orphan.pid) in (d / "cgroup.procs").read_text().split() for d in cgroup.dirs)
        cgroup.remove(wait_s=2.0)
        assert orphan.wait(timeout=5) == -9  # SIGKILL, by the removal
        assert [d for d in cgroup.dirs if d.exists()] == []
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()
