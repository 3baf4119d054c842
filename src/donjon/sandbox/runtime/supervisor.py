"""The sandbox's first process: it talks to the gateway and runs no function code.

It starts isolated (``python -I -S``), holds CAP_SYS_ADMIN in the sandbox's
own user namespace only to give workers their private mounts and pid
namespaces, and never imports the function. Workers (see worker.py) do.

Isolation ``invocation``: spare workers are made ahead (confined, handler
imported, waiting): one, or more while calls come faster than a worker is
made (spares.py); a call is handed to one and more are made, so each call
runs in a fresh process that no other call has touched. Isolation
``warm``: one worker serves the calls handed to it, one after another.

Control channel (SOCK_SEQPACKET, fd from argv): JSON messages; an
``invocation`` call arrives with its own stream socket as SCM_RIGHTS, which
is passed on to a worker. A ``warm`` sandbox's calls do not pass here: the
gateway's persistent channel to the worker comes once, with the boot
message, and is handed to the worker once it is ready; the gateway writes
each call's id and deadline in a shared page (callpage.py) that the
supervisor reads. The supervisor enforces call deadlines and reports the
end of each call whose worker died (for ``invocation``, of every call).

A call ends with all its processes: the supervisor ends a worker by killing
the worker's pid 1 itself (which takes its whole pid namespace), never only
the worker's intermediate parent, and kills any process it adopts that it
did not make. A call's end is reported once its processes are gone: for
``invocation`` when its worker's parent is reaped. A ``warm`` call ends
when the gateway reads the worker's end-of-call frame, bound to the call by
its token (sandbox/warmlink.py); a worker that breaks that protocol is the
function's own fault and is killed with its sandbox; one that closes its
channel and runs on is killed at the call's deadline by the supervisor,
which reports the call timed out. Between calls it looks at the warm
worker as at any idle one (other processes, threads, CPU).
"""

from __future__ import annotations

import os
import select
import time

from . import jsonwire, lowlevel, signals, sockets
from .frames import send_json
from .spares import Demand
from .startup import first_report, read_config
from .waiting import single_threaded
from .watch import Watches
from .workers import (
    FOREVER,
    IDLE_CHECK_S,
    Worker,
    exit_report,
    forget_worker,
    kill_strangers,
    kill_worker,
)

#: Not typing's: importing typing costs a sandbox start 3-8 ms (mypy reads this as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .callpage import CallPage
    from .warmlook import WarmLook

#: An idle worker that has used more CPU than this since the last look (every
#: `IDLE_CHECK_S`, workers.py) runs code outside any call: killed.
IDLE_CPU_S = 1.0


