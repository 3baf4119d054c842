"""Under `child_processes: block` a warm call is no longer followed by the leftover check
(runtime/worker.py `may_make_children`): the seccomp filter is the only line. These
attacks try every other way a warm call could make a process, on a worker that has
served calls, and look for a child in the next call (nothing reaps one for them now).

Each is a real call on a real node: clone by the raw system call with flags a filter
could misread (CLONE_VM|CLONE_VFORK, CLONE_PARENT, bits above 32, CLONE_THREAD in the
high word, CLONE_SIGHAND|CLONE_VM without CLONE_THREAD, CLONE_THREAD without CLONE_VM),
vfork, execveat, execve from a thread, the x32 and i386 system call ABIs (x86_64 only),
and a seccomp listener of the function's own, which would let it answer "continue" to
its own fork: the kernel refuses it a second listener while the supervisor holds one.
Under `allow` the same listener attack gets its listener and its child, which shows the
attack itself works.
"""

from __future__ import annotations

import platform
import secrets
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from harness import LiveNode

pytestmark = pytest.mark.slow

_SOURCE = '''\
import ctypes
import mmap
import os
import struct
import threading

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
CALLS = 0


def _in_child():
    libc.syscall(60, 3)  # SYS_exit: the child ends here, whatever memory it shares


def _result(pid):
    if pid == 0:
        _in_child()
    return {"pid": pid, "errno": ctypes.get_errno() if pid < 0 else 0}


def op_clone(event):
    flags = ctypes.c_ulong(event["flags"])
    return _result(libc.syscall(ctypes.c_long(56), flags, ctypes.c_ulong(0), 0, 0, 0))


def op_vfork(event):
    return _result(libc.syscall(58))


def op_execveat(event):
    argv = (ctypes.c_char_p * 2)(b"true", None)
    envp = (ctypes.c_char_p * 1)(None)
    return _result(libc.syscall(322, -100, b"/usr/bin/true", argv, envp, 0))


def op_execve_in_thread(event):
    box = {}

    def run():
        try:
            os.execv("/usr/bin/true", ["true"])
        except OSError as e:
            box["errno"] = e.errno

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return {"pid": -1, "errno": box.get("errno", 0)}


_KEEP = []


def _machine_code(code):
    page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    _KEEP.append(page)
    return ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))


# fork by int 0x80 (i386 number 2); clone(SIGCHLD) by int 0x80 (i386 number 120), rbx kept
_I386 = {
    "i386-fork": bytes.fromhex("b802000000cd80c3"),
    "i386-clone": bytes.fromhex("53b878000000bb1100000031c9cd805bc3"),
}


def op_abi(event):
    """A process call by another ABI, in a thread: a filter that kills it kills the thread."""
    box = {}

    def run():
        if event["abi"] == "x32-fork":
            pid = libc.syscall(ctypes.c_long(0x40000000 | 57))
        else:
            pid = _machine_code(_I386[event["abi"]])()
        box.update(_result(pid))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(5)
    return box or {"pid": -1, "errno": 0, "killed": True}


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_NOTIF = struct.Struct("=QII iIQ6Q")
_RESP = struct.Struct("=QqiI")
_RECV = 0xC0000000 | _NOTIF.size << 16 | 0x21 << 8 | 0
_SEND = 0xC0000000 | _RESP.size << 16 | 0x21 << 8 | 1


def op_own_listener(event):
    """A filter sending fork to a listener of its own, in a thread; another thread
    answers "continue" to each of its notifications; then the filtered thread forks."""
    import fcntl

    # nr == 57 (fork): SECCOMP_RET_USER_NOTIF; else SECCOMP_RET_ALLOW
    insns = ((0x20, 0, 0, 0), (0x15, 0, 1, 57), (0x06, 0, 0, 0x7FC00000), (0x06, 0, 0, 0x7FFF0000))
    program = b"".join(struct.pack("=HBBI", *insn) for insn in insns)
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _Fprog(len(program) // 8, ctypes.addressof(buf))
    box = {"answered": 0}

    def answer(listener):
        while True:
            notif = bytearray(_NOTIF.size)
            try:
                fcntl.ioctl(listener, _RECV, notif, True)
                nid = _NOTIF.unpack(notif)[0]
                # Counted before the answer: once it is sent the fork returns, and the call
                # may end before this thread runs again (ci53d, a loaded machine: pid 4,
                # answered 0).
                box["answered"] += 1
                fcntl.ioctl(listener, _SEND, bytearray(_RESP.pack(nid, 0, 0, 1)), True)
            except OSError:
                return

    def filtered():
        # seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog)
        listener = libc.syscall(317, ctypes.c_ulong(1), ctypes.c_ulong(8), ctypes.byref(prog))
        box["listener_errno"] = ctypes.get_errno() if listener < 0 else 0
        if listener >= 0:
            threading.Thread(target=answer, args=(listener,), daemon=True).start()
        box.update(_result(libc.syscall(57)))

    thread = threading.Thread(target=filtered)
    thread.start()
    thread.join(5)
    return box


def op_children(event):
    """Any child of this worker: "none", "running" or "exited" (a zombie, reaped here)."""
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return {"children": "none", "calls": CALLS}
    return {"children": "running" if pid == 0 else "exited", "calls": CALLS}


def handler(event, context):
    global CALLS
    CALLS += 1
    if event["op"] == "echo":
        return {"calls": CALLS}
    return globals()["op_" + event["op"]](event)
'''

