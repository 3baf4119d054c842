"""What a caller learns of a failed call: `errorType` and `errorMessage`, or the request id.

Callers allowed to read the function's logs (`function:logs`) get the error's
type (the exception's name, or AWS Lambda's `Runtime.*` / `Sandbox.*` names for
failures of the runtime) and its message, already redacted of the function's
secrets (invoke.py), with no trace and no file paths. Everyone else gets only
the request id, to hand to someone who may read the logs.
"""

from __future__ import annotations

import re

from donjon.gateway.node import Node
from donjon.identity import Action, Principal
from donjon.lifecycle import Deployed
from donjon.sandbox import (
    FunctionCrashed,
    FunctionFailed,
    FunctionMemoryExceeded,
    FunctionTimeout,
    SandboxError,
)

__all__ = ["FUNCTION_FAILURES", "error_fields", "may_read_logs"]

#: The failures that are the function's own (not the platform's: unavailable, busy).
FUNCTION_FAILURES = (FunctionFailed, FunctionTimeout, FunctionMemoryExceeded, FunctionCrashed)
_MAX_MESSAGE = 1024
#: An absolute path of two parts or more, not inside a URL or a longer word.
_PATH = re.compile(r"(?<![\w/.:~-])/(?:[^\s/'\"()<>\[\]{},:;]+/)+([^\s/'\"()<>\[\]{},:;]*)")


def may_read_logs(node: Node, principal: Principal | None, deployed: Deployed) -> bool:
    """Whether `principal` may read `deployed`'s logs (decided quietly: nothing is denied)."""
    if principal is None:
        return False
    owner = deployed.record.owner or None
    return node.policy.decide(principal, Action.LOGS, deployed.name, owner).allowed


def _without_paths(text: str) -> str:
    """`text` with every absolute file path cut to its last part (`/fn/data/x.csv` -> `x.csv`)."""
    return _PATH.sub(lambda m: m.group(1) or "<path>", text)


def error_fields(error: SandboxError) -> dict[str, str]:
    """`errorType` and `errorMessage` of a failed call, as AWS Lambda names them."""
    message = error.error_message if error.error_message is not None else error.message
    message = _without_paths(message)
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "..."
    return {"errorType": error.error_type, "errorMessage": message}