class Supervisor:
    """Hands calls to workers, enforces deadlines, reports each call's end.

    It must outlive anything a function does: a fork that fails (the sandbox
    is at its process limit) or workers that keep dying are answered per
    call, never by the supervisor itself dying.
    """

    def __init__(
        self,
        ctrl: sockets.Socket,
        config: dict[str, Any],
        channel_fd: int | None = None,
        page: CallPage | None = None,
    ) -> None:
        self.ctrl = ctrl
        self.config = config
        self.warm: bool = config["warm"]
        #: warm: the gateway's channel (until the worker has it) and the call page
        self.channel_fd = channel_fd
        self.warm_look: WarmLook | None = None
        if page is not None:
            from .warmlook import WarmLook  # warm only: an invocation sandbox never maps a page

            self.warm_look = WarmLook(page)
        self.wake = os.pipe()
        os.set_blocking(self.wake[0], False)
        os.set_blocking(self.wake[1], False)
        signals.set_wakeup_fd(self.wake[1])
        signals.signal(signals.SIGCHLD, lambda *_: None)
        #: worker pid -> (call id, deadline) for calls in flight
        self.calls: dict[int, tuple[int, float]] = {}
        self.timed_out: set[int] = set()
        #: worker pid -> hand-off socket fd of spares whose ready report is awaited
        self.pending: dict[int, int] = {}
        #: workers that died before taking a call, in a row: past a few, the
        #: next one is made only when a call needs it (no busy respawn loop).
        self.idle_deaths = 0
        self._poller = select.poll()
        #: `cgroup.procs` of the per-call cgroups the host made (none: no cgroups here),
        #: one per hierarchy (memory, pids) in each slot; each worker joins a free
        #: slot, given back when the worker is reaped.
        self.free_cgroup_slots: list[tuple[int, ...]] = list(config.get("cgroup_slots") or [])
        self.cgroup_slot_of: dict[int, tuple[int, ...]] = {}
        self.uses_cgroup_slots = bool(self.free_cgroup_slots)
        #: child_processes alert or block: each worker's seccomp listener (watch.py).
        self.watches = Watches(
            (config.get("policies") or {}).get("child_processes", "block"),
            {int(k): str(v) for k, v in (config.get("process_calls") or {}).items()},
            self._poller,
            self._call_of,
            lambda message: send_json(self.ctrl, message),
        )
        #: isolation invocation: ready (or readying) workers besides `worker`, made ahead
        #: as demand says (spares.py); each takes one call, never a second
        self.spares: list[Worker] = []
        self.demand = Demand(int(config.get("concurrency") or 1))
        #: worker pid -> when its call was handed to it (invocation: the call's time)
        self.handed_at: dict[int, float] = {}
        #: invocation workers handed their call before they were ready: closed once reaped
        self.unready: dict[int, Worker] = {}
        self.worker: Worker | None = Worker(self)

    def take_cgroup_slot(self) -> tuple[int, ...] | None:
        if not self.uses_cgroup_slots:
            return None
        if not self.free_cgroup_slots:
            # Never a worker outside a call cgroup: no process for this call.
            raise OSError(11, "every per-call cgroup is in use")
        return self.free_cgroup_slots.pop()

    def give_back_cgroup_slot(self, slot: tuple[int, ...] | None) -> None:
        if slot is not None:
            self.free_cgroup_slots.append(slot)

    def start(self) -> dict[str, Any]:
        """Wait for the first worker's import; its report says if the function loads."""
        if self.worker is None:
            return {"op": "failed", "error": "no worker process could be started"}
        worker = self.worker
        report = first_report(worker.sock, worker.pid, worker.ready_by, self._poller, self.watches)
        if report.get("op") == "ready" and not self.worker.kept_nothing():
            report = {"op": "failed", "error": "the handler's import left processes running"}
        elif report.get("op") == "ready" and self.warm and not single_threaded(self.worker.inner()):
            # Its calls could never be seen to end (waiting.py): say so now, not per call.
            report = {
                "op": "failed",
                "error": "the handler's import left threads running"
                " (a warm worker must be idle between calls)",
            }
        if report.get("op") == "ready" and not self.watches.ready(self.worker.pid):
            report = {"op": "failed", "error": "the worker's process watch was not set up"}
        if report.get("op") == "ready" and self.warm_look is not None:
            from .warmlook import hand_channel

            report = hand_channel(self.ctrl, self.worker, self.channel_fd, report)
            self.channel_fd = None  # closed: the worker has it
        if report.get("op") != "ready":
            self.worker.kill()
        self.worker.ready = True
        self.worker.idle_from(time.monotonic())
        return report

    def _call_of(self, pid: int) -> int | None:
        """The call the worker under `pid` serves (None outside calls)."""
        worker = self.worker
        if self.warm_look is not None and worker is not None and pid == worker.pid:
            return self.warm_look.call_id() or None
        return self.calls[pid][0] if pid in self.calls else None

    def _observe(self, now: float) -> None:
        """Warm: take the call in flight, if any, from the page (warmlook.py)."""
        if self.warm_look is not None and self.worker is not None:
            self.warm_look.observe(now, self.worker, self.calls, self.timed_out, self.watches)

    def _new_worker(self) -> Worker | None:
        try:
            worker = Worker(self)
        except OSError:
            return None  # at the process limit: the next call or reap tries again
        self.pending[worker.pid] = worker.sock.fileno()
        self._poller.register(worker.sock.fileno(), select.POLLIN)
        return worker

    def _idle_workers(self) -> list[Worker]:
        """The workers not running a call: the front one and the spares."""
        front = [self.worker] if self.worker is not None and not self.worker.busy else []
        return front + self.spares

    def _take_front(self) -> None:
        """Invocation: a ready spare becomes the next worker handed a call, if that one
        is not ready (or is gone)."""
        if self.warm or (self.worker is not None and self.worker.ready):
            return
        ready = [w for w in self.spares if w.ready]
        if not ready and self.worker is not None:
            return
        if not (ready or self.spares):
            return
        spare = (ready or self.spares)[0]
        self.spares.remove(spare)
        if self.worker is not None:
            self.spares.insert(0, self.worker)
        self.worker = spare

    def _top_up(self, now: float) -> None:
        """Invocation: make workers until as many are idle as demand says (spares.py)."""
        if self.warm or self.idle_deaths >= 3:
            return
        want = self.demand.spares(now, len(self.calls))
        while len(self._idle_workers()) < want:
            worker = self._new_worker()
            if worker is None:
                return  # at the process limit: the next call or reap tries again
            if self.worker is None:
                self.worker = worker
            else:
                self.spares.append(worker)

    def _stop_pending(self, worker: Worker) -> None:
        fd = self.pending.pop(worker.pid, None)
        if fd is not None:
            self._poller.unregister(fd)

    def _on_ready(self, fd: int) -> None:
        """A spare's report: ready (handler imported, nothing left running) or failed."""
        worker = next(
            (w for w in (self.worker, *self.spares) if w and self.pending.get(w.pid) == fd), None
        )
        if worker is None:
            try:
                self._poller.unregister(fd)
            except KeyError:  # a stale event of a socket since closed
                pass
            return
        try:
            data, fds, _flags, _addr = sockets.recv_fds(worker.sock, 65536, 1, sockets.MSG_DONTWAIT)
        except BlockingIOError:
            return  # a stale event (its number was reused): nothing to read yet
        except OSError:
            data, fds = b"", []
        if self.watches.take(worker.pid, data, fds):
            return  # its ready report comes next
        self._stop_pending(worker)
        try:
            report = jsonwire.loads(data or b"{}")
        except ValueError:
            report = {}
        worker.ready = isinstance(report, dict) and report.get("op") == "ready"
        if not self.watches.ready(worker.pid):
            worker.ready = False  # its process calls would be answered by no one
        if not worker.ready or (not worker.busy and not worker.kept_nothing()):
            worker.kill()  # it exits; reaping makes the next one, unless they keep failing
        elif not worker.busy:
            now = time.monotonic()
            self.demand.made(now - worker.made_at)
            worker.idle_from(now)
            self._take_front()

    def serve(self) -> None:
        poller = self._poller
        poller.register(self.ctrl.fileno(), select.POLLIN)
        poller.register(self.wake[0], select.POLLIN)
        # Warm: read the page once now, so it says we doze (no call yet) or we follow the
        # call already begun; else the gateway would not wake us for the first calls.
        self._observe(time.monotonic())
        while True:
            now = time.monotonic()
            wait = self._next_deadline() - now
            timeout_ms = 3_600_000 if wait == FOREVER else max(0, int(wait * 1000) + 1)
            for fd, events in poller.poll(min(timeout_ms, 3_600_000)):
                if self.watches.owns(fd):
                    self.watches.on_event(fd, events)
                elif fd == self.ctrl.fileno():
                    self._on_message()
                elif fd == self.wake[0]:
                    try:
                        os.read(self.wake[0], 4096)
                    except BlockingIOError:
                        pass
                else:
                    self._on_ready(fd)
            self._kill_overdue()
            self._reap()

    def _next_deadline(self) -> float:
        soonest = min((d for _, d in self.calls.values()), default=FOREVER)
        for idle in self._idle_workers():
            soonest = min(soonest, idle.look_at if idle.ready else idle.ready_by)
        look = self.warm_look.next_look(time.monotonic()) if self.warm_look else None
        return soonest if look is None else min(soonest, look)

    def _on_message(self) -> None:
        msg, fds, _flags, _addr = sockets.recv_fds(self.ctrl, 4096, 1)
        if not msg:  # the gateway is gone: so is everything here
            for pid in (*self.calls, *(w.pid for w in self._idle_workers())):
                kill_worker(pid)
            os._exit(0)
        req = jsonwire.loads(msg)
        if req.get("op") in ("wake", "end"):
            for fd in fds:
                os.close(fd)
            now = time.monotonic()
            if self.warm_look is not None:
                self.warm_look.woken(now)
            self._observe(now)
            if req["op"] == "end":
                self._end_call(int(req["id"]))
            return
        token = req.get("token")
        worker = self._hand(fds[0], token if isinstance(token, str) else None)
        os.close(fds[0])
        if worker is None:  # no process could be made for it
            send_json(self.ctrl, {"op": "exit", "id": req["id"], "status": "exit", "code": 75})
            return
        self.idle_deaths = 0
        worker.busy = True
        # Both modes: past its deadline a call's worker and its namespace are killed.
        self.calls[worker.pid] = (req["id"], time.monotonic() + float(req["timeout"]))
        if not self.warm:
            self._stop_pending(worker)
            if self.watches.hand_over(worker.pid, worker.sock):
                pass  # kept until its seccomp listener arrives
            elif worker.ready:
                worker.close()
            else:
                # Its ready report may be on its way: closing our end with it unread
                # would reset the worker's end, and the call queued there with it.
                self.unready[worker.pid] = worker
            now = time.monotonic()
            self.handed_at[worker.pid] = now
            self.demand.called(now)
            self.worker = None
            self._take_front()
            self._top_up(now)

    def _end_call(self, call_id: int) -> None:
        """The gateway ends a call (a runtime policy blocked it): its worker is killed,
        and reaping it reports the call's end as for any killed worker."""
        for pid, (cid, _) in self.calls.items():
            if cid == call_id:
                kill_worker(pid)

    def _hand(self, call_fd: int, token: str | None = None) -> Worker | None:
        """Give the call to the ready worker, or to a new one if it is gone."""
        self._take_front()
        for _ in range(2):
            if self.worker is None:
                self.worker = self._new_worker()
                if self.worker is None:
                    return None
            try:
                self.worker.hand(call_fd, token)
                return self.worker
            except OSError:
                self._stop_pending(self.worker)
                self.worker.close()  # it died before we heard of it
                self.worker = None
        return None

    def _kill_overdue(self) -> None:
        now = time.monotonic()
        self._observe(now)
        for pid, (_, deadline) in self.calls.items():
            if deadline <= now and pid not in self.timed_out:
                kill_worker(pid)
                self.timed_out.add(pid)
        want = self.demand.spares(now, len(self.calls))
        for idle in self._idle_workers():
            if not idle.ready and idle.ready_by <= now:
                idle.ready_by = FOREVER  # killed once; reaping replaces it
                self._stop_pending(idle)
                idle.kill()
            elif idle.ready and idle.look_at <= now:
                if idle is not self.worker and len(self._idle_workers()) > want:
                    self._trim(idle)  # demand fell: one spare fewer
                else:
                    self._look_at_idle(idle, now)

    def _trim(self, spare: Worker) -> None:
        """End a spare no longer needed (never kept for a later call: it is killed)."""
        self.spares.remove(spare)
        self._stop_pending(spare)
        spare.close()
        spare.kill()

    def _look_at_idle(self, worker: Worker, now: float) -> None:
        """Kill an idle worker that runs anything: nothing runs outside calls.

        A warm worker is idle if no call began since the last look (the page
        says); it must then also run one thread (waiting.py).
        """
        cpu = sum(map(lowlevel.cpu_seconds, worker.inner()))
        warm = self.warm_look
        if warm is not None and warm.calls_came():
            worker.look_at, worker.cpu_seen = now + IDLE_CHECK_S, cpu
            return
        quiet = warm is None or single_threaded(worker.inner())
        if quiet and worker.kept_nothing() and cpu - worker.cpu_seen <= IDLE_CPU_S:
            worker.look_at, worker.cpu_seen = now + IDLE_CHECK_S, cpu
            return
        if warm is not None:
            self._observe(now)
            if worker.busy or warm.began_since_look():
                return  # a call began meanwhile: looked at again after it
        worker.look_at = FOREVER  # killed once; reaping replaces it
        worker.kill()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.worker is not None and pid == self.worker.pid:
                self._observe(time.monotonic())  # warm: the call it served, if any
            forget_worker(pid)
            call = self.calls.pop(pid, None)
            if os.WIFSIGNALED(status) or (
                call is None and (self.worker is None or pid != self.worker.pid)
            ):
                # A worker's parent that was killed leaves the worker to us: end it
                # (and its namespace) before this call is reported over.
                kill_strangers(self._ours())
            self.give_back_cgroup_slot(self.cgroup_slot_of.pop(pid, None))
            self.watches.drop(pid)
            spare = next((w for w in self.spares if w.pid == pid), None)
            if spare is not None:  # a spare that died before its call
                self.spares.remove(spare)
                self._stop_pending(spare)
                spare.close()
                self.idle_deaths += 1
                self._top_up(time.monotonic())
            if self.worker is not None and pid == self.worker.pid:
                # The idle (or warm) worker died: make another, unless they keep dying.
                self._stop_pending(self.worker)
                self.worker.close()
                self.worker = None
                if call is None:
                    self.idle_deaths += 1
                # Warm: the channel went with the worker; the gateway replaces the sandbox.
                if self.warm and self.warm_look is None and self.idle_deaths < 3:
                    self.worker = self._new_worker()
                self._take_front()
                self._top_up(time.monotonic())
            unready = self.unready.pop(pid, None)
            if unready is not None:
                unready.close()
            handed = self.handed_at.pop(pid, None)
            if handed is not None:
                self.demand.call_ended(time.monotonic() - handed)
            if call is not None:
                self.watches.call_ended(call[0])
                was_timeout = pid in self.timed_out
                self.timed_out.discard(pid)
                send_json(self.ctrl, exit_report(call[0], status, was_timeout))

    def _ours(self) -> set[int]:
        """The supervisor's own children: workers (or their intermediate parents)."""
        return set(self.calls) | {w.pid for w in (self.worker, *self.spares) if w is not None}


def main(ctrl_fd: int) -> None:
    ctrl = sockets.Socket(fileno=ctrl_fd)  # boot.py has said hello on it
    config, fds = read_config(ctrl)
    channel_fd: int | None = None
    page: CallPage | None = None
    if config["warm"] and len(fds) == 2:
        from .callpage import CallPage  # warm only (it brings mmap)

        channel_fd, page = fds[0], CallPage(fds[1])
    else:
        for fd in fds:
            os.close(fd)
    sup = Supervisor(ctrl, config, channel_fd, page)
    report = sup.start()
    send_json(ctrl, report)
    if report.get("op") != "ready":
        os._exit(1)
    sup.serve()
