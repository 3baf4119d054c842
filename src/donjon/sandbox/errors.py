"""Errors of the sandbox subsystem."""

from __future__ import annotations

from typing import TYPE_CHECKING

from donjon.errors import Error

if TYPE_CHECKING:
    from donjon.sandbox.policy_events import PolicyEvent

__all__ = [
    "CallShed",
    "FunctionBlocked",
    "FunctionCrashed",
    "FunctionFailed",
    "FunctionMemoryExceeded",
    "FunctionResultTooLarge",
    "FunctionTimeout",
    "SandboxError",
    "SandboxUnavailable",
    "TooManyInvocations",
]


class SandboxError(Error):
    """The sandbox could not run a function."""

    title = "Sandbox error"
    #: The function's captured stdout/stderr and traceback, for `donjon logs` only.
    output: str = ""
    trace: str = ""
    #: The secrets the handler says it read before it failed (sandbox/replies.py).
    secrets_read: tuple[str, ...] = ()
    #: The peak memory the worker reported for the call (KiB), when it reported one.
    memory_kb: int | None = None
    #: What the call did that a runtime policy watches (sandbox/policy_events.py).
    policy_events: tuple[PolicyEvent, ...] = ()
    #: What failed, in AWS Lambda's words (`errorType`), for callers who may read the
    #: function's logs; `error_message` (when set) is the function's own message.
    error_type: str = "Runtime.Error"
    error_message: str | None = None


class SandboxUnavailable(SandboxError):
    """bubblewrap is missing or cannot create its namespaces: nothing may run."""

    title = "Sandbox unavailable"


class FunctionFailed(SandboxError):
    """The handler raised, or returned something that is not JSON."""

    title = "Function error"
    error_type = "Runtime.Unhandled"


class FunctionTimeout(SandboxError):
    title = "Function timed out"
    error_type = "Sandbox.Timedout"


class FunctionMemoryExceeded(SandboxError):
    title = "Function exceeded its memory limit"
    error_type = "Runtime.OutOfMemory"


class FunctionCrashed(SandboxError):
    title = "Function crashed"
    error_type = "Runtime.ExitError"


class TooManyInvocations(SandboxError):
    title = "Too many concurrent invocations"


class CallShed(SandboxError):
    """The call was turned away before it queued: its function's queue, or the node's,
    is full, or it would wait past the queue-time budget (sandbox/backlog.py)."""

    title = "Overloaded"

    def __init__(
        self, message: str, *, hint: str = "", retry_after_s: float = 1.0, node_only: bool = False
    ) -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s
        #: Refused at the node's bound alone: its function's own queue is not full.
        self.node_only = node_only


class FunctionBlocked(FunctionFailed):
    """A runtime policy in `block` mode ended the call (egress_attempts: a refused
    connection; sandbox/egresslink.py)."""

    title = "Function blocked by its runtime policy"
    error_type = "Sandbox.PolicyBlocked"


class FunctionResultTooLarge(SandboxError):
    """The handler returned a result larger than the node's response limit
    (DONJON_MAX_RESPONSE_BYTES): refused in its sandbox, and again by the gateway
    should function code write a reply of its own. The function's fault: its
    caller gets a 502, its owner the reason in `donjon logs`."""

    title = "Function result too large"
    error_type = "Function.ResponseSizeTooLarge"  # Lambda's name for it

    @classmethod
    def over(cls, limit: int, size: int | None = None) -> FunctionResultTooLarge:
        got = f" ({size} bytes)" if size is not None else ""
        return cls(
            f"the function's result{got} is over this node's response limit of {limit} bytes"
            " (DONJON_MAX_RESPONSE_BYTES)",
            hint="return less (a reference to stored data instead of the data), or ask the "
            "node's operator to raise DONJON_MAX_RESPONSE_BYTES (at most 6 MiB)",
        )
