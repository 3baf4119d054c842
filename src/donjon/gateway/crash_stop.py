"""Stopping the node at once, as a crash does, when its database is another node's.

A node whose PostgreSQL lock was lost with its connection, and taken by another node
before it could take it again (store/node_lock.py), stopped as SIGTERM stops it: calls in
flight ran for DONJON_SHUTDOWN_GRACE_S and their records, then the orderly shutdown's, were
appended to a log the other node's audit writer now held (two writers on one log; a key
the other node revoked still served here meanwhile). Nothing this node does after that
moment may reach the database, so it ends the way a SIGKILL ends it, a path the node is
built to survive (tests/security/test_audit_crash.py): its children first (the audit
writer, which would otherwise commit what it was sent, the scan helper, the sandboxes),
then itself. Calls in flight get no answer; async deliveries run again once their leases
expire, on whichever node then holds the database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path

__all__ = ["stop_now"]

log = logging.getLogger("donjon")


def stop_now() -> None:
    """SIGKILL this process's children, then this process (never returns normally)."""
    log.error("this node stops at once: nothing more of it may reach the database")
    for pid in _children():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _children() -> list[int]:
    """The pids of this process's children, from every thread's `children` list (a child
    not yet reaped keeps its pid: none of them can be another process's)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path("/proc/self/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                found.extend(int(p) for p in (task / "children").read_text().split())
    return found
