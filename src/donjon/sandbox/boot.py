"""What a sandbox is told when it starts, and what its failure to start means.

`InstanceConfig` is what one sandbox runs and under which limits; `boot_message`
is the one message the supervisor gets before it forks any worker
(runtime/startup.py reads it), and `send_boot` sends it with the descriptors
that follow it; `import_failure` is the error a caller sees when the handler
could not be imported.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from donjon.manifest.policies import RuntimePolicies
from donjon.sandbox.errors import FunctionFailed
from donjon.sandbox.seccomp import Filters

__all__ = ["InstanceConfig", "boot_message", "import_failure", "send_boot"]

#: Per-call cgroup descriptors in one control message (the kernel takes 253 at most).
_FDS_PER_MESSAGE = 64


@dataclass(frozen=True)
class InstanceConfig:
    """What one sandbox runs, and under which limits."""

    function: str
    version: int
    bundle: Path
    module: str
    handler: str
    warm: bool
    memory_mb: int
    tmp_mb: int
    #: The function's limit on calls in flight (over all its sandboxes).
    concurrency: int
    timeout_s: float = 10.0
    #: The root logger's level (manifest `log_level`), as AWS_LAMBDA_LOG_LEVEL; None: Python's.
    log_level: str | None = None
    #: Runtime policies (manifest `policies`): child processes blocked unless allowed.
    policies: RuntimePolicies = dataclasses.field(default_factory=RuntimePolicies)
    #: `permissions.egress` (host:port grants); empty: no way out of the sandbox at all.
    egress: tuple[str, ...] = ()
    #: The runtime policy for a refused egress attempt: "alert" or "block" (manifest
    #: `policies.egress_attempts`: where `policies:` is parsed, registry.py sets it).
    egress_attempts: str = "alert"

    @property
    def calls_per_instance(self) -> int:
        """A warm sandbox serves one call at a time; an invocation one, `concurrency`."""
        return 1 if self.warm else self.concurrency


def boot_message(
    config: InstanceConfig,
    filters: Filters,
    *,
    egress: bool,
    preload: list[str],
    slot_width: int,
    slots: int,
    process_ceiling: int = 0,
) -> bytes:
    """The supervisor's configuration: the handler, its limits, filters and policies
    (`slots`: how many per-call cgroup descriptors `send_boot` sends after it;
    `process_ceiling`: each worker's RLIMIT_NPROC where no pids cgroup bounds the
    sandbox, 0 where one does)."""
    return json.dumps(
        {
            "module": config.module,
            "function": config.handler,
            # What Lambda's runtime tells a function (runtime/lambda_env.py).
            "function_name": config.function,
            "function_version": config.version,
            "log_level": config.log_level,
            "mode": "warm" if config.warm else "invocation",
            "memory_mb": config.memory_mb,
            "tmp_mb": config.tmp_mb,
            "timeout_s": config.timeout_s,
            "process_ceiling": process_ceiling,
            # Invocation: calls at once at most, which bounds the spares (runtime/spares.py).
            "concurrency": config.calls_per_instance,
            "egress": egress,
            "call_filter": filters.call.hex(),
            "policies": config.policies.runtime(),
            "call_watch": filters.call_watch.hex(),
            "seccomp_nr": filters.seccomp_nr,
            "process_calls": filters.process_calls,
            "preload": preload,
            # Descriptors per slot (memory, pids), and the messages that carry them
            # after this one.
            "cgroup_slot_width": slot_width,
            "cgroup_slot_messages": -(-slots // _FDS_PER_MESSAGE),
        }
    ).encode()


def send_boot(ctrl: socket.socket, message: bytes, handed: list[int], slots: list[int]) -> None:
    """Send `message` (`boot_message`) with `handed` (a warm sandbox's channel and call
    page), then the per-call cgroups' descriptors `slots`, `_FDS_PER_MESSAGE` to a
    message; `slots` are closed here whatever happens (`handed` are the caller's)."""
    try:
        socket.send_fds(ctrl, [message], handed)
        for i in range(0, len(slots), _FDS_PER_MESSAGE):
            socket.send_fds(ctrl, [b"fds"], slots[i : i + _FDS_PER_MESSAGE])
    finally:
        for fd in slots:
            os.close(fd)


def import_failure(ready: dict[str, Any]) -> FunctionFailed:
    """The error of a sandbox whose first worker reported anything but ready."""
    reported = str(ready.get("error"))
    kind, _, why = reported.partition(": ")
    if kind == "HandlerNotUsable":  # runtime/handler_check.py: said as it is
        error = FunctionFailed(why)
        error.error_type = "Runtime.HandlerNotFound"
    else:
        error = FunctionFailed(f"the handler failed to import: {reported}")
        error.error_type = "Runtime.ImportModuleError"
        error.trace = str(ready.get("trace", ""))
    return error
