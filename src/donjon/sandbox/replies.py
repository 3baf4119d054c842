"""A call's reply as the gateway reads it: bounded, and trusted for nothing.

Function code owns its call socket and could write frames of its own, so the
reply's head is parsed with a depth bound and checked for shape, and the
gateway holds no more than MAX_HEAD of head (64 KiB of captured output kept)
and MAX_RESULT of result for a call, whatever it says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from donjon import boundedjson
from donjon.boundedjson import JSONTooDeep
from donjon.sandbox.errors import (
    FunctionCrashed,
    FunctionFailed,
    FunctionMemoryExceeded,
    SandboxError,
)

__all__ = ["MAX_HEAD", "MAX_RESULT", "CallResult", "reply_head", "reply_result"]

MAX_HEAD = 256 * 1024
MAX_RESULT = 6 * 1024 * 1024
_MAX_OUTPUT = 64 * 1024
#: How the runtime reports an exception the handler raised: "TypeName: message".
_RAISED = re.compile(r"([A-Za-z_][A-Za-z0-9_.]{0,127}): ?(.*)", re.DOTALL)


@dataclass(frozen=True)
class CallResult:
    """A handler's answer: `body` is its JSON result, `output` its captured stdout/stderr."""

    body: bytes
    output: str


def reply_head(raw: bytes) -> dict[str, Any]:
    """The reply's first frame. Function code could have written it: trust nothing."""
    try:
        head = boundedjson.loads(raw)
    except (ValueError, JSONTooDeep):
        head = None
    if not isinstance(head, dict):
        raise FunctionCrashed("the function's reply was malformed")
    return head


def reply_result(head: dict[str, Any], body: bytes) -> CallResult:
    """The call's result, or the sandbox error its head reports (output and trace kept)."""
    output = str(head.get("out", ""))[-_MAX_OUTPUT:]
    if head.get("ok"):
        return CallResult(body=body, output=output)
    kind = head.get("kind")
    error: SandboxError
    if kind == "memory":
        error = FunctionMemoryExceeded("the function exceeded its memory limit")
    elif kind == "result":
        error = FunctionFailed(str(head.get("error")))
        error.error_type = "Runtime.MarshalError"
    else:
        error = FunctionFailed(str(head.get("error", "the function failed")))
        raised = _RAISED.match(error.message) if kind == "error" else None
        if raised is not None:  # "ValueError: message", as the runtime reports a raise
            error.error_type, error.error_message = raised.group(1), raised.group(2)
    error.output = output
    error.trace = str(head.get("trace", ""))
    raise error
