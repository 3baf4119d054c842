"""The bench handler: what every server under test calls (the `hello` example's work)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import Protocol

    class Context(Protocol):
        """What the handler reads of the context (Donjon's, or the baselines' own)."""

        request_id: str


def handler(event: dict[str, Any], context: Context) -> dict[str, str]:
    name = event.get("name", "world")
    return {"message": f"hello, {name}", "request_id": context.request_id}
