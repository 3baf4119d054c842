"""`Secret`: a credential held in memory whose `repr` and `str` never show it.

The API key in `Settings`, the master key and the keys derived from it are
held as `Secret` values, so a log line, a traceback's locals or a debugger's
`repr(settings)` shows `Secret('**********')`, never the value; code that
needs the value says so with `reveal()`.

Written here rather than taken from a library: starlette's `Secret` holds
text only (the derived keys are bytes) and pydantic's `SecretStr` costs
every CLI start ~120 ms of imports for a dozen lines of behaviour.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["Secret"]

T = TypeVar("T", str, bytes)


class Secret(Generic[T]):
    """A masked value: equal to another `Secret` of the same value, never printed."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value: T = value

    def reveal(self) -> T:
        """The value itself, for the one place that uses it (an HMAC, a header)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not pickled: pass what needs it explicitly")
