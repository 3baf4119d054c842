"""Invariant 2, processes and privileges: a function sees no other process, holds no privilege,
cannot leave its namespaces, and has no descriptor that leads out of its call."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
from pathlib import Path

from harness import LiveNode
from sec_support import ATTACKERS, PROBES, attack

_RUNTIME = "/opt/donjon/donjon_runtime/boot.py"
_ALLOWED_ENV = {"HOME", "TMPDIR", "LANG", "PATH"}
#: What Lambda's runtime defines, each derived from the function's own manifest
#: (docs/lambda.md, "The environment"); their values are checked below.
_LAMBDA_ENV = {
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "LAMBDA_TASK_ROOT",
    "_HANDLER",
}


@ATTACKERS
def test_sees_only_the_processes_of_its_own_sandbox(node: LiveNode, fn: str) -> None:
    """Every visible process is this sandbox's (bwrap or the runtime); no host process shows."""
    result = attack(node, fn, "processes")
    seen, comms = result["processes"], result["comms"]
    for pid, cmdline in seen.items():
        exited = cmdline == "" and comms.get(pid, "").startswith("python")  # an unreaped call
        assert cmdline.startswith("bwrap ") or _RUNTIME in cmdline or exited, (pid, cmdline)
    assert len(seen) < len([p for p in os.listdir("/proc") if p.isdigit()])


@PROBES
def test_pid_namespace_is_tiny(node: LiveNode, fn: str) -> None:
    """The pid namespace holds a handful of processes, and not the host's pid 1 or the gateway."""
    pids = node.invoke(fn, {"op": "pids"}).json()["pids"]
    host_pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    assert len(pids) < len(host_pids)
    gateway = node.invoke(fn, {"op": "exists", "path": f"/proc/{node.proc.pid}/cwd"}).json()
    assert gateway["exists"] is False or node.proc.pid in pids


@PROBES
def test_environment_is_cleared(node: LiveNode, fn: str) -> None:
    """The handler's environment holds no DONJON_* variable and nothing of the host's."""
    env = node.invoke(fn, {"op": "env"}).json()["env"]
    assert set(env) - {"PWD"} <= _ALLOWED_ENV | _LAMBDA_ENV, env
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == fn
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "64"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"].isdigit()
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/donjon/functions/{fn}"
    assert (env["LAMBDA_TASK_ROOT"], env["_HANDLER"]) == ("/fn", "main.handler")
    assert env.get("PWD", "/fn") == "/fn"
    assert not [k for k in env if k.startswith("DONJON")]
    assert node.admin_key not in str(env)
    assert str(node.data_dir) not in str(env)


@PROBES
def test_handler_runs_without_uid_0_or_capabilities(node: LiveNode, fn: str) -> None:
    """The handler is not uid 0 and its effective capability set is empty."""
    who = node.invoke(fn, {"op": "whoami"}).json()
    assert who["uid"] != 0
    assert who["gid"] != 0
    assert who["caps"] == "0000000000000000"


@ATTACKERS
def test_handler_holds_no_capability_in_any_set(node: LiveNode, fn: str) -> None:
    """Permitted, inheritable, ambient and bounding sets are empty too; no_new_privs is set."""
    status = attack(node, fn, "identity")["status"]
    for field in ("CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd"):
        assert int(status[field][0], 16) == 0, (field, status[field])
    assert status["NoNewPrivs"] == ["1"]


@ATTACKERS
def test_sandbox_uid_is_not_host_root(node: LiveNode, fn: str) -> None:
    """Seen from the host, every sandbox process runs as an unprivileged uid and gid.

    (Inside, /proc/self/uid_map is relative to bubblewrap's intermediate user
    namespace, so the host's own view of the processes is what counts.)
    """
    attack(node, fn, "identity")  # the function's sandbox is running
    node_id = hashlib.sha256(str(node.data_dir.resolve()).encode()).hexdigest()[:16]
    ours = (str(node.data_dir).encode(), f"/sandbox/{node_id}/".encode())
    found = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        if b"donjon_runtime/boot.py" not in cmdline or not any(o in cmdline for o in ours):
            continue  # another node's sandbox (say, a benchmark running beside the tests)
        found += 1
        ids = {
            line.split(":")[0]: line.split()[1:]
            for line in status.splitlines()
            if line.startswith(("Uid:", "Gid:"))
        }
        assert "0" not in ids["Uid"], (entry, ids)
        assert "0" not in ids["Gid"], (entry, ids)
    assert found > 0


