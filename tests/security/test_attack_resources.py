"""Invariant 5: resource abuse ends that invocation and leaves the platform serving."""

from __future__ import annotations

import threading
import time

import cgroupfs
from harness import LiveNode
from sec_support import Ready, in_both_modes

HOGS = in_both_modes("sec-hog")


def _serving(node: LiveNode, fn: str) -> None:
    r = node.invoke(fn, {"op": "noop"})
    assert r.status_code == 200, r.text
    assert node.invoke("probe", {"op": "echo"}).status_code == 200


@HOGS
def test_fork_bomb_is_capped(node: LiveNode, fn: str) -> None:
    """Forking without end stops at the sandbox's process limit; everything keeps serving."""
    r = node.invoke(fn, {"op": "forkbomb"})
    if r.status_code == 200:
        out = r.json()
        assert out["forked"] < 1000, out
        assert out["stopped_by"] is not None
    else:
        assert r.status_code in (502, 504, 507), r.text
    _serving(node, fn)


@HOGS
def test_filling_tmp_stops_at_its_size(node: LiveNode, fn: str) -> None:
    """/tmp is size-capped: writing without end hits ENOSPC well before a gigabyte."""
    r = node.invoke(fn, {"op": "fill_tmp"})
    if r.status_code == 200:
        out = r.json()
        assert out["stopped_by"] in ("ENOSPC", "ENOMEM", "EFBIG"), out
        assert out["written"] <= 64 << 20
    else:
        assert r.status_code in (502, 507), r.text
    _serving(node, fn)


@HOGS
def test_cpu_spin_is_stopped_at_the_timeout(node: LiveNode, fn: str) -> None:
    """A handler spinning on the CPU is killed at timeout_s with 504; the next call works."""
    assert node.invoke(fn, {"op": "spin"}).status_code == 504
    _serving(node, fn)


def test_shared_memory_does_not_survive_the_call(node: LiveNode, started: Ready) -> None:
    """A System V shared memory segment made by one call is gone for the next."""
    started("sec-hog")
    made = node.invoke("sec-hog", {"op": "shm_make"}).json()
    assert made["shmid"] >= 0
    assert node.invoke("sec-hog", {"op": "shm_list"}).json()["segments"] == []


@HOGS
def test_fork_bomb_does_not_take_other_calls_down(node: LiveNode, fn: str) -> None:
    """While one call holds its process limit full, another call can still fork and finish."""
    results: dict[str, int] = {}

    def bomb() -> None:
        results["bomb"] = node.invoke(fn, {"op": "forkbomb", "hold": 1.5}).status_code

    thread = threading.Thread(target=bomb)
    thread.start()
    # Until the bomb's cgroup (the sandbox's, or the call's own) is full, bounded:
    # the next call is made while the bomb holds every process it may have.
    seen_cgroups, full = False, False
    for _ in range(600):
        dirs = cgroupfs.pids_cgroups(node.proc.pid, fn)
        seen_cgroups = seen_cgroups or bool(dirs)
        if cgroupfs.pids_full(dirs) or not thread.is_alive():
            full = cgroupfs.pids_full(dirs)
            break
        time.sleep(0.05)
    assert full or not seen_cgroups, f"the bomb never filled its pids cgroup: {results}"
    other = node.invoke(fn, {"op": "sleep", "s": 0.2, "fork": True})
    thread.join()
    assert other.status_code == 200, other.text
    assert results["bomb"] in (200, 502, 504)
    _serving(node, fn)
