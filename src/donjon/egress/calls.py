"""The calls a sandbox's egress serves: who is calling, and what they have used.

A connection on a sandbox's socket names its call by the token the gateway
handed that call (`DONJON-EGRESS/1 <token>`). Tokens are looked up by their
SHA-256, so the lookup's timing says nothing about a token's characters, and
a token is only valid on the socket of the sandbox it was issued for.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Call", "CallTable", "LimitReached"]


class LimitReached(Exception):
    """A per-call cap (bytes, connections) was reached; `reason` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False, slots=True)
class Call:
    """One call of a sandbox's function, with what its connections have used so far."""

    id: str
    function: str
    version: int
    request_id: str
    on_refused: Callable[[str], None] | None = None
    connections: int = 0
    bytes: int = 0
    #: The egress_attempts policy record is written once per call.
    policy_noted: bool = False
    ended: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def charge(self, n: int, limit: int) -> None:
        """Count `n` more bytes (both directions together); LimitReached past `limit`."""
        self.bytes += n
        if self.bytes > limit:
            raise LimitReached(f"the call's egress byte limit ({limit} bytes) was reached")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


class CallTable:
    """The calls in flight in one sandbox, by token."""

    def __init__(self, function: str, version: int) -> None:
        self.function = function
        self.version = version
        self._calls: dict[bytes, Call] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def begin(self, request_id: str, on_refused: Callable[[str], None] | None) -> tuple[str, Call]:
        token = secrets.token_urlsafe(24)
        call = Call(secrets.token_hex(8), self.function, self.version, request_id, on_refused)
        self._calls[_digest(token)] = call
        return token, call

    def get(self, token: str) -> Call | None:
        return self._calls.get(_digest(token))

    def pop(self, token: str) -> Call | None:
        return self._calls.pop(_digest(token), None)

    def pop_all(self) -> list[Call]:
        calls = list(self._calls.values())
        self._calls.clear()
        return calls
