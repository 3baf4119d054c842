"""`read_body` on the ASGI messages themselves answers what it answered through Starlette's
`Request.stream()`: the same body, the same refusals, and the body kept for a later read."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request

from donjon.errors import Error
from donjon.gateway import access, events

_CASES: dict[str, list[dict[str, Any]]] = {
    "one message": [{"type": "http.request", "body": b'{"a": 1}'}],
    "no body": [{"type": "http.request"}],
    "in pieces": [
        {"type": "http.request", "body": b'{"a"', "more_body": True},
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": b": 2}", "more_body": False},
    ],
    "at the limit": [{"type": "http.request", "body": b"x" * 16}],
    "past the limit": [
        {"type": "http.request", "body": b"x" * 10, "more_body": True},
        {"type": "http.request", "body": b"x" * 7, "more_body": False},
    ],
    "cut short": [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.disconnect"},
    ],
    # One message, the whole body (`_received`'s fast path), at and around its bounds.
    "one message past the limit": [{"type": "http.request", "body": b"x" * 17}],
    "one message, said to be the last": [
        {"type": "http.request", "body": b"[1]", "more_body": False}
    ],
    "one empty message": [{"type": "http.request", "body": b""}],
    "one bytearray message": [{"type": "http.request", "body": bytearray(b'{"b": 2}')}],
    "a first message of another type": [
        {"type": "http.other"},
        {"type": "http.request", "body": b"{}"},
    ],
    "disconnected at once": [{"type": "http.disconnect"}],
}


def _read(messages: list[dict[str, Any]], *, through_stream: bool) -> tuple[Any, Any, bool]:
    """What `read_body` answers (bytes, or the error's type and message), what a later
    `request.body()` gets, and whether the request was marked disconnected."""
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    async def go() -> tuple[Any, Any, bool]:
        request = Request({"type": "http", "method": "POST", "headers": []}, receive)
        if through_stream:  # (not False: read_body takes Starlette's stream, as before)
            request._stream_consumed = 0  # type: ignore[assignment]  # not False, on purpose
        try:
            answer = await access.read_body(request, 16)
        except Error as e:
            return _refusal(e), None, request._is_disconnected
        kept = None if through_stream else await request.body()
        return answer, kept, request._is_disconnected

    return asyncio.run(go())


def _refusal(error: Exception) -> tuple[str, str]:
    return type(error).__name__, str(error)


@pytest.mark.parametrize("case", list(_CASES))
def test_read_body_answers_as_starlettes_stream(case: str) -> None:
    messages = _CASES[case]
    fast, kept, disconnected = _read(messages, through_stream=False)
    plain, _, plain_disconnected = _read(messages, through_stream=True)
    assert fast == plain and type(fast) is type(plain)
    assert disconnected == plain_disconnected
    if isinstance(fast, bytes):
        assert kept == fast  # a later read gets the same body, not a hang


def _read_event(messages: list[dict[str, Any]], *, through_stream: bool, checked: bool) -> Any:
    """What `events.read_event` answers for a function `fn` with a limit of 16 bytes."""
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    async def go() -> Any:
        request = Request({"type": "http", "method": "POST", "headers": []}, receive)
        if through_stream:
            request._stream_consumed = 0  # type: ignore[assignment]  # not False, on purpose
        deployed: Any = SimpleNamespace(name="fn")
        try:
            return await events.read_event(request, deployed, 16, declared_checked=checked)
        except Error as e:
            return _refusal(e)

    return asyncio.run(go())


@pytest.mark.parametrize("checked", [False, True])
@pytest.mark.parametrize("case", list(_CASES))
def test_read_event_refuses_as_it_did_on_both_reads(case: str, checked: bool) -> None:
    """`read_event` hands `read_body` the function's own refusal (no coroutine of its own
    catching the route's): the same 413, naming the function, on either read."""
    fast = _read_event(_CASES[case], through_stream=False, checked=checked)
    plain = _read_event(_CASES[case], through_stream=True, checked=checked)
    assert fast == plain
    if case == "past the limit":
        assert fast == ("PayloadTooLarge", str(events._too_large(SimpleNamespace(name="fn"), 16)))  # type: ignore[arg-type]  # a stand-in
        assert "function fn" in fast[1]
