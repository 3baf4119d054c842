"""The `context` a handler receives."""

from __future__ import annotations

import sys
import time
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any


class Context:
    """What a handler may know about its invocation. Secrets: only those granted."""

    __slots__ = ("deadline", "function_name", "principal", "request_id", "secrets", "version")

    def __init__(self, meta: dict[str, Any]) -> None:
        self.request_id: str = meta["request_id"]
        self.function_name: str = meta["function"]
        self.version: int = meta["version"]
        self.deadline: float = meta["deadline"]
        self.principal: str | None = meta.get("principal")
        self.secrets = MappingProxyType(dict(meta.get("secrets") or {}))

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.time())

    def log(self, *parts: object) -> None:
        print(*parts, file=sys.stderr, flush=True)

    def __repr__(self) -> str:
        return f"Context(request_id={self.request_id!r}, function_name={self.function_name!r})"
