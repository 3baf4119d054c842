"""Why a call ended without its answer, as its caller is told.

Split from instance.py. Both call paths (a warm worker's persistent channel,
an invocation's socket) come here when no whole reply came, or when a reply
came from a call that was ended anyway: the supervisor's report on the
call's processes (they exited, were killed, or ran to the deadline) and the
sandbox's cgroups (an OOM kill not yet seen) say which `SandboxError` the
caller gets.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from donjon.sandbox.boot import InstanceConfig
from donjon.sandbox.errors import (
    FunctionCrashed,
    FunctionMemoryExceeded,
    FunctionTimeout,
    SandboxError,
)
from donjon.sandbox.instance_cgroups import InstanceCgroups
from donjon.sandbox.limits import ResourceControl

__all__ = ["CallEndings"]


class CallEndings:
    """The error of a call from the supervisor's report on its processes."""

    def __init__(
        self, config: InstanceConfig, cgroups: InstanceCgroups, resources: ResourceControl
    ) -> None:
        self._config = config
        self._cgroups = cgroups
        self._resources = resources
        #: OOM kills of the sandbox's cgroups already blamed on a call
        self._oom_seen = 0

    @staticmethod
    def timed_out_after_reply(report: dict[str, Any], timeout_s: float) -> FunctionTimeout | None:
        """A call that replied but whose processes ran on to its deadline: the answer is
        not used."""
        if report.get("status") != "timeout":
            return None
        return FunctionTimeout(
            f"the function ran past its {timeout_s:g}s timeout after writing its answer"
            " (the answer was not sent)"
        )

    async def without_answer(
        self, report: dict[str, Any], timeout_s: float, replied: bool
    ) -> SandboxError:
        """The error of a call that ended without a whole answer (`replied`: a warm call
        whose end-of-call frame had come), given the supervisor's `report`."""
        status = report.get("status")
        if status == "timeout":
            after = self.timed_out_after_reply(report, timeout_s) if replied else None
            return after or FunctionTimeout(f"the function ran past its {timeout_s:g}s timeout")
        if status == "signal" and report.get("signal") == signal.SIGKILL:
            # Read only on this failure path: did the sandbox's cgroup OOM-kill it?
            cgroups = self._cgroups
            oom = await asyncio.to_thread(cgroups.oom_kills) if cgroups.cgroup else None
            if oom is None or oom > self._oom_seen:
                self._oom_seen = oom or 0
                why = await asyncio.to_thread(self._resources.budget_reached)
                limit = why or f"over its {self._config.memory_mb} MB memory limit"
                return FunctionMemoryExceeded(f"the function was killed: {limit}")
            return FunctionCrashed("the function's process was killed")
        return FunctionCrashed(f"the function's process ended without an answer ({status})")
