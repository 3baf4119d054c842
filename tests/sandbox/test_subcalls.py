"""context.invoke's frames: the worker's side (runtime/context.py) and the host's (subcalls.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from typing import Any

import pytest

from donjon.sandbox.runtime.context import Context, InvokeDenied, InvokeError
from donjon.sandbox.runtime.frames import recv_frame, send_frames
from donjon.sandbox.subcalls import answer, answer_error, answer_ok, is_request, request_target

META = {"request_id": "r1", "function": "a", "version": 1, "deadline": 0.0}


def _host(sock: socket.socket, reply: tuple[bytes, bytes], seen: list[bytes]) -> None:
    """Read one request (head and event), answer `reply`."""
    seen.append(recv_frame(sock))
    seen.append(recv_frame(sock))
    send_frames(sock, *reply)


def _invoke(
    reply: tuple[bytes, bytes], name: str = "b", event: Any = None
) -> tuple[Any, list[bytes]]:
    ours, theirs = socket.socketpair()
    seen: list[bytes] = []
    host = threading.Thread(target=_host, args=(theirs, reply, seen))
    host.start()
    try:
        return Context(META, ours).invoke(name, event), seen
    finally:
        ours.close()  # the host thread ends on the closed socket if it waits
        host.join(10)
        theirs.close()


def test_request_is_what_the_host_recognises() -> None:
    """The head the runtime writes is a request to the host and names the callee."""
    result, seen = _invoke(answer_ok(b'{"x":1}'), "thumbnail", {"k": [1]})
    assert result == {"x": 1}
    assert is_request(seen[0]) and request_target(seen[0]) == "thumbnail"
    assert json.loads(seen[1]) == {"k": [1]}


def test_no_event_sends_an_empty_object() -> None:
    """context.invoke(name) sends {} as the event."""
    _, seen = _invoke(answer_ok(b"null"))
    assert seen[1] == b"{}"


def test_denied_answer_raises_invoke_denied() -> None:
    """A "denied" answer is InvokeDenied (an InvokeError) with the host's reason."""
    with pytest.raises(InvokeDenied) as e:
        _invoke(answer_error("denied", "not granted"))
    assert e.value.kind == "denied" and e.value.reason == "not granted"


def test_other_failures_raise_invoke_error() -> None:
    """Any other answer that is not ok is an InvokeError of its kind, not InvokeDenied."""
    with pytest.raises(InvokeError) as e:
        _invoke(answer_error("throttled", "over its rate limit"))
    assert type(e.value) is InvokeError and e.value.kind == "throttled"


def test_error_classes_are_on_the_context() -> None:
    """Handlers catch context.InvokeError without importing the runtime."""
    ctx = Context(META)
    assert ctx.InvokeError is InvokeError and ctx.InvokeDenied is InvokeDenied


@pytest.mark.parametrize("name", ["", "x" * 64, 7, None])
def test_bad_name_is_refused_before_sending(name: Any) -> None:
    """A name that is not a function name fails in the handler; nothing is sent."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        with pytest.raises(InvokeError) as e:
            Context(META, ours).invoke(name, {})
        assert e.value.kind == "invalid"
        theirs.setblocking(False)
        with pytest.raises(BlockingIOError):
            theirs.recv(1)


def test_event_that_is_not_json_is_refused() -> None:
    """An event json cannot encode (a set, NaN) fails in the handler with kind invalid."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        for event in ({1, 2}, float("nan")):
            with pytest.raises(InvokeError, match="not JSON"):
                Context(META, ours).invoke("b", event)


def test_invoke_outside_a_call_is_refused() -> None:
    """A context without a call socket cannot invoke."""
    with pytest.raises(InvokeError, match="outside a call"):
        Context(META).invoke("b", {})


def test_host_going_away_is_an_invoke_error() -> None:
    """No answer (the socket closed) is an InvokeError, not a hang or a crash."""
    ours, theirs = socket.socketpair()
    theirs.close()
    with ours, pytest.raises(InvokeError) as e:
        Context(META, ours).invoke("b", {})
    assert e.value.kind == "error"


@pytest.mark.parametrize(
    "head",
    [
        b'{"op":"invoke","function":"b","x":1}',
        b'{"op":"invoke","function":"B"}',
        b'{"op":"invoke","function":"b/../c"}',
        b'{"op":"invoke","function":1}',
        b'{"op":"invoke","function":"' + b"b" * 300 + b'"}',
        b'{"op":"invoke",' + b"[" * 5000,
        b'{"op":"invoke",}',
    ],
)
def test_malformed_request_has_no_target(head: bytes) -> None:
    """Whatever the worker writes past the prefix, only an exact request names a function."""
    assert is_request(head) and request_target(head) is None


def test_reply_is_not_a_request() -> None:
    """The runtime's reply head never starts like a request."""
    assert not is_request(b'{"ok":true,"out":""}')
    assert not is_request(struct.pack(">I", 3))


def test_answer_without_responder_is_denied() -> None:
    """A call with no responder answers every request as denied."""
    head, body = asyncio.run(answer(b'{"op":"invoke","function":"b"}', b"{}", None))
    assert json.loads(head)["kind"] == "denied" and body == b""


def test_answer_when_the_responder_breaks() -> None:
    """A bug behind the responder is answered as an error; the call goes on."""

    async def broken(name: str, event: bytes) -> tuple[bytes, bytes]:
        raise RuntimeError("bug")

    head, _ = asyncio.run(answer(b'{"op":"invoke","function":"b"}', b"{}", broken))
    assert json.loads(head) == {
        "ok": False,
        "kind": "error",
        "error": "the platform could not invoke b",
    }


def test_answer_error_is_bounded() -> None:
    """An answer's message is cut to 2000 characters."""
    head, _ = answer_error("error", "x" * 10_000)
    assert len(json.loads(head)["error"]) == 2000
