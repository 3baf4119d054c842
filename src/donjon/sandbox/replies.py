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
    FunctionResultTooLarge,
    SandboxError,
)
from donjon.sandbox.policy_events import PolicyEvent

__all__ = [
    "MAX_HEAD",
    "MAX_RESULT",
    "CallResult",
    "check_result_size",
    "reply_head",
    "reply_result",
    "secrets_read",
]

MAX_HEAD = 256 * 1024
#: The most of result the gateway reads of any reply (a frame over it breaks the call
#: protocol); DONJON_MAX_RESPONSE_BYTES, at most this, is the limit a result is held to.
MAX_RESULT = 6 * 1024 * 1024
_MAX_OUTPUT = 64 * 1024
#: The most secret names a reply may say it read (the gateway keeps only granted ones).
_MAX_SECRETS_READ = 256
_MAX_SECRET_NAME = 63
#: How the runtime reports an exception the handler raised: "TypeName: message".
_RAISED = re.compile(r"([A-Za-z_][A-Za-z0-9_.]{0,127}): ?(.*)", re.DOTALL)


@dataclass(frozen=True)
class CallResult:
    """A handler's answer: `body` is its JSON result, `output` its captured stdout/stderr."""

    body: bytes
    output: str
    #: The secrets the handler says it read: its own word, kept only if granted.
    secrets_read: tuple[str, ...] = ()
    #: The peak memory the worker reported (KiB), None if it said nothing usable.
    #: Function code could write its own reply: a figure for its owner, never for limits.
    memory_kb: int | None = None
    #: What the call did that a runtime policy watches (sandbox/policy_events.py).
    policy_events: tuple[PolicyEvent, ...] = ()


def reply_head(raw: bytes) -> dict[str, Any]:
    """The reply's first frame. Function code could have written it: trust nothing."""
    try:
        head = boundedjson.loads(raw)
    except (ValueError, JSONTooDeep):
        head = None
    if not isinstance(head, dict):
        raise FunctionCrashed("the function's reply was malformed")
    return head


def reply_result(
    head: dict[str, Any], body: bytes, policy_events: tuple[PolicyEvent, ...] = ()
) -> CallResult:
    """The call's result, or the sandbox error its head reports (output and trace kept);
    either carries `policy_events`, what the call did that its runtime policies watch."""
    output = str(head.get("out", ""))[-_MAX_OUTPUT:]
    read = secrets_read(head)
    memory = _memory_kb(head.get("mem_kb"))
    if head.get("ok"):
        return CallResult(body, output, read, memory, policy_events)
    kind = head.get("kind")
    error: SandboxError
    if kind == "memory":
        error = FunctionMemoryExceeded("a MemoryError: it asked for more memory than its limit")
    elif kind == "too_large":  # the runtime refused it against the limit the call carried
        error = FunctionResultTooLarge.over(
            _bounded_int(head.get("limit")) or MAX_RESULT, _bounded_int(head.get("size"))
        )
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
    error.secrets_read = read
    error.memory_kb = memory
    error.policy_events = policy_events
    raise error


def check_result_size(result: CallResult, limit: int) -> None:
    """`FunctionResultTooLarge` for a result over `limit` (DONJON_MAX_RESPONSE_BYTES): the
    runtime refuses one itself; this holds when function code wrote its own reply."""
    if len(result.body) > limit:
        error = FunctionResultTooLarge.over(limit, len(result.body))
        error.output, error.memory_kb = result.output, result.memory_kb
        raise error


def secrets_read(head: dict[str, Any]) -> tuple[str, ...]:
    """The secret names the head says the handler read: strings of a name's length, bounded.

    Anything else is ignored, not an error: the call's outcome does not hang on it.
    """
    names = head.get("secrets_read")
    if not isinstance(names, list):
        return ()
    return tuple(
        sorted(
            {
                name
                for name in names[:_MAX_SECRETS_READ]
                if isinstance(name, str) and 0 < len(name) <= _MAX_SECRET_NAME
            }
        )
    )


def _bounded_int(value: object) -> int | None:
    """A reported byte count, if it is a plausible whole number."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 40:
        return value
    return None


def _memory_kb(value: object) -> int | None:
    """A reported peak memory, if it is a plausible whole number of KiB."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1 << 40:
        return value
    return None
