"""Function isolation: bubblewrap sandboxes, resource limits, supervisors and workers, the pool."""

from __future__ import annotations

from donjon.sandbox.backlog import QueueBounds
from donjon.sandbox.egresslink import EgressOpener, SandboxEgressLink
from donjon.sandbox.errors import (
    CallShed,
    FunctionBlocked,
    FunctionCrashed,
    FunctionFailed,
    FunctionMemoryExceeded,
    FunctionResultTooLarge,
    FunctionTimeout,
    SandboxError,
    SandboxUnavailable,
    TooManyInvocations,
)
from donjon.sandbox.host import SandboxHost
from donjon.sandbox.instance import CallResult, Instance, InstanceConfig
from donjon.sandbox.limits import ResourceControl, ResourceMode, detect_resource_control
from donjon.sandbox.pool import SandboxPool
from donjon.sandbox.probe import check_sandbox
from donjon.sandbox.seccomp import Filters, compile_filters
from donjon.sandbox.standing import ShedTiming
from donjon.sandbox.subcalls import SubCall, answer_error, answer_ok

__all__ = [
    "CallResult",
    "CallShed",
    "EgressOpener",
    "Filters",
    "FunctionBlocked",
    "FunctionCrashed",
    "FunctionFailed",
    "FunctionMemoryExceeded",
    "FunctionResultTooLarge",
    "FunctionTimeout",
    "Instance",
    "InstanceConfig",
    "QueueBounds",
    "ResourceControl",
    "ResourceMode",
    "SandboxEgressLink",
    "SandboxError",
    "SandboxHost",
    "SandboxPool",
    "SandboxUnavailable",
    "ShedTiming",
    "SubCall",
    "TooManyInvocations",
    "answer_error",
    "answer_ok",
    "check_sandbox",
    "compile_filters",
    "detect_resource_control",
]
