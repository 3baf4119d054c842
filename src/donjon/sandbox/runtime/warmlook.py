"""How the supervisor follows a warm sandbox: the channel it hands on, the call page,
and its looks at the worker between calls.

Split from supervisor.py. The gateway's persistent channel to the warm worker
comes with the boot message and is handed to the worker once it is ready
(`hand_channel`). The gateway writes the id and deadline of each
warm call in the call page (callpage.py); the supervisor takes the call in
flight from it (`WarmLook.observe`), looks at it every `ACTIVE_LOOK_S` while
calls come and dozes once they stop, until the gateway wakes it. Between
calls a warm worker keeps no thread (waiting.py): one seen with more, twice
and with no call begun in between, ran code past its call's end and is
killed (its sandbox is then replaced by the gateway).

Imports nothing from donjon (this runs inside the sandbox).
"""

from __future__ import annotations

import os

from . import sockets
from .callpage import ACTIVE_LOOK_S, DOZE_AFTER_S, CallPage
from .waiting import single_threaded

#: Not typing's: importing typing costs a sandbox start 3-8 ms (mypy reads this as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .watch import Watches
    from .workers import Worker

#: While calls come, a warm worker seen between calls is checked for threads this often;
#: one seen with more than one twice, with no call begun in between, is killed.
QUIET_LOOK_S = 0.25


def hand_channel(
    ctrl: sockets.Socket, worker: Worker, channel_fd: int | None, report: dict[str, Any]
) -> dict[str, Any]:
    """The gateway's channel to the ready worker (once; closed here whatever happens), and
    the worker's relay to the gateway (egress granted: each call's token goes there
    before the call); `report` as it stands, or failed."""
    try:
        if worker.relay is not None:
            sockets.send_fds(ctrl, [b'{"op":"relay"}'], [worker.relay.fileno()])
        if channel_fd is None:
            raise OSError("no channel")
        sockets.send_fds(worker.sock, [b"channel"], [channel_fd])
    except OSError as e:
        return {"op": "failed", "error": f"the warm worker's channel: {e}"}
    finally:
        if channel_fd is not None:
            os.close(channel_fd)
    return report


class WarmLook:
    """The supervisor's reading of a warm sandbox's call page (see the module)."""

    def __init__(self, page: CallPage) -> None:
        self.page = page
        #: calls begun as last read from the page; at the last idle look
        self.seen_begun = 0
        self.looked_begun = 0
        self.active_until = 0.0
        self.quiet_look_at = 0.0
        self.noisy_begun = -1
        self.extended_begun = -1  # the calls begun when a sighting last kept us looking

    def woken(self, now: float) -> None:
        """The gateway says a call comes: look at the page often for a while."""
        self.active_until = now + DOZE_AFTER_S

    def call_id(self) -> int:
        """The call in flight (0 between calls)."""
        return self.page.read()[0]

    def next_look(self, now: float) -> float | None:
        """When to look at the page again while calls come (None: dozing)."""
        return now + ACTIVE_LOOK_S if now < self.active_until else None

    def observe(
        self,
        now: float,
        worker: Worker,
        calls: dict[int, tuple[int, float]],
        timed_out: set[int],
        watches: Watches,
    ) -> None:
        """Take the call in flight, if any, from the page into `calls` (worker pid ->
        call id and deadline); ended calls leave it and `watches`."""
        call_id, deadline, begun = self.page.read()
        if begun != self.seen_begun or call_id:
            # Calls come, or one runs: looked at until DOZE_AFTER_S after it, so the end
            # of a call longer than that is seen at once, not at its deadline.
            self.seen_begun = begun
            self.active_until = now + DOZE_AFTER_S
        if worker.pid in timed_out:
            return  # killed at its call's deadline: reaping reports that call
        current = calls.get(worker.pid)
        if current is not None and current[0] != call_id:
            del calls[worker.pid]
            watches.call_ended(current[0])
        if call_id and (current is None or current[0] != call_id):
            calls[worker.pid] = (call_id, deadline)
        worker.busy = bool(call_id)
        if not call_id and now >= self.quiet_look_at:
            self._look_between_calls(worker, now, begun)
        if not call_id and now >= self.active_until:
            self.page.doze(True)  # the gateway wakes us at its next call

    def _look_between_calls(self, worker: Worker, now: float, begun: int) -> None:
        """Between calls a worker keeps no thread (waiting.py). One seen with more, twice
        and with no call begun in between, ran code past its call's end: killed."""
        self.quiet_look_at = now + QUIET_LOOK_S
        if single_threaded(worker.inner()):
            self.noisy_begun = -1
            return
        call_id, _, again = self.page.read()
        if call_id or again != begun:
            return  # a call began meanwhile: its threads are its own
        if self.noisy_begun != begun:
            self.noisy_begun = begun
            # Looked at again before dozing: one look late past the active window
            # (a loaded machine) would otherwise leave the thread to the idle looks.
            # Once per idle period: a thread seen at every other look must not keep
            # the supervisor from dozing forever.
            if self.extended_begun != begun:
                self.extended_begun = begun
                self.active_until = max(self.active_until, now + 2 * QUIET_LOOK_S)
            return
        worker.kill()  # reaping it ends the channel; the gateway replaces the sandbox

    def calls_came(self) -> bool:
        """True once after calls began since the last idle look (a new window from here)."""
        if self.looked_begun == self.seen_begun:
            return False
        self.looked_begun = self.seen_begun
        return True

    def began_since_look(self) -> bool:
        """True when a call began since the last idle look."""
        return self.looked_begun != self.seen_begun