_SIGCHLD = 17
_CLONE_VM = 0x100
_CLONE_SIGHAND = 0x800
_CLONE_VFORK = 0x4000
_CLONE_PARENT = 0x8000
_CLONE_THREAD = 0x10000
_EPERM, _EINVAL, _EBUSY = 1, 22, 16

_X86_64 = pytest.mark.skipif(platform.machine() != "x86_64", reason="x86_64 system calls")


def _deploy(node: LiveNode, tmp: pytest.TempPathFactory, policy: str) -> Iterator[str]:
    fn = f"sec-warm-procs-{policy}-{secrets.token_hex(3)}"
    src = tmp.mktemp(fn)
    (src / "main.py").write_text(_SOURCE)
    (src / "donjon.yaml").write_text(
        f"name: {fn}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\nisolation: warm\n"
        f"limits: {{concurrency: 1}}\npolicies: {{child_processes: {policy}}}\n"
    )
    node.deploy(src)
    try:
        yield fn
    finally:
        with node.client() as c:
            c.delete(f"/v1/functions/{fn}")
        shutil.rmtree(src, ignore_errors=True)


@pytest.fixture(scope="module")
def blocked(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A warm function under `child_processes: block`, written out as the default is."""
    yield from _deploy(node, tmp_path_factory, "block")


@pytest.fixture(scope="module")
def allowed(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _deploy(node, tmp_path_factory, "allow")


def _call(node: LiveNode, fn: str, event: dict[str, Any]) -> dict[str, Any]:
    r = node.invoke(fn, event)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def _attack_then_look(node: LiveNode, fn: str, event: dict[str, Any]) -> dict[str, Any]:
    """Prime the worker, attack, and check the same worker, next call, has no child."""
    before = _call(node, fn, {"op": "echo"})["calls"]
    tried = _call(node, fn, event)
    after = _call(node, fn, {"op": "children"})
    assert tried.get("pid", -1) < 0, tried  # no process was made
    assert after == {"children": "none", "calls": before + 2}, (tried, after)
    return tried


@_X86_64
@pytest.mark.parametrize(
    ("flags", "refused"),
    [
        (_CLONE_VM | _CLONE_VFORK | _SIGCHLD, _EPERM),
        (_CLONE_PARENT | _SIGCHLD, _EPERM),
        (0xFFFFFFFF00000000 | _SIGCHLD, _EPERM),
        (_CLONE_THREAD << 32 | _SIGCHLD, _EPERM),
        (_CLONE_SIGHAND | _CLONE_VM | _SIGCHLD, _EPERM),
        (_CLONE_THREAD | _CLONE_SIGHAND, _EINVAL),
    ],
    ids=["vm-vfork", "parent", "high-bits", "thread-in-high-word", "sighand-vm", "thread-no-vm"],
)
def test_raw_clone_with_flags_a_filter_could_misread_makes_no_process(
    node: LiveNode, blocked: str, flags: int, refused: int
) -> None:
    """clone by the raw system call, each flag combination, on a warm worker: refused."""
    tried = _attack_then_look(node, blocked, {"op": "clone", "flags": flags})
    assert tried["errno"] == refused, tried


@_X86_64
@pytest.mark.parametrize("op", ["vfork", "execveat", "execve_in_thread"])
def test_vfork_execveat_and_execve_from_a_thread_are_refused(
    node: LiveNode, blocked: str, op: str
) -> None:
    """vfork and execveat by raw system call, execve from a second thread: EPERM."""
    assert _attack_then_look(node, blocked, {"op": op})["errno"] == _EPERM


@_X86_64
@pytest.mark.parametrize("abi", ["x32-fork", "i386-fork", "i386-clone"])
def test_process_call_by_another_abi_makes_no_process(
    node: LiveNode, blocked: str, abi: str
) -> None:
    """fork or clone by the x32 or i386 ABI (int 0x80): no process; the worker serves on."""
    _attack_then_look(node, blocked, {"op": "abi", "abi": abi})


@_X86_64
def test_seccomp_listener_of_the_functions_own_cannot_let_its_fork_through(
    node: LiveNode, blocked: str
) -> None:
    """The function cannot install a listener of its own to answer "continue" to its fork:
    the kernel says EBUSY while the supervisor holds the worker's listener."""
    tried = _attack_then_look(node, blocked, {"op": "own_listener"})
    assert tried["listener_errno"] == _EBUSY, tried
    assert tried["answered"] == 0 and tried["errno"] == _EPERM, tried


@_X86_64
def test_the_listener_attack_works_where_no_listener_is_held(node: LiveNode, allowed: str) -> None:
    """Under `allow` (no listener held) the same attack gets its listener and answers its
    own fork through it: the refusal above is the supervisor's listener, not a broken test."""
    tried = _call(node, allowed, {"op": "own_listener"})
    assert tried["listener_errno"] == 0, tried
    assert tried["answered"] == 1 and tried["pid"] > 0, tried
