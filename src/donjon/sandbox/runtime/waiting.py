"""Is a warm worker single-threaded? Asked of the kernel, not of the worker.

A warm worker must keep no thread between calls: its import may leave none
(the supervisor refuses to start it: "left threads running"), and between
calls the supervisor looks that it runs one (warmlook.py's
`_look_between_calls`, and supervisor.py's idle look). The count comes from
``/proc/<pid>/task``, which the supervisor can read because a warm worker
makes itself dumpable before any function code (worker.py).

Until issue 14 a warm call ended only when this module also saw the worker
blocked reading its hand-off socket (``back_waiting``); a warm call now ends
at its end-of-call frame, bound to it by a token (sandbox/warmlink.py).

Imports nothing from donjon (this runs inside the sandbox).
"""

from __future__ import annotations

import os


def single_threaded(inner: list[int]) -> bool:
    """True when the worker, `inner` (`Worker.inner`: its pid 1, [] once gone), runs one
    thread (as it must between warm calls)."""
    try:
        return len(inner) == 1 and _threads(inner[0]) == 1
    except OSError:
        return False


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))
