"""The sandbox's first process: it talks to the gateway and runs no function code.

It starts isolated (``python -I -S``), holds CAP_SYS_ADMIN in the sandbox's
own user namespace only to give workers their private mounts and pid
namespaces, and never imports the function. Workers (see worker.py) do.

Isolation ``invocation``: one spare worker is always ready (confined, handler
imported, waiting); a call is handed to it and a new spare is made, so each
call runs in a fresh process that no other call has touched. Isolation
``warm``: one worker serves the calls handed to it, one after another.

Control channel (SOCK_SEQPACKET, fd from argv): JSON messages; a call
arrives with its own stream socket as SCM_RIGHTS, which is passed on to a
worker. The supervisor enforces call deadlines and reports each call's end.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import time
from typing import TYPE_CHECKING

from . import landlock, lowlevel
from .frames import send_json
from .worker import start_worker, vm_size

if TYPE_CHECKING:
    from typing import Any

_FOREVER = float("inf")


class _Worker:
    """A worker process seen from the supervisor: its pid and hand-off socket."""

    def __init__(self, sup: Supervisor) -> None:
        slot = sup.take_cgroup_slot()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
        except OSError:
            sup.give_back_cgroup_slot(slot)
            ours.close()
            theirs.close()
            raise
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            start_worker(theirs, sup.config, slot)
        if slot is not None:
            sup.cgroup_slot_of[pid] = slot
        theirs.close()
        self.pid = pid
        self.sock = ours

    def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        self.sock.settimeout(timeout_s)
        try:
            report = json.loads(self.sock.recv(65536) or b'{"op": "failed", "error": "exited"}')
        except (OSError, ValueError) as e:
            report = {"op": "failed", "error": f"the worker did not start: {e}"}
        self.sock.settimeout(None)
        return report if isinstance(report, dict) else {"op": "failed", "error": "bad report"}

    def hand(self, call_fd: int) -> None:
        socket.send_fds(self.sock, [b"call"], [call_fd])

    def close(self) -> None:
        self.sock.close()


class Supervisor:
    """Hands calls to workers, enforces deadlines, reports each call's end.

    It must outlive anything a function does: a fork that fails (the sandbox
    is at its process limit) or workers that keep dying are answered per
    call, never by the supervisor itself dying.
    """

    def __init__(self, ctrl: socket.socket, config: dict[str, Any]) -> None:
        self.ctrl = ctrl
        self.config = config
        self.warm: bool = config["warm"]
        self.wake = os.pipe()
        os.set_blocking(self.wake[0], False)
        os.set_blocking(self.wake[1], False)
        signal.set_wakeup_fd(self.wake[1])
        signal.signal(signal.SIGCHLD, lambda *_: None)
        #: worker pid -> (call id, deadline) for calls in flight
        self.calls: dict[int, tuple[int, float]] = {}
        self.timed_out: set[int] = set()
        #: workers that died before taking a call, in a row: past a few, the
        #: next one is made only when a call needs it (no busy respawn loop).
        self.idle_deaths = 0
        #: `cgroup.procs` of the per-call cgroups the host made (none: no cgroups here);
        #: each worker joins a free one, given back when the worker is reaped.
        self.free_cgroup_slots: list[int] = list(config.get("cgroup_slots") or [])
        self.cgroup_slot_of: dict[int, int] = {}
        self.uses_cgroup_slots = bool(self.free_cgroup_slots)
        self.worker: _Worker | None = _Worker(self)

    def take_cgroup_slot(self) -> int | None:
        if not self.uses_cgroup_slots:
            return None
        if not self.free_cgroup_slots:
            # Never a worker outside a call cgroup: no process for this call.
            raise OSError(11, "every per-call cgroup is in use")
        return self.free_cgroup_slots.pop()

    def give_back_cgroup_slot(self, slot: int | None) -> None:
        if slot is not None:
            self.free_cgroup_slots.append(slot)

    def start(self) -> dict[str, Any]:
        """Wait for the first worker's import; its report says if the function loads."""
        if self.worker is None:
            return {"op": "failed", "error": "no worker process could be started"}
        return self.worker.wait_ready(30.0)

    def _new_worker(self) -> _Worker | None:
        try:
            return _Worker(self)
        except OSError:
            return None  # at the process limit: the next call or reap tries again

    def serve(self) -> None:
        poller = select.poll()
        poller.register(self.ctrl.fileno(), select.POLLIN)
        poller.register(self.wake[0], select.POLLIN)
        while True:
            now = time.monotonic()
            wait = min((d for _, d in self.calls.values()), default=_FOREVER) - now
            timeout_ms = 3_600_000 if wait == _FOREVER else max(0, int(wait * 1000) + 1)
            for fd, _ in poller.poll(min(timeout_ms, 3_600_000)):
                if fd == self.ctrl.fileno():
                    self._on_message()
                else:
                    try:
                        os.read(self.wake[0], 4096)
                    except BlockingIOError:
                        pass
            self._kill_overdue()
            self._reap()

    def _on_message(self) -> None:
        msg, fds, _flags, _addr = socket.recv_fds(self.ctrl, 4096, 1)
        if not msg:  # the gateway is gone: so is everything here
            for pid in (*self.calls, *((self.worker.pid,) if self.worker else ())):
                os.kill(pid, signal.SIGKILL)
            os._exit(0)
        req = json.loads(msg)
        worker = self._hand(fds[0])
        os.close(fds[0])
        if worker is None:  # no process could be made for it
            send_json(self.ctrl, {"op": "exit", "id": req["id"], "status": "exit", "code": 75})
            return
        self.idle_deaths = 0
        deadline = _FOREVER if self.warm else time.monotonic() + float(req["timeout"])
        self.calls[worker.pid] = (req["id"], deadline)
        if not self.warm:
            worker.close()
            self.worker = self._new_worker()

    def _hand(self, call_fd: int) -> _Worker | None:
        """Give the call to the ready worker, or to a new one if it is gone."""
        for _ in range(2):
            if self.worker is None:
                self.worker = self._new_worker()
                if self.worker is None:
                    return None
            try:
                self.worker.hand(call_fd)
                return self.worker
            except OSError:
                self.worker.close()  # it died before we heard of it
                self.worker = None
        return None

    def _kill_overdue(self) -> None:
        now = time.monotonic()
        for pid, (_, deadline) in self.calls.items():
            if deadline <= now and pid not in self.timed_out:
                os.kill(pid, signal.SIGKILL)
                self.timed_out.add(pid)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            call = self.calls.pop(pid, None)
            self.give_back_cgroup_slot(self.cgroup_slot_of.pop(pid, None))
            if self.worker is not None and pid == self.worker.pid:
                # The idle (or warm) worker died: make another, unless they keep dying.
                self.worker.close()
                self.worker = None
                if call is None:
                    self.idle_deaths += 1
                if self.idle_deaths < 3:
                    self.worker = self._new_worker()
            if call is not None:
                was_timeout = pid in self.timed_out
                self.timed_out.discard(pid)
                send_json(self.ctrl, _exit_report(call[0], status, was_timeout))


