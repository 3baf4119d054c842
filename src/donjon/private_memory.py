"""A node process keeps its memory to itself: no core file, no reader of /proc/PID/mem.

`donjon serve` holds every secret value the vault opened, the keys that open them and
the audit log's signing seed; its audit writer holds that seed too. Each makes itself
non-dumpable as it starts (prctl PR_SET_DUMPABLE 0): other processes of its user may
no longer ptrace it nor read its /proc/PID/mem, environ or descriptors (root still
may), and sets its core file size to 0, so a crash writes none of it to disk. Both
hold for the process's life; a program it executes starts dumpable again (the
sandboxes set their own: sandbox/runtime/).
"""

from __future__ import annotations

import logging
import resource

__all__ = ["keep_memory_private"]

log = logging.getLogger("donjon")


def keep_memory_private() -> None:
    """No core file of this process, and no other process of its user reading it."""
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError) as e:  # lowering a limit is always allowed: a Donjon bug
        log.warning("core files: the limit could not be set to 0: %s", e)
    # Imported here: it loads libc through ctypes, which the other commands do without.
    from donjon.sandbox.runtime.lowlevel import PR_SET_DUMPABLE, prctl

    try:
        prctl(PR_SET_DUMPABLE, 0)
    except OSError as e:
        log.warning("this process's memory stays readable by its user: %s", e)
