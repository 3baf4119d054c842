"""The settings of the sandboxes and of the wait for their slots (docs/security.md,
README "Settings"): values only; `donjon.config` reads them from the environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_SANDBOX_ID_RANGE", "SandboxSettings"]

DEFAULT_SANDBOX_ID_RANGE = (100_000, 165_535)


@dataclass(frozen=True)
class SandboxSettings:
    """Who sandboxes run as on the host, and what they are given (DONJON_SANDBOX_*)."""

    #: One host uid/gid for every sandbox (DONJON_SANDBOX_UID/GID); None: one per
    #: function from `id_range` (DONJON_SANDBOX_UID_RANGE, `first-last`).
    uid: int | None = None
    gid: int | None = None
    id_range: tuple[int, int] = DEFAULT_SANDBOX_ID_RANGE
    #: Where bundles and the runtime are staged for the sandbox user (DONJON_SANDBOX_DIR).
    staging_dir: Path = Path("/var/lib/donjon/sandbox")
    #: The interpreter sandboxes run (DONJON_SANDBOX_PYTHON); None: found at start.
    python: Path | None = None
    #: Memory all of the node's sandboxes may use together, in MiB
    #: (DONJON_SANDBOX_MEMORY_BUDGET_MB); None: 80% of what the host has.
    memory_budget_mb: int | None = None
    #: Processes and threads all of the node's sandboxes may hold together
    #: (DONJON_SANDBOX_PIDS_BUDGET); None: half the kernel's pid_max.
    pids_budget: int | None = None
    #: Seconds a sandbox may stay idle (no call) before it is stopped (DONJON_SANDBOX_IDLE_S).
    idle_s: float = 300.0
    #: Calls waiting for a function's free slot, per function (DONJON_MAX_QUEUED_PER_FUNCTION)
    #: and over all functions (DONJON_MAX_QUEUED); past either a call is shed with 503.
    max_queued_per_function: int = 64
    max_queued: int = 512
    #: The longest a call waits for a free slot (DONJON_MAX_QUEUE_WAIT_S); a call that
    #: would wait longer, judged from recent service times, is shed at once with 503.
    max_queue_wait_s: float = 5.0
    #: A standing (or overflowing) queue's target and interval (DONJON_SHED_TARGET_MS and
    #: DONJON_SHED_INTERVAL_MS, sandbox/standing.py); 0: one service time of the
    #: function, and the larger of 100 ms and 5 service times.
    shed_target_s: float = 0.0
    shed_interval_s: float = 0.0
