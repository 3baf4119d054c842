"""A function's JSON result's head, written from its checked lines (checked_head.py), is
byte for byte what uvicorn's own `send` writes for the same message, and leaves the cycle
in the same state; whatever the fast path does not take is uvicorn's `send`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from donjon.gateway.checked_head import CHECKED_HEAD, CheckedCycle, default_lines
from donjon.gateway.response_policy import function_json_response
from donjon.obs import mint_request_id
from transport_support import KeptTransport

_DATE = [(b"date", b"Mon, 07 Dec 2026 10:00:00 GMT")]


def _run(
    kind: type[RequestResponseCycle],
    messages: list[dict[str, Any]],
    *,
    keep_alive: bool = True,
    defaults: list[tuple[bytes, bytes]] = _DATE,
) -> tuple[bytes, dict[str, Any]]:
    """What a cycle of `kind` writes for `messages`, and its state after."""
    transport = KeptTransport()

    async def go() -> RequestResponseCycle:
        cycle = kind(
            scope=cast(Any, {"method": "POST", "headers": [], "type": "http"}),  # what send reads
            transport=cast(Any, transport),  # a stand-in that keeps what is written
            flow=FlowControl(cast(Any, transport)),
            logger=logging.getLogger("test"),
            access_logger=logging.getLogger("test.access"),
            access_log=False,
            default_headers=defaults,
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=keep_alive,
            on_response=lambda: None,
        )
        for message in messages:
            await cycle.send(cast(Any, message))
        return cycle

    cycle = asyncio.run(go())
    state = {
        name: getattr(cycle, name)
        for name in (
            "response_started",
            "response_complete",
            "chunked_encoding",
            "expected_content_length",
            "keep_alive",
            "waiting_for_100_continue",
        )
    }
    state["closed"] = transport.closed
    return b"".join(transport.written), state


def _messages(request_id: str, body: bytes, checked: bool) -> list[dict[str, Any]]:
    response = function_json_response(body, request_id).response
    start: dict[str, Any] = {
        "type": "http.response.start",
        "status": response.status_code,
        "headers": response.raw_headers,
    }
    head = getattr(response, "checked_head", None)
    if checked and head is not None:
        start[CHECKED_HEAD] = head
    return [start, {"type": "http.response.body", "body": response.body}]


@pytest.mark.parametrize("body", [b"{}", b'{"a": "\\u00e9"}', b"[" + b"1," * 5000 + b"1]"])
@pytest.mark.parametrize("keep_alive", [True, False])
def test_a_checked_head_is_what_uvicorn_writes(
    body: bytes, keep_alive: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same bytes and the same state as uvicorn's `send`, whether the fast path takes
    the head (kept alive) or leaves it to uvicorn (closing: `connection: close`)."""
    request_id = mint_request_id()
    plain = _run(RequestResponseCycle, _messages(request_id, body, False), keep_alive=keep_alive)
    uvicorns = RequestResponseCycle.send
    sent_by_uvicorn: list[str] = []

    async def counted(cycle: RequestResponseCycle, message: Any) -> None:
        sent_by_uvicorn.append(message["type"])
        await uvicorns(cycle, message)

    monkeypatch.setattr(RequestResponseCycle, "send", counted)
    fast = _run(CheckedCycle, _messages(request_id, body, True), keep_alive=keep_alive)
    # The head written by the fast path when the connection stays open; the body by uvicorn.
    assert ("http.response.start" in sent_by_uvicorn) is not keep_alive
    assert fast == plain
    assert fast[0].startswith(b"HTTP/1.1 200 OK\r\ndate: ")
    assert (b"connection: close" in fast[0]) is not keep_alive


def test_default_headers_that_frame_the_response_are_left_to_uvicorn() -> None:
    """A default header uvicorn reads to frame the answer (connection, content-length,
    transfer-encoding) or cannot write: the fast path steps aside, uvicorn decides."""
    request_id = mint_request_id()
    for defaults in ([*_DATE, (b"Connection", b"close")], [(b"x-bad", b"a\nb")]):
        assert default_lines(defaults) is None
    framing = [*_DATE, (b"Connection", b"close")]
    assert _run(CheckedCycle, _messages(request_id, b"{}", True), defaults=framing) == _run(
        RequestResponseCycle, _messages(request_id, b"{}", False), defaults=framing
    )
    with pytest.raises(RuntimeError, match="Invalid HTTP header value"):
        _run(CheckedCycle, _messages(request_id, b"{}", True), defaults=[(b"x-bad", b"a\nb")])


def test_a_request_id_that_is_not_letters_and_digits_gets_no_checked_head() -> None:
    """Only the gateway's own ids are written unchecked: any other is uvicorn's to check."""

    def checked(request_id: str) -> object:  # (`_JSONResult`'s own attribute)
        return cast(Any, function_json_response(b"{}", request_id).response).checked_head

    assert checked(mint_request_id()) is not None
    for odd in ("a b", "id\r\nx-injected: 1", "é1", ""):
        assert checked(odd) is None
