"""A worker process as the supervisor sees it, and how a worker is ended.

Split from supervisor.py: the supervisor makes `Worker`s (a worker of a
function without egress by one clone, worker.py's `start_cloned`; else a
fork that becomes the worker's parent and relay, `start_worker`), hands them calls, ends them
with `kill_worker` (and whatever it adopted with `kill_strangers`), and
reports each reaped worker's call with `exit_report`.

Imports nothing from donjon (this runs inside the sandbox).
"""

from __future__ import annotations

import os
import time

from . import clone, lowlevel, signals, sockets
from .worker import start_cloned, start_worker

#: Not typing's: importing typing costs a sandbox start 3-8 ms (mypy reads this as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .supervisor import Supervisor

FOREVER = float("inf")
#: A spare worker not ready this long after it was made is killed (and a
#: one-call worker's RLIMIT_CPU allows as much for its import, see worker.py).
IMPORT_DEADLINE_S = 30.0
#: An idle worker (a ready spare, a warm worker between calls) is looked at
#: this often; one that has processes besides itself, or has used more CPU
#: than the supervisor's `IDLE_CPU_S` since the last look, runs code outside
#: any call: killed.
IDLE_CHECK_S = 5.0
#: Workers of functions without egress are made by one clone with these namespaces
#: (clone.py) instead of fork + unshare + fork.
WORKER_NAMESPACES = clone.CLONE_NEWPID | clone.CLONE_NEWNS | clone.CLONE_NEWIPC | clone.CLONE_NEWNET


#: pids of the workers made by one clone (each is its namespaces' pid 1), until reaped
_cloned: set[int] = set()


def forget_worker(pid: int) -> None:
    """`pid` was reaped: the number may come again for another process."""
    _cloned.discard(pid)


class Worker:
    """A worker process seen from the supervisor: its pid and hand-off socket."""

    def __init__(self, sup: Supervisor) -> None:
        slot = sup.take_cgroup_slot()
        ours, theirs = sockets.socketpair(sockets.AF_UNIX, sockets.SOCK_SEQPACKET)
        #: to the worker's relay (egress granted): each call's token, before the call
        relay: tuple[sockets.Socket, sockets.Socket] | None = None
        try:
            if sup.config.get("egress"):
                relay = sockets.socketpair(sockets.AF_UNIX, sockets.SOCK_SEQPACKET)
            #: made by one clone: the worker itself, pid 1 of its namespaces (else the
            #: intermediate parent that made them, forked the worker and relays its egress)
            self.direct = relay is None
            pid = clone.clone_process(WORKER_NAMESPACES) if self.direct else os.fork()
        except OSError:
            sup.give_back_cgroup_slot(slot)
            for sock in (ours, theirs, *(relay or ())):
                sock.close()
            raise
        if pid == 0:
            signals.set_wakeup_fd(-1)
            signals.signal(signals.SIGCHLD, signals.SIG_DFL)
            if self.direct:
                start_cloned(theirs, sup.config, slot)
            if relay is not None:
                relay[0].close()
            start_worker(theirs, sup.config, slot, relay[1] if relay else None)
        if slot is not None:
            sup.cgroup_slot_of[pid] = slot
        if self.direct:
            _cloned.add(pid)
        theirs.close()
        self.relay: sockets.Socket | None = None
        if relay is not None:
            relay[1].close()
            self.relay = relay[0]
        self.pid = pid
        self.sock = ours
        self.ready = False
        self.busy = False
        self.made_at = time.monotonic()
        self.ready_by = self.made_at + IMPORT_DEADLINE_S
        self.look_at = FOREVER
        self.cpu_seen = 0.0

    def inner(self) -> list[int]:
        """The worker's pid 1 (what runs in its namespaces is under it); [] once gone."""
        return [self.pid] if self.direct else lowlevel.children(self.pid)

    def kept_nothing(self) -> bool:
        """True when this ready worker runs alone in its pid namespace.

        The runtime ends whatever the import started before it reports ready;
        a process left over means the function interfered with that.
        """
        return all(not lowlevel.children(pid) for pid in self.inner())

    def idle_from(self, now: float) -> None:
        """The worker is idle from `now`: look at it again `IDLE_CHECK_S` later."""
        self.look_at = now + IDLE_CHECK_S
        self.cpu_seen = sum(map(lowlevel.cpu_seconds, self.inner()))

    def kill(self) -> None:
        """End this worker and everything it started (see `kill_worker`)."""
        kill_worker(self.pid)

    def hand(self, call_fd: int, token: str | None = None) -> None:
        if self.relay is not None:
            # Before the call reaches the worker: its first connection finds the token.
            try:
                self.relay.send((token or "-").encode(), sockets.MSG_DONTWAIT)
            except OSError:
                pass
        sockets.send_fds(self.sock, [b"call"], [call_fd])

    def close(self) -> None:
        self.sock.close()
        if self.relay is not None:
            self.relay.close()


def kill_worker(parent: int) -> None:
    """SIGKILL the worker `parent` made by one clone, or under the intermediate `parent`.

    The worker is pid 1 of its own pid namespace: killing it kills every
    process in that namespace, whatever the worker did to its own signals or
    parent-death setting. A worker made by one clone is `parent` itself (the
    supervisor notes each, and forgets it once reaped: /proc cannot say, a worker
    is not dumpable, so its /proc/<pid>/ns is not readable). Under an intermediate:
    before the worker exists, `parent` itself is killed; a worker it forks
    after all is then adopted by the supervisor and killed as a stranger
    (`kill_strangers`).
    """
    if parent in _cloned:
        try:
            os.kill(parent, signals.SIGKILL)
        except ProcessLookupError:
            pass
        return
    inner = lowlevel.children(parent)
    for pid in inner or (parent,):
        try:
            os.kill(pid, signals.SIGKILL)
        except ProcessLookupError:
            continue


def kill_strangers(ours: set[int]) -> None:
    """Kill, and wait for, every child of the supervisor not in `ours`.

    Its own children are workers (or their intermediate parents); anything
    else was adopted (a worker whose parent died) and must not outlive its call.
    """
    for _ in range(100):  # bounded: each pass kills what it finds
        strangers = [p for p in lowlevel.children(os.getpid()) if p not in ours]
        if not strangers:
            return
        for pid in strangers:
            try:
                os.kill(pid, signals.SIGKILL)
                os.waitpid(pid, 0)  # returns once its namespace is empty
            except (ProcessLookupError, ChildProcessError):
                continue


def exit_report(call_id: int, status: int, timed_out: bool) -> dict[str, Any]:
    """The supervisor's report of a call whose worker was reaped with `status`."""
    if timed_out:
        return {"op": "exit", "id": call_id, "status": "timeout"}
    if os.WIFSIGNALED(status):
        return {"op": "exit", "id": call_id, "status": "signal", "signal": os.WTERMSIG(status)}
    code = os.waitstatus_to_exitcode(status)
    return {"op": "exit", "id": call_id, "status": "ok" if code == 0 else "exit", "code": code}
