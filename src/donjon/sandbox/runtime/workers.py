"""A worker process as the supervisor sees it, and how a worker is ended.

Split from supervisor.py: the supervisor makes `Worker`s (each a fork that
becomes the worker's parent, see worker.py's `start_worker`), hands them
calls, and ends them with `kill_worker`.

Imports nothing from donjon (this runs inside the sandbox).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time

from . import lowlevel
from .worker import start_worker

#: Not typing's: importing typing costs a sandbox start 3-8 ms (mypy reads this as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
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
#: A warm call whose socket closed is looked at again after this long, then
#: twice as long each time up to the supervisor's `BACK_STEP_MAX_S`, until its
#: worker is back waiting (the call ends) or the call's deadline (the worker
#: is killed).
BACK_STEP_S = 0.0005


class Worker:
    """A worker process seen from the supervisor: its pid and hand-off socket."""

    def __init__(self, sup: Supervisor) -> None:
        slot = sup.take_cgroup_slot()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        #: to the worker's relay (egress granted): each call's token, before the call
        relay: tuple[socket.socket, socket.socket] | None = None
        try:
            if sup.config.get("egress"):
                relay = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            pid = os.fork()
        except OSError:
            sup.give_back_cgroup_slot(slot)
            for sock in (ours, theirs, *(relay or ())):
                sock.close()
            raise
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            if relay is not None:
                relay[0].close()
            start_worker(theirs, sup.config, slot, relay[1] if relay else None)
        if slot is not None:
            sup.cgroup_slot_of[pid] = slot
        #: the hand-off socket as the kernel names it in the worker's /proc/<pid>/fd
        self.handoff_inode = os.fstat(theirs.fileno()).st_ino
        theirs.close()
        self.relay: socket.socket | None = None
        if relay is not None:
            relay[1].close()
            self.relay = relay[0]
        self.pid = pid
        self.sock = ours
        self.ready = False
        self.busy = False
        self.ready_by = time.monotonic() + IMPORT_DEADLINE_S
        self.look_at = FOREVER
        self.cpu_seen = 0.0
        #: warm, once its call's socket closed: when to look whether it is back waiting
        self.back_at = FOREVER
        self.back_step = BACK_STEP_S

    def idle_from(self, now: float) -> None:
        """The worker is idle from `now`: look at it again `IDLE_CHECK_S` later."""
        self.look_at = now + IDLE_CHECK_S
        self.cpu_seen = sum(map(lowlevel.cpu_seconds, lowlevel.children(self.pid)))

    def kill(self) -> None:
        """End this worker and everything it started (see `kill_worker`)."""
        kill_worker(self.pid)

    def hand(self, call_fd: int, token: str | None = None) -> None:
        if self.relay is not None:
            # Before the call reaches the worker: its first connection finds the token.
            with contextlib.suppress(OSError):
                self.relay.send((token or "-").encode(), socket.MSG_DONTWAIT)
        socket.send_fds(self.sock, [b"call"], [call_fd])

    def close(self) -> None:
        self.sock.close()
        if self.relay is not None:
            self.relay.close()


def kill_worker(parent: int) -> None:
    """SIGKILL the worker under the intermediate process `parent`.

    The worker is pid 1 of its own pid namespace: killing it kills every
    process in that namespace, whatever the worker did to its own signals or
    parent-death setting. Before the worker exists, `parent` itself is
    killed; a worker it forks after all is then adopted by the supervisor and
    killed as a stranger (`Supervisor._kill_strangers`).
    """
    inner = lowlevel.children(parent)
    for pid in inner or (parent,):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
