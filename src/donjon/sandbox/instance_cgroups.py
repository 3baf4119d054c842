"""The cgroups of one sandbox: its own (memory, pids, cpu) and its per-call slots.

Split from instance.py: `Instance` makes the sandbox's cgroup before bubblewrap
starts (so its limits hold from the first instruction), the per-call cgroups
once the supervisor said hello, reads their OOM kills on a failure path, and
removes both when the sandbox is gone.
"""

from __future__ import annotations

import asyncio
import os

from donjon.sandbox.boot import InstanceConfig
from donjon.sandbox.callgroups import CallGroups, call_memory_bytes, sandbox_pids_max
from donjon.sandbox.limits import Cgroup, ResourceControl

__all__ = ["InstanceCgroups"]

#: Room in the sandbox's memory limit for its supervisor, above its workers' slots.
_SUPERVISOR_BYTES = 64 * 1024 * 1024


class InstanceCgroups:
    """The sandbox's cgroup (None: rlimits only) and its per-call cgroups, if any."""

    def __init__(self, config: InstanceConfig, resources: ResourceControl) -> None:
        self._config = config
        self._resources = resources
        self.cgroup: Cgroup | None = None
        self.call_groups: CallGroups | None = None

    @property
    def slot_width(self) -> int:
        """Descriptors per call slot (memory, pids) the supervisor receives."""
        return self.call_groups.width if self.call_groups is not None else 1

    def make(self) -> Cgroup | None:
        """The sandbox's own cgroup (in a thread: it writes cgroupfs)."""
        calls = self._config.calls_per_instance
        per_call = call_memory_bytes(self._config.memory_mb, self._config.tmp_mb)
        self.cgroup = self._resources.create(
            f"{self._config.function}-v{self._config.version}",
            self._slots() * per_call + _SUPERVISOR_BYTES,
            sandbox_pids_max(calls),
            # One core per call it may run at once, at most the host's cores.
            cpu_cores=float(min(calls, os.cpu_count() or 1)),
        )
        return self.cgroup

    def process_ceiling(self) -> int:
        """RLIMIT_NPROC for the sandbox's workers where no pids cgroup bounds its processes
        (rlimits only, or no pids controller); 0 where one does.

        The sandbox's uid is its own in its user namespace, so the count covers its
        processes alone: at the ceiling its pids cgroup would have had.
        """
        dirs = self.cgroup.dirs if self.cgroup is not None else ()
        if any((d / "pids.max").exists() for d in dirs):
            return 0
        return sandbox_pids_max(self._config.calls_per_instance)

    def _slots(self) -> int:
        """Workers alive at once at most: calls in flight, the spare, one being replaced."""
        return self._config.calls_per_instance + 2

    def _call_group_count(self) -> int:
        """Per-call cgroups: also one for each worker that has answered but not yet
        exited (its caller may already have sent its next call)."""
        return 2 * self._config.calls_per_instance + 2

    def make_call_groups(self, processes: list[int]) -> list[int]:
        """Per-call cgroups' cgroup.procs descriptors for the supervisor (callgroups.py)."""
        self.call_groups = CallGroups.make(
            self.cgroup,
            self._call_group_count(),
            call_memory_bytes(self._config.memory_mb, self._config.tmp_mb),
            processes=processes,
        )
        return self.call_groups.open_procs() if self.call_groups is not None else []

    def oom_kills(self) -> int:
        kills = self.cgroup.oom_kills() if self.cgroup is not None else 0
        return kills + (self.call_groups.oom_kills() if self.call_groups is not None else 0)

    async def release(self) -> None:
        if self.call_groups is not None:
            groups, self.call_groups = self.call_groups, None
            await asyncio.to_thread(groups.remove)
        if self.cgroup is not None:
            cgroup, self.cgroup = self.cgroup, None
            await asyncio.to_thread(cgroup.remove)
