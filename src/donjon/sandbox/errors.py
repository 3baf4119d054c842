"""Errors of the sandbox subsystem."""

from __future__ import annotations

from donjon.errors import Error

__all__ = [
    "FunctionCrashed",
    "FunctionFailed",
    "FunctionMemoryExceeded",
    "FunctionTimeout",
    "SandboxError",
    "SandboxUnavailable",
    "TooManyInvocations",
]


class SandboxError(Error):
    """The sandbox could not run a function."""

    status = 500
    title = "Sandbox error"
    #: The function's captured stdout/stderr and traceback, for `donjon logs` only.
    output: str = ""
    trace: str = ""


class SandboxUnavailable(SandboxError):
    """bubblewrap is missing or cannot create its namespaces: nothing may run."""

    status = 503
    title = "Sandbox unavailable"


class FunctionFailed(SandboxError):
    """The handler raised, or returned something that is not JSON."""

    status = 500
    title = "Function error"


class FunctionTimeout(SandboxError):
    status = 504
    title = "Function timed out"


class FunctionMemoryExceeded(SandboxError):
    status = 507
    title = "Function exceeded its memory limit"


class FunctionCrashed(SandboxError):
    status = 502
    title = "Function crashed"


class TooManyInvocations(SandboxError):
    status = 429
    title = "Too many concurrent invocations"