def _exit_report(call_id: int, status: int, timed_out: bool) -> dict[str, Any]:
    if timed_out:
        return {"op": "exit", "id": call_id, "status": "timeout"}
    if os.WIFSIGNALED(status):
        return {"op": "exit", "id": call_id, "status": "signal", "signal": os.WTERMSIG(status)}
    code = os.waitstatus_to_exitcode(status)
    return {"op": "exit", "id": call_id, "status": "ok" if code == 0 else "exit", "code": code}


def _preload(names: list[str]) -> None:
    """Import the standard-library modules the function uses, once, for every worker.

    sys.path holds the standard library only here (the bundle is added in the
    worker), so a bundle module cannot stand in for one of these.
    """
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: S112  # nosec B112 - a missing module is the worker's problem
            continue


def main(ctrl_fd: int) -> None:
    ctrl = socket.socket(fileno=ctrl_fd)  # boot.py has said hello on it
    msg, slots, _flags, _addr = socket.recv_fds(ctrl, 65536, 64)
    config = json.loads(msg)
    config["cgroup_slots"] = slots
    config["landlock"] = landlock.abi_version()
    config["call_filter"] = bytes.fromhex(config["call_filter"])
    config["warm"] = config["mode"] == "warm"
    lowlevel.prctl(lowlevel.PR_SET_DUMPABLE, 0)
    config["bounding"] = lowlevel.bounding_set()
    _preload(config.get("preload") or [])
    config["base_vm"] = vm_size() + 8 * 1024 * 1024  # and room for a worker's own start
    sup = Supervisor(ctrl, config)
    report = sup.start()
    send_json(ctrl, report)
    if report.get("op") != "ready":
        os._exit(1)
    sup.serve()
