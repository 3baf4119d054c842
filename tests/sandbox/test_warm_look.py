"""The supervisor's looks at a warm worker between calls (runtime/warmlook.py), driven
with a stand-in call page and worker: a worker seen running a thread between calls is
looked at again before the supervisor dozes and killed if it still runs it, and a call
longer than the active window keeps the supervisor looking, so a thread it leaves is
caught at its end, not after its deadline."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from donjon.sandbox.runtime.callpage import ACTIVE_LOOK_S, DOZE_AFTER_S
from donjon.sandbox.runtime.warmlook import QUIET_LOOK_S, WarmLook


class Page:
    """The call page as the supervisor reads it: the call in flight (0: none) and the
    calls begun so far."""

    def __init__(self) -> None:
        self.call_id = 0
        self.begun = 0
        self.dozing = False

    def begin(self, call_id: int) -> None:
        self.call_id = call_id
        self.begun += 1

    def read(self) -> tuple[int, float, int]:
        return self.call_id, 1e9, self.begun

    def doze(self, dozing: bool) -> None:
        self.dozing = dozing


class Worker:
    """A worker whose process is this test's own, which runs a second thread (or, with
    `looks_at`, the processes it names look by look)."""

    pid = 4242
    busy = False

    def __init__(self) -> None:
        self.killed = 0
        self.looks_at: Iterator[list[int]] | None = None

    def inner(self) -> list[int]:
        return [os.getpid()] if self.looks_at is None else next(self.looks_at)

    def kill(self) -> None:
        self.killed += 1


class Watches:
    def __init__(self) -> None:
        self.ended: list[int] = []

    def call_ended(self, call_id: int) -> None:
        self.ended.append(call_id)


@pytest.fixture
def second_thread() -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


class Supervisor:
    """The supervisor's use of WarmLook: observe at each look, the next look's time."""

    def __init__(self) -> None:
        self.page = Page()
        self.look = WarmLook(self.page)  # type: ignore[arg-type]  # read and doze alone
        self.worker = Worker()
        self.calls: dict[int, tuple[int, float]] = {}
        self.watches = Watches()

    def observe(self, now: float) -> float | None:
        self.look.observe(now, self.worker, self.calls, set(), self.watches)  # type: ignore[arg-type]  # stand-ins: what observe uses
        return self.look.next_look(now)


@pytest.mark.usefixtures("second_thread")
def test_a_thread_first_seen_past_the_active_window_is_looked_at_again() -> None:
    """A loaded machine's first look after the call comes late, past the window: the
    supervisor does not doze on one sighting, it looks again and kills the worker."""
    sup = Supervisor()
    sup.look.woken(0.0)
    sup.page.begin(1)
    assert sup.observe(0.1) is not None  # the call in flight
    sup.page.call_id = 0  # it ended; a thread it started runs on
    late = 0.1 + DOZE_AFTER_S + 0.2
    assert sup.observe(late) == late + ACTIVE_LOOK_S  # one sighting: looked at again
    assert (sup.worker.killed, sup.page.dozing) == (0, False)
    sup.observe(late + QUIET_LOOK_S)
    assert sup.worker.killed == 1


@pytest.mark.usefixtures("second_thread")
def test_a_call_longer_than_the_active_window_keeps_the_supervisor_looking() -> None:
    """Looks go on while a call runs past DOZE_AFTER_S, so its end, and the thread it
    leaves, are seen within two looks, not at the call's deadline."""
    sup = Supervisor()
    sup.look.woken(0.0)
    sup.page.begin(7)
    now, nxt = 0.0, sup.observe(0.0)
    while now < 3 * DOZE_AFTER_S:  # the call runs three windows long
        assert nxt is not None, f"no look at {now} s while the call runs"
        now = nxt
        nxt = sup.observe(now)
    assert sup.calls == {Worker.pid: (7, 1e9)}
    sup.page.call_id = 0  # it ended, leaving a thread
    looks = 0
    while not sup.worker.killed and looks < 3:
        assert nxt is not None
        now, looks = nxt, looks + 1
        nxt = sup.observe(now)
    assert sup.watches.ended == [7]
    assert (sup.worker.killed, looks) == (1, 2)  # seen, then seen again: killed


@pytest.mark.usefixtures("second_thread")
def test_a_call_begun_between_the_looks_keeps_its_threads() -> None:
    sup = Supervisor()
    sup.look.woken(0.0)
    sup.page.begin(1)
    sup.page.call_id = 0
    sup.observe(0.5)  # seen once
    sup.page.begin(2)
    sup.page.call_id = 0  # another call came and went: the thread may be its own
    sup.observe(0.5 + QUIET_LOOK_S)  # seen once since that call
    assert sup.worker.killed == 0
    sup.observe(0.5 + 2 * QUIET_LOOK_S)  # and again, with no call begun between
    assert sup.worker.killed == 1


@pytest.mark.usefixtures("second_thread")
def test_a_thread_seen_at_every_other_look_does_not_keep_the_supervisor_awake() -> None:
    """Sightings that never come twice in a row extend the active window once per idle
    period, not at each: the supervisor dozes (helper-124's review: it looked four times
    a second forever)."""
    quiet = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # one thread
    try:
        sup = Supervisor()
        worker = sup.worker
        worker.looks_at = itertools.cycle([[quiet.pid], [os.getpid()]])  # by turns
        sup.look.woken(0.0)
        sup.page.begin(1)
        sup.page.call_id = 0
        now, nxt, looks = 0.1, sup.observe(0.1), 1
        while nxt is not None and looks < 100:
            now, looks = nxt, looks + 1
            nxt = sup.observe(now)
        assert nxt is None, f"still looking after {looks} looks ({now:.2f} s)"
        assert sup.page.dozing and worker.killed == 0
    finally:
        quiet.kill()
        quiet.wait()
