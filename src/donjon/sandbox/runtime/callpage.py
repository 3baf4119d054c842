"""A warm sandbox's call page: the gateway writes which call runs, the supervisor reads it.

The gateway (sandbox/warmlink.py `CallPage`) makes one page of shared memory
per warm sandbox and hands it to the supervisor once, at boot, with the
channel the worker gets. Before it sends a call on the channel it writes the
call's id and deadline here, and clears the id once the call's end-of-call
frame is read: the supervisor learns of each call without a message, a
socket or a system call. It looks at the page while calls come (every
`ACTIVE_LOOK_S`), kills the worker at a call's deadline and reports the end
of a call whose worker died; idle, it dozes (says so in the page) and the
gateway wakes it with one control message at the next call.

Only the supervisor maps the page, with MADV_DONTFORK: no worker (so no
function code) has it, and the descriptor is closed at once. What the
supervisor reads here decides only when it kills the worker it supervises.

Layout (little endian): call id (u64, 0 between calls) at 0, deadline
(f64, CLOCK_MONOTONIC seconds) at 8, calls begun (u64) at 16, dozing (u8) at 24.

Imports nothing from donjon (this runs inside the sandbox).
"""

from __future__ import annotations

import mmap
import os
import struct

SIZE = 4096
_CALL = struct.Struct("<QdQ")
_DOZING = 24
#: While calls come, the supervisor looks at the page this often (a call found at a look
#: is then watched to its deadline exactly; a shorter one may be killed this late).
ACTIVE_LOOK_S = 0.25
#: With no call begun for this long, it dozes until the gateway wakes it.
DOZE_AFTER_S = 2.0


class CallPage:
    """The supervisor's view of the page (see the module)."""

    def __init__(self, fd: int) -> None:
        try:
            self._map = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self._map.madvise(mmap.MADV_DONTFORK)

    def read(self) -> tuple[int, float, int]:
        """(call id, deadline, calls begun); the id is read again last, so a torn write
        shows as a changed id and is read anew at the next look."""
        for _ in range(3):
            call_id, deadline, begun = _CALL.unpack_from(self._map, 0)
            if _CALL.unpack_from(self._map, 0)[0] == call_id:
                return call_id, deadline, begun
        return 0, 0.0, begun

    def doze(self, dozing: bool) -> None:
        self._map[_DOZING] = 1 if dozing else 0
