"""The seccomp filters, seen from inside a real sandbox in both isolation modes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness import FUNCTIONS, LiveNode

#: A few of the calls the syscalls function makes (it makes each of its CALLS; all must fail).
SOME_REFUSED = {"ptrace_attach_1", "memfd_secret", "open_tree_attr", "listmount", "mptcp"}


@pytest.fixture(scope="module")
def warm_syscalls(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> str:
    dest = tmp_path_factory.mktemp("syscalls-warm")
    shutil.copytree(FUNCTIONS / "syscalls", dest, dirs_exist_ok=True)
    text = (dest / "donjon.yaml").read_text().replace("name: syscalls", "name: syscalls-warm")
    (dest / "donjon.yaml").write_text(text + "isolation: warm\n")
    node.deploy(Path(dest))
    return "syscalls-warm"


@pytest.mark.parametrize("mode", ["invocation", "warm"])
def test_dangerous_syscalls_are_refused(node: LiveNode, warm_syscalls: str, mode: str) -> None:
    """Namespaces, mount, ptrace, keyctl, bpf, io_uring, setns, chroot, modify_ldt, a pair
    of sockets of a refused family, memfd_secret, and calls newer than some libseccomp
    (open_tree_attr, listmount, statmount, mseal, the lsm_* calls, the *xattrat calls,
    file_getattr and file_setattr), and IP sockets of protocols other than TCP and UDP
    (MPTCP, UDP-Lite, SCTP) all fail with EPERM; TCP and UDP sockets open."""
    name = "syscalls" if mode == "invocation" else warm_syscalls
    r = node.invoke(name, {})
    assert r.status_code == 200, r.text
    out = r.json()
    calls = out["calls"]
    assert calls.keys() >= SOME_REFUSED
    for call, got in calls.items():
        assert got["rc"] == -1, (call, got)
        assert got["errno"] in (1, 38), (call, got)  # EPERM (or ENOSYS)
    assert out["netlink"] != "opened" and out["packet"] != "opened"
    assert [out[s] for s in ("tcp", "tcp_named", "udp_named", "unix")] == ["opened"] * 4
    assert out["seccomp"] == "2"
    assert out["fork"] == 7


@pytest.mark.parametrize("name", ["probe", "probe-warm"])
def test_worker_limits(node: LiveNode, name: str) -> None:
    """Workers run with an address-space limit and no core dumps; one-call workers also
    with a CPU-time limit (a spare whose import spins cannot burn a core for long)."""
    limits = node.invoke(name, {"op": "rlimits"}).json()
    assert limits["RLIMIT_AS"][1] > 0
    assert limits["RLIMIT_CORE"] == [0, 0]
    cpu = limits["RLIMIT_CPU"][1]
    if name == "probe":
        assert 0 < cpu <= 60
    else:
        assert cpu == -1
