"""The `context` a handler receives: Donjon's fields and those of AWS Lambda's Python context."""

from __future__ import annotations

import sys
import time
from types import MappingProxyType
from typing import TYPE_CHECKING

from . import lambda_env

if TYPE_CHECKING:
    from typing import Any


class Context:
    """What a handler may know about its invocation. Secrets: only those granted.

    A handler written for AWS Lambda finds what Lambda's context offers:
    `aws_request_id`, `function_name`, `function_version`, `memory_limit_in_mb`,
    `invoked_function_arn` (Donjon's own ARN-like name), `log_group_name`,
    `log_stream_name`, `identity`, `client_context` and
    `get_remaining_time_in_millis()`.
    """

    __slots__ = (
        "client_context",
        "deadline",
        "function_name",
        "identity",
        "memory_limit_in_mb",
        "principal",
        "request_id",
        "secrets",
        "version",
    )

    def __init__(self, meta: dict[str, Any]) -> None:
        self.request_id: str = meta["request_id"]
        self.function_name: str = meta["function"]
        self.version: int = meta["version"]
        self.deadline: float = meta["deadline"]
        self.principal: str | None = meta.get("principal")
        self.secrets = MappingProxyType(dict(meta.get("secrets") or {}))
        self.memory_limit_in_mb: int = int(meta.get("memory_mb") or 0)
        # Lambda's are for its mobile SDKs' callers; no Donjon caller sends them.
        self.identity: object | None = None
        self.client_context: object | None = None

    # -- AWS Lambda's names -----------------------------------------------------

    @property
    def aws_request_id(self) -> str:
        return self.request_id

    @property
    def function_version(self) -> str:
        return str(self.version)

    @property
    def invoked_function_arn(self) -> str:
        return lambda_env.function_arn(self.function_name)

    @property
    def log_group_name(self) -> str:
        return lambda_env.log_group(self.function_name)

    @property
    def log_stream_name(self) -> str:
        return lambda_env.log_stream(self.version)

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the call's deadline (0 once it has passed), as Lambda."""
        return max(0, int((self.deadline - time.time()) * 1000))

    # -- Donjon's ---------------------------------------------------------------

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.time())

    def log(self, *parts: object) -> None:
        print(*parts, file=sys.stderr, flush=True)

    def __repr__(self) -> str:
        return f"Context(request_id={self.request_id!r}, function_name={self.function_name!r})"
