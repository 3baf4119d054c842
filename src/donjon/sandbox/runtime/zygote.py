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


def _child(handoff: socket.socket, handler: Any, config: dict[str, Any]) -> None:
    """Become an isolated process for one call, wait for it, serve it, exit.

    The process is made ahead of its call (the zygote keeps one spare), so
    isolating it costs the caller nothing. Non-dumpable and the memory limit
    are inherited from the zygote; here come the private /tmp, the call
    filter and dropping every capability, all before any call data arrives.
    """
    code = 0
    try:
        lowlevel.prctl(lowlevel.PR_SET_PDEATHSIG, signal.SIGKILL)
        lowlevel.private_tmp(config["tmp_mb"] * MIB)
        lowlevel.load_seccomp(config["call_filter"])
        lowlevel.drop_all_capabilities(config["bounding"])
        msg, fds, _flags, _addr = socket.recv_fds(handoff, 16, 1)
        handoff.close()
        if msg and fds:
            run_call(socket.socket(fileno=fds[0]), handler)
    except BaseException:
        code = 70
    finally:
        os._exit(code)


class _Spare:
    """The next call's process, forked and isolated before the call arrives."""

    def __init__(self, ctrl: socket.socket, wake: tuple[int, int], handler: Any,
                 config: dict[str, Any]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            ctrl.close()
            os.close(wake[0])
            os.close(wake[1])
            ours.close()
            _child(theirs, handler, config)
        theirs.close()
        self.pid = pid
        self.sock = ours

    def hand(self, call_fd: int) -> None:
        try:
            socket.send_fds(self.sock, [b"call"], [call_fd])
        finally:
            self.sock.close()


class _Supervisor:
    """Hands calls to spare processes, enforces deadlines, reports exits."""

    def __init__(self, ctrl: socket.socket, handler: Any, config: dict[str, Any]) -> None:
        self.ctrl = ctrl
        self.handler = handler
        self.config = config
        self.wake = os.pipe()
        os.set_blocking(self.wake[0], False)
        os.set_blocking(self.wake[1], False)
        signal.set_wakeup_fd(self.wake[1])
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.children: dict[int, tuple[int, float]] = {}
        self.timed_out: set[int] = set()
        self.spare = self._fork_spare()

    def _fork_spare(self) -> _Spare:
        return _Spare(self.ctrl, self.wake, self.handler, self.config)

    def serve(self) -> None:
        poller = select.poll()
        poller.register(self.ctrl.fileno(), select.POLLIN)
        poller.register(self.wake[0], select.POLLIN)
        while True:
            now = time.monotonic()
            wait = min((d for _, d in self.children.values()), default=now + 3600) - now
            for fd, _ in poller.poll(max(0, int(wait * 1000) + 1)):
                if fd == self.ctrl.fileno():
                    self._on_call()
                else:
                    try:
                        os.read(self.wake[0], 4096)
                    except BlockingIOError:
                        pass
            self._kill_overdue()
            self._reap()

    def _on_call(self) -> None:
        msg, fds, _flags, _addr = socket.recv_fds(self.ctrl, 4096, 1)
        if not msg:  # the gateway is gone: so is everything here
            for pid in (*self.children, self.spare.pid):
                os.kill(pid, signal.SIGKILL)
            os._exit(0)
        req = json.loads(msg)
        try:
            self.spare.hand(fds[0])
        except OSError:
            pass  # the spare died; its exit is reported as this call's
        os.close(fds[0])
        self.children[self.spare.pid] = (req["id"], time.monotonic() + float(req["timeout"]))
        self.spare = self._fork_spare()

    def _kill_overdue(self) -> None:
        now = time.monotonic()
        for pid, (_, deadline) in self.children.items():
            if deadline <= now and pid not in self.timed_out:
                os.kill(pid, signal.SIGKILL)
                self.timed_out.add(pid)

    def _reap(self) -> None:
        while True:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            if pid == self.spare.pid:  # the spare died before any call: make another
                self.spare.sock.close()
                self.spare = self._fork_spare()
                continue
            call_id, _ = self.children.pop(pid, (None, 0.0))
            if call_id is None:
                continue
            was_timeout = pid in self.timed_out
            self.timed_out.discard(pid)
            send_json(self.ctrl, _exit_report(call_id, status, was_timeout))


def _serve_invocation(ctrl: socket.socket, handler: Any, config: dict[str, Any]) -> None:
    # Set once here, inherited by every call's process: no per-call cost.
    lowlevel.prctl(lowlevel.PR_SET_DUMPABLE, 0)
    _limit_memory(config["memory_mb"])
    config["bounding"] = lowlevel.bounding_set()
    _Supervisor(ctrl, handler, config).serve()


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
