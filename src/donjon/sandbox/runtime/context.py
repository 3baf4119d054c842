"""The `context` a handler receives."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping  # loaded already: typing imports it
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


class Secrets(Mapping[str, str]):
    """The granted secrets, read-only, noting which ones the handler read.

    Reading a value (`s[name]`, `s.get(name)`, `values()`, `items()`, `dict(s)`,
    `copy()`) marks its name as read; the names alone (`in`, `keys()`, iteration,
    `len`) do not. The names read go back in the call's reply, so the node can
    tell a grant that is used from one that is not (`donjon permissions unused`).
    """

    __slots__ = ("_read", "_values")

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values
        self._read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        value = self._values[name]
        self._read.add(name)
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def copy(self) -> dict[str, str]:
        """A plain dict of every value (as `MappingProxyType.copy` gave): all are read."""
        return dict(self.items())

    def read_names(self) -> list[str]:
        """The names whose values the handler read, sorted (strings only, whatever it did)."""
        return sorted(name for name in self._read if isinstance(name, str))

    def __repr__(self) -> str:
        return f"Secrets({sorted(self._values)!r})"  # names only, never values


class Context:
    """What a handler may know about its invocation. Secrets: only those granted."""

    __slots__ = ("deadline", "function_name", "principal", "request_id", "secrets", "version")

    def __init__(self, meta: dict[str, Any]) -> None:
        self.request_id: str = meta["request_id"]
        self.function_name: str = meta["function"]
        self.version: int = meta["version"]
        self.deadline: float = meta["deadline"]
        self.principal: str | None = meta.get("principal")
        self.secrets = Secrets(dict(meta.get("secrets") or {}))

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.time())

    def log(self, *parts: object) -> None:
        print(*parts, file=sys.stderr, flush=True)

    def __repr__(self) -> str:
        return f"Context(request_id={self.request_id!r}, function_name={self.function_name!r})"