@ATTACKERS
def test_cannot_create_user_or_other_namespaces(node: LiveNode, fn: str) -> None:
    """unshare(2) of a user, mount, network or pid namespace is refused."""
    result = attack(node, fn, "unshare")
    assert [kind for kind, r in result.items() if r == "ok"] == [], result


@ATTACKERS
def test_cannot_run_unshare_to_become_root(node: LiveNode, fn: str) -> None:
    """`unshare -U -r` (and `unshare -m`) from the sandbox's own /usr/bin fail."""
    for argv in (
        ["unshare", "-U", "-r", "id", "-u"],
        ["unshare", "-m", "true"],
        ["unshare", "-n", "true"],
    ):
        done = attack(node, fn, "run", argv=argv)
        assert done["rc"] != 0, (argv, done)


@ATTACKERS
def test_cannot_mount(node: LiveNode, fn: str) -> None:
    """mount(2) of a tmpfs, and remounting the bundle read-write, are refused."""
    result = attack(node, fn, "mount")
    assert result["tmpfs"] != "ok"
    assert result["remount_fn_rw"] != "ok"


@ATTACKERS
def test_cannot_ptrace_other_processes(node: LiveNode, fn: str) -> None:
    """PTRACE_ATTACH to any other visible process (the zygote, bwrap's init) is refused."""
    result = attack(node, fn, "ptrace")
    assert result
    assert [pid for pid, r in result.items() if r == "attached"] == [], result


@ATTACKERS
def test_cannot_open_the_memory_of_other_processes(node: LiveNode, fn: str) -> None:
    """/proc/<pid>/mem of any other visible process cannot be opened for writing."""
    result = attack(node, fn, "proc_mem")
    assert result
    assert [pid for pid, r in result.items() if r == "opened"] == [], result


@PROBES
def test_hostname_is_not_the_hosts(node: LiveNode, fn: str) -> None:
    """The sandbox has its own UTS namespace."""
    who = node.invoke(fn, {"op": "whoami"}).json()
    assert who["hostname"] != socket.gethostname()


@ATTACKERS
def test_cannot_see_or_signal_the_gateway(node: LiveNode, fn: str) -> None:
    """The gateway's pid is unknown inside: kill(pid, 0) and a harmless SIGCONT both miss."""
    gateway = node.proc.pid
    inside = attack(node, fn, "processes")["processes"]
    if str(gateway) in inside:  # the same number may name a sandbox process
        assert _RUNTIME in inside[str(gateway)] or inside[str(gateway)].startswith("bwrap ")
        return
    result = attack(node, fn, "kill", pids=[gateway], signal=int(signal.SIGCONT))
    assert result[str(gateway)] == "ESRCH"
    assert node.invoke(fn, {"op": "echo"}).status_code == 200


@ATTACKERS
def test_handler_holds_no_descriptor_beyond_its_call(node: LiveNode, fn: str) -> None:
    """Past 0, 1, 2 the only socket is the call's own; no pipe, file or directory is inherited."""
    listing = attack(node, fn, "fds")
    call = listing["call_socket"]
    assert call > 2
    leaks = {}
    for fd, desc in listing["fds"].items():
        target = desc["target"]
        if int(fd) in (0, 1, 2, call):
            continue
        if target in ("/dev/null",) or target.startswith("/memfd:output"):
            continue  # the runtime's own output capture
        if fn == "sec-attack-warm" and int(fd) == 3 and desc.get("type") == socket.SOCK_SEQPACKET:
            continue  # a warm worker's inbox, send side shut (see the control channel test)
        leaks[fd] = desc
    assert leaks == {}


@ATTACKERS
def test_cannot_write_fake_frames_on_the_control_channel(node: LiveNode, fn: str) -> None:
    """No SOCK_SEQPACKET socket the handler holds accepts a frame.

    The gateway's channel is held by the supervisor only; a warm worker keeps
    its inbox (it must receive the next call), with the sending side shut.
    """
    result = attack(node, fn, "control_channel")
    sent = [fd for fd, outcome in result["seqpacket_sockets"].items() if outcome == "sent"]
    assert sent == [], result
    if fn == "sec-attack":
        assert result["seqpacket_sockets"] == {}
    assert node.invoke(fn, {"op": "echo"}).status_code == 200
