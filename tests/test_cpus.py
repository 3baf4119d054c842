"""The CPUs a process may use (cpus.py): its affinity, bounded by its cgroups' CPU quota.

Fake cgroup trees under tmp_path for cgroup v2 and v1 and what is malformed; then this
host's real files, and a real cgroup v1 quota on a real process through the CLI's path.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from donjon.cpus import CGROUP_ROOT, cgroup_cpu_limit, usable_cpus

_AFFINITY = len(os.sched_getaffinity(0))


def _tree(tmp_path: Path, proc: str, files: Mapping[str, str | bytes]) -> tuple[Path, Path]:
    """A fake /sys/fs/cgroup holding `files` (path under it -> content) and a fake
    /proc/self/cgroup holding `proc`: (root, proc file)."""
    root = tmp_path / "cgroup"
    root.mkdir(parents=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    proc_file = tmp_path / "proc-self-cgroup"
    proc_file.write_text(proc)
    return root, proc_file


def _limit(tmp_path: Path, proc: str, files: Mapping[str, str | bytes]) -> int | None:
    return cgroup_cpu_limit(*_tree(tmp_path, proc, files))


def test_v2_quota_is_rounded_up_to_whole_cpus(tmp_path: Path) -> None:
    """cgroup v2 "QUOTA PERIOD": 1.5 CPUs counts as 2, a sliver as 1."""
    assert _limit(tmp_path / "a", "0::/pod\n", {"pod/cpu.max": "150000 100000\n"}) == 2
    assert _limit(tmp_path / "b", "0::/pod\n", {"pod/cpu.max": "1000 100000\n"}) == 1
    assert _limit(tmp_path / "c", "0::/pod\n", {"pod/cpu.max": "400000 50000\n"}) == 8


def test_v2_max_is_no_quota(tmp_path: Path) -> None:
    """cgroup v2 "max 100000" sets no quota."""
    assert _limit(tmp_path, "0::/pod\n", {"pod/cpu.max": "max 100000\n"}) is None


def test_v2_ancestor_quota_limits_its_descendants(tmp_path: Path) -> None:
    """A quota on an ancestor limits a cgroup without one; the smallest over the path wins,
    wherever along it it is."""
    proc = "0::/kubepods/pod1/container\n"
    above = {
        "kubepods/cpu.max": "max 100000\n",
        "kubepods/pod1/cpu.max": "100000 100000\n",
        "kubepods/pod1/container/cpu.max": "max 100000\n",
    }
    assert _limit(tmp_path / "a", proc, above) == 1
    below = {
        "kubepods/cpu.max": "800000 100000\n",
        "kubepods/pod1/cpu.max": "300000 100000\n",
        "kubepods/pod1/container/cpu.max": "200000 100000\n",
    }
    assert _limit(tmp_path / "b", proc, below) == 2
    at_root = {"cpu.max": "100000 100000\n", "kubepods/pod1/container/cpu.max": "max 100000"}
    assert _limit(tmp_path / "c", proc, at_root) == 1


def test_v2_beside_v1_is_read_under_unified(tmp_path: Path) -> None:
    """On a hybrid host cgroup v2 is mounted at /sys/fs/cgroup/unified."""
    assert _limit(tmp_path, "0::/svc\n", {"unified/svc/cpu.max": "300000 100000\n"}) == 3


def test_namespaced_container_reads_its_own_root(tmp_path: Path) -> None:
    """In a cgroup namespace the path is "/": the quota is the mount's own."""
    assert _limit(tmp_path / "a", "0::/\n", {"cpu.max": "200000 100000\n"}) == 2
    v1 = {"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}
    assert _limit(tmp_path / "b", "3:cpu,cpuacct:/\n", v1) == 1


def test_host_path_without_its_directory_falls_to_the_mounted_root(tmp_path: Path) -> None:
    """A container without a cgroup namespace sees the host's path but its own cgroup
    mounted at the root: the missing directories are passed over, the root's quota read."""
    v1 = {"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}
    assert _limit(tmp_path, "4:cpu,cpuacct:/docker/0123abcd\n", v1) == 2


def test_v1_quota_and_period(tmp_path: Path) -> None:
    """cgroup v1: ceil(cpu.cfs_quota_us / cpu.cfs_period_us), in the cpu controller's
    mount named as /proc/self/cgroup lists it (cpu,cpuacct)."""
    files = {
        "cpu,cpuacct/job/cpu.cfs_quota_us": "250000\n",
        "cpu,cpuacct/job/cpu.cfs_period_us": "100000\n",
    }
    assert _limit(tmp_path, "4:cpu,cpuacct:/job\n2:memory:/job\n", files) == 3


def test_v1_cpu_mount_alone(tmp_path: Path) -> None:
    """cgroup v1 with the cpu controller mounted at /sys/fs/cgroup/cpu."""
    files = {"cpu/job/cpu.cfs_quota_us": "50000\n", "cpu/job/cpu.cfs_period_us": "100000\n"}
    assert _limit(tmp_path / "a", "1:cpu:/job\n", files) == 1
    assert _limit(tmp_path / "b", "4:cpu,cpuacct:/job\n", files) == 1


def test_v1_minus_one_is_no_quota(tmp_path: Path) -> None:
    """cgroup v1 cpu.cfs_quota_us -1 sets no quota."""
    files = {"cpu/job/cpu.cfs_quota_us": "-1\n", "cpu/job/cpu.cfs_period_us": "100000\n"}
    assert _limit(tmp_path, "1:cpu:/job\n", files) is None


def test_v1_ancestor_quota_limits_its_descendants(tmp_path: Path) -> None:
    """cgroup v1: a quota on an ancestor limits a cgroup whose own is -1."""
    files = {
        "cpu/slice/cpu.cfs_quota_us": "100000\n",
        "cpu/slice/cpu.cfs_period_us": "100000\n",
        "cpu/slice/job/cpu.cfs_quota_us": "-1\n",
        "cpu/slice/job/cpu.cfs_period_us": "100000\n",
    }
    assert _limit(tmp_path, "1:cpu:/slice/job\n", files) == 1


def test_only_the_cpu_controller_counts(tmp_path: Path) -> None:
    """A v1 hierarchy without the cpu controller (cpuset, cpuacct) is not read."""
    files = {
        "cpuset/job/cpu.cfs_quota_us": "100000\n",
        "cpuset/job/cpu.cfs_period_us": "100000\n",
        "cpu/job/cpu.cfs_quota_us": "-1\n",
        "cpu/job/cpu.cfs_period_us": "100000\n",
    }
    assert _limit(tmp_path, "3:cpuset:/job\n2:cpuacct:/job\n1:cpu:/job\n", files) is None


def test_v1_and_v2_together_the_smaller_wins(tmp_path: Path) -> None:
    """Both hierarchies' quotas are read; the smaller one limits."""
    files = {
        "unified/job/cpu.max": "300000 100000\n",
        "cpu/job/cpu.cfs_quota_us": "200000\n",
        "cpu/job/cpu.cfs_period_us": "100000\n",
    }
    assert _limit(tmp_path, "1:cpu:/job\n0::/job\n", files) == 2


@pytest.mark.parametrize(
    "content",
    [
        "",
        "abc\n",
        "100000\n",
        "100000 100000 1\n",
        "-5 100000\n",
        "0 100000\n",
        "100000 0\n",
        "100000 max\n",
        "1.5 1\n",
        b"\xff\xfe\x00 100000",
    ],
)
def test_malformed_cpu_max_is_no_quota(tmp_path: Path, content: str | bytes) -> None:
    """A cpu.max that is not "max PERIOD" or two positive integers counts as no quota,
    and does not hide a well-formed one above it."""
    assert _limit(tmp_path / "a", "0::/job\n", {"job/cpu.max": content}) is None
    files = {"job/cpu.max": content, "cpu.max": "200000 100000\n"}
    assert _limit(tmp_path / "b", "0::/job\n", files) == 2


@pytest.mark.parametrize(
    ("quota", "period"),
    [("x", "100000"), ("100000", "0"), ("100000", ""), ("", "100000"), ("-2", "100000")],
)
def test_malformed_v1_files_are_no_quota(tmp_path: Path, quota: str, period: str) -> None:
    """cgroup v1 quota or period files that are not positive integers count as no quota."""
    files = {"cpu/job/cpu.cfs_quota_us": quota, "cpu/job/cpu.cfs_period_us": period}
    assert _limit(tmp_path, "1:cpu:/job\n", files) is None


def test_v1_quota_without_its_period_is_no_quota(tmp_path: Path) -> None:
    """A quota whose period cannot be read counts as no quota."""
    assert _limit(tmp_path, "1:cpu:/job\n", {"cpu/job/cpu.cfs_quota_us": "100000"}) is None


def test_unreadable_files_are_no_quota(tmp_path: Path) -> None:
    """A cpu.max that cannot be read (here a directory) and a missing /proc/self/cgroup
    count as no quota, never as an error."""
    root, proc = _tree(tmp_path, "0::/job\n", {"job/cpu.max/x": ""})
    assert cgroup_cpu_limit(root, proc) is None
    assert cgroup_cpu_limit(root, tmp_path / "missing") is None
    assert cgroup_cpu_limit(tmp_path / "no-root", proc) is None


@pytest.mark.parametrize(
    "proc",
    [
        "garbage\n",
        "0:/job\n",
        "0::job\n",
        "0::/../job\n",
        "1:cpu:/../../job\n",
        "",
        "\x00\x01\n",
    ],
)
def test_malformed_proc_self_cgroup_is_no_quota(tmp_path: Path, proc: str) -> None:
    """Lines of /proc/self/cgroup without three fields, with a relative path, or climbing
    out of the namespace (/../) are passed over."""
    files = {
        "job/cpu.max": "100000 100000\n",
        "cpu/job/cpu.cfs_quota_us": "100000\n",
        "cpu/job/cpu.cfs_period_us": "100000\n",
    }
    assert _limit(tmp_path, proc, files) is None


def test_a_cgroup_outside_the_namespace_is_not_read(tmp_path: Path) -> None:
    """A path climbing out of the cgroup namespace (/../x) names a cgroup this process
    cannot see: the namespace root's quota is not its ancestor's and is not taken."""
    files = {
        "cpu.max": "100000 100000\n",
        "cpu/cpu.cfs_quota_us": "100000\n",
        "cpu/cpu.cfs_period_us": "100000\n",
    }
    assert _limit(tmp_path / "a", "0::/../other/job\n", files) is None
    assert _limit(tmp_path / "b", "1:cpu:/../other/job\n", files) is None
    assert _limit(tmp_path / "c", "0::/\n", files) == 1


def test_usable_cpus_is_the_affinity_bounded_by_the_quota(tmp_path: Path) -> None:
    """usable_cpus: the affinity's count with no quota or a large one, the quota's whole
    CPUs when fewer."""
    one = _tree(tmp_path / "a", "0::/job\n", {"job/cpu.max": "100000 100000\n"})
    assert usable_cpus(*one) == 1
    many = _tree(tmp_path / "b", "0::/job\n", {"job/cpu.max": "6400000 100000\n"})
    assert usable_cpus(*many) == _AFFINITY
    none = _tree(tmp_path / "c", "0::/job\n", {"job/cpu.max": "max 100000\n"})
    assert usable_cpus(*none) == _AFFINITY
    if _AFFINITY > 2:
        two = _tree(tmp_path / "d", "0::/job\n", {"job/cpu.max": "200000 100000\n"})
        assert usable_cpus(*two) == 2


def test_this_hosts_files() -> None:
    """With this host's real /proc/self/cgroup and /sys/fs/cgroup: at least 1, at most
    the affinity's count, and the quota's when one is set."""
    limit = cgroup_cpu_limit()
    assert limit is None or limit >= 1
    assert usable_cpus() == max(1, min(_AFFINITY, limit or _AFFINITY))
    assert 1 <= usable_cpus() <= _AFFINITY


_IN_CGROUP = (
    "import os, sys\n"
    "with open(sys.argv[1], 'w') as f:\n"
    "    f.write(str(os.getpid()))\n"
    "from donjon.cli.admin import _verify_processes\n"
    "print(_verify_processes(None))\n"
)


def test_verify_default_honours_a_real_v1_quota_on_an_ancestor() -> None:
    """A process in a real cgroup v1 cpu cgroup whose parent has a 1-CPU quota: `donjon
    audit verify`'s default process count is 1, not its affinity's count."""
    if _AFFINITY < 2:
        pytest.skip("one CPU in the affinity: a quota of 1 would change nothing")
    cpu = CGROUP_ROOT / "cpu"
    if not (cpu / "cpu.cfs_quota_us").exists():
        pytest.skip("no cgroup v1 cpu controller here")
    parent = cpu / f"donjon-cpuquota-test-{secrets.token_hex(4)}"
    inner = parent / "inner"
    try:
        parent.mkdir()
        inner.mkdir()
        (parent / "cpu.cfs_period_us").write_text("100000")
        (parent / "cpu.cfs_quota_us").write_text("100000")
    except OSError as e:
        for d in (inner, parent):
            if d.exists():
                d.rmdir()
        pytest.skip(f"cannot make a cgroup v1 cpu cgroup here: {e}")
    try:
        done = subprocess.run(
            [sys.executable, "-c", _IN_CGROUP, str(inner / "cgroup.procs")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        inner.rmdir()
        parent.rmdir()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
