"""The process that imports a function's handler once and serves its calls.

Mode ``invocation``: fork a fresh child per call; the child gets a private
mount namespace with a new tmpfs at /tmp, drops every capability, and
becomes non-dumpable before the handler runs; it exits after one call.
Mode ``warm``: drop capabilities once, then serve calls in this process,
one at a time.

Control channel (SOCK_SEQPACKET, fd from argv): JSON messages; a call
arrives with its own stream socket as SCM_RIGHTS.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import select
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING

from . import lowlevel
from .call import _trace, run_call
from .frames import send_json

if TYPE_CHECKING:
    from typing import Any

MIB = 1024 * 1024


def _vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _limit_memory(memory_mb: int) -> None:
    limit = _vm_size() + memory_mb * MIB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _load_handler(config: dict[str, Any]) -> Any:
    sys.path[:0] = ["/fn", "/fn/.deps"]
    module = importlib.import_module(config["module"])
    handler = getattr(module, config["function"], None)
    if not callable(handler):
        raise TypeError(f"{config['module']}.{config['function']} is not a callable")
    return handler


def _child(call_sock: socket.socket, handler: Any, config: dict[str, Any]) -> None:
    """Become the isolated process for one call, serve it, exit."""
    code = 0
    try:
        lowlevel.prctl(lowlevel.PR_SET_PDEATHSIG, signal.SIGKILL)
        lowlevel.private_tmp(config["tmp_mb"] * MIB)
        lowlevel.load_seccomp(config["call_filter"])
        lowlevel.drop_all_capabilities()
        lowlevel.prctl(lowlevel.PR_SET_DUMPABLE, 0)
        _limit_memory(config["memory_mb"])
        run_call(call_sock, handler)
    except BaseException:
        code = 70
    finally:
        os._exit(code)


def _serve_invocation(ctrl: socket.socket, handler: Any, config: dict[str, Any]) -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    poller = select.poll()
    poller.register(ctrl.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    children: dict[int, tuple[int, float]] = {}
    timed_out: set[int] = set()
    while True:
        now = time.monotonic()
        wait = min((d for _, d in children.values()), default=now + 3600) - now
        for fd, _ in poller.poll(max(0, int(wait * 1000) + 1)):
            if fd == ctrl.fileno():
                msg, fds, _flags, _addr = socket.recv_fds(ctrl, 4096, 1)
                if not msg:
                    for pid in children:
                        os.kill(pid, signal.SIGKILL)
                    os._exit(0)
                req = json.loads(msg)
                call_sock = socket.socket(fileno=fds[0])
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    ctrl.close()
                    os.close(wake_r)
                    os.close(wake_w)
                    _child(call_sock, handler, config)
                call_sock.close()
                children[pid] = (req["id"], time.monotonic() + float(req["timeout"]))
            else:
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    pass
        now = time.monotonic()
        for pid, (_, deadline) in children.items():
            if deadline <= now and pid not in timed_out:
                os.kill(pid, signal.SIGKILL)
                timed_out.add(pid)
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            call_id, _ = children.pop(pid)
            was_timeout = pid in timed_out
            timed_out.discard(pid)
            send_json(ctrl, _exit_report(call_id, status, was_timeout))


def _exit_report(call_id: int, status: int, timed_out: bool) -> dict[str, Any]:
    if timed_out:
        return {"op": "exit", "id": call_id, "status": "timeout"}
    if os.WIFSIGNALED(status):
        return {"op": "exit", "id": call_id, "status": "signal", "signal": os.WTERMSIG(status)}
    code = os.waitstatus_to_exitcode(status)
    return {"op": "exit", "id": call_id, "status": "ok" if code == 0 else "exit", "code": code}


def _serve_warm(ctrl: socket.socket, handler: Any) -> None:
    while True:
        msg, fds, _flags, _addr = socket.recv_fds(ctrl, 4096, 1)
        if not msg:
            os._exit(0)
        call_sock = socket.socket(fileno=fds[0])
        run_call(call_sock, handler)
        call_sock.close()


def main(ctrl_fd: int) -> None:
    ctrl = socket.socket(fileno=ctrl_fd)
    send_json(ctrl, {"op": "hello"})
    config = json.loads(ctrl.recv(65536))
    warm = config["mode"] == "warm"
    try:
        config["call_filter"] = bytes.fromhex(config["call_filter"])
        if warm:
            lowlevel.load_seccomp(config["call_filter"])
            lowlevel.drop_all_capabilities()
            lowlevel.prctl(lowlevel.PR_SET_DUMPABLE, 0)
            _limit_memory(config["memory_mb"])
        handler = _load_handler(config)
    except BaseException as e:
        send_json(ctrl, {
            "op": "failed",
            "error": f"{type(e).__name__}: {e}"[:2000],
            "trace": _trace(),
        })
        os._exit(1)
    send_json(ctrl, {"op": "ready", "caps": lowlevel.capabilities_held()})
    if warm:
        _serve_warm(ctrl, handler)
    else:
        _serve_invocation(ctrl, handler, config)
