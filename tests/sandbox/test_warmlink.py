"""The gateway's side of a warm worker's channel (sandbox/warmlink.py), against a fake worker
on a real socket pair."""

from __future__ import annotations

import asyncio
import mmap
import os
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest

from donjon.sandbox.replies import MAX_RESULT
from donjon.sandbox.warmlink import (
    END,
    TOKEN_BYTES,
    CallPage,
    ChannelEnded,
    ChannelViolation,
    WarmLink,
)


def _frames(*payloads: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(p)) + p for p in payloads)


async def _read_call(sock: socket.socket) -> tuple[bytes, bytes, bytes]:
    """The worker's side: one call's three frames (token, context, event)."""
    loop = asyncio.get_running_loop()
    buf = b""
    out: list[bytes] = []
    while len(out) < 3:
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
            buf += await loop.sock_recv(sock, 65536)
        size = struct.unpack(">I", buf[:4])[0]
        out.append(buf[4 : 4 + size])
        buf = buf[4 + size :]
    return out[0], out[1], out[2]


async def _run(
    worker: Callable[[socket.socket], Awaitable[None]], *, calls: int = 1
) -> tuple[list[object], list[str]]:
    """Run `calls` calls on a link whose worker end is served by `worker(sock)`."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.setblocking(False)
    broken: list[str] = []
    link = WarmLink(ours, broken.append)
    task = asyncio.ensure_future(worker(theirs))
    results: list[object] = []
    try:
        for _ in range(calls):
            try:
                results.append(await asyncio.wait_for(link.call(b"{}", b"{}", None), 10))
            except (ChannelViolation, ChannelEnded) as e:
                results.append(e)
            await asyncio.sleep(0.05)
    finally:
        await asyncio.wait_for(task, 10)
        link.close()
        theirs.close()
    return results, broken


def test_a_reply_followed_by_its_end_is_the_calls_answer() -> None:
    """Head, body and the end frame with the call's token: the call's answer."""

    async def worker(sock: socket.socket) -> None:
        token, _, _ = await _read_call(sock)
        await asyncio.get_running_loop().sock_sendall(
            sock, _frames(b'{"ok":true}', b"42", END + token)
        )

    results, broken = asyncio.run(_run(worker))
    assert results == [(b'{"ok":true}', b"42")]
    assert broken == []


@pytest.mark.parametrize(
    "written",
    [
        _frames(b'{"ok":true}', b"1", END + bytes(TOKEN_BYTES)),  # another call's end
        _frames(b'{"ok":true}', b"1", b'{"ok":true}', b"2"),  # a second reply
        b"\xff\xff\xff\xff",  # a 4 GiB frame
    ],
)
def test_a_reply_not_bound_to_the_call_is_a_violation(written: bytes) -> None:
    """A wrong token, a second reply or an oversized frame fails the call."""

    async def worker(sock: socket.socket) -> None:
        await _read_call(sock)
        await asyncio.get_running_loop().sock_sendall(sock, written)

    results, _ = asyncio.run(_run(worker))
    assert isinstance(results[0], ChannelViolation)


def test_bytes_after_the_end_are_a_violation() -> None:
    """Garbage in the same write as a correct end fails the call."""

    async def worker(sock: socket.socket) -> None:
        token, _, _ = await _read_call(sock)
        await asyncio.get_running_loop().sock_sendall(
            sock, _frames(b'{"ok":true}', b"1", END + token) + b"GARBAGE"
        )

    results, _ = asyncio.run(_run(worker))
    assert isinstance(results[0], ChannelViolation)


def test_bytes_between_calls_break_the_link() -> None:
    """Anything written while no call is in flight reports the link broken."""

    async def worker(sock: socket.socket) -> None:
        token, _, _ = await _read_call(sock)
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, _frames(b'{"ok":true}', b"1", END + token))
        await asyncio.sleep(0.01)
        await loop.sock_sendall(sock, b"late")

    results, broken = asyncio.run(_run(worker))
    assert results == [(b'{"ok":true}', b"1")]
    assert broken and "outside any call" in broken[0]


def test_the_channels_end_during_a_call_is_reported_after_a_reply() -> None:
    """A reply then the channel's end: `ChannelEnded`, and the link says a reply was read."""
    seen: list[bool] = []

    async def worker(sock: socket.socket) -> None:
        await _read_call(sock)
        await asyncio.get_running_loop().sock_sendall(sock, _frames(b'{"ok":true}', b"1"))
        sock.shutdown(socket.SHUT_RDWR)

    async def run() -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        theirs.setblocking(False)
        link = WarmLink(ours, lambda _: None)
        task = asyncio.ensure_future(worker(theirs))
        with pytest.raises(ChannelEnded):
            await asyncio.wait_for(link.call(b"{}", b"{}", None), 10)
        seen.append(link.replied)
        await task
        link.close()
        theirs.close()

    asyncio.run(run())
    assert seen == [True]


def test_the_call_page_holds_the_call_in_flight() -> None:
    """The page carries the call's id and deadline until its end, and the doze flag."""
    page = CallPage()
    view = mmap.mmap(os.dup(page.fd), 4096)
    try:
        assert page.begin(7, 123.5) is False
        assert struct.unpack_from("<QdQ", view, 0) == (7, 123.5, 1)
        page.end()
        assert struct.unpack_from("<Q", view, 0) == (0,)
        view[24] = 1  # the supervisor dozes
        assert page.begin(8, 124.0) is True
        assert view[24] == 0
    finally:
        view.close()
        page.close()


def _body_over_limit() -> bytes:
    """A body frame's length over what the gateway reads of a result."""
    return struct.pack(">I", MAX_RESULT + 1)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (lambda t: [b'{"ok":true}', b"42", END + t], (b'{"ok":true}', b"42")),
        (lambda t: [b'{"ok":true}', b"", END + t], (b'{"ok":true}', b"")),
        (lambda t: [b'{"ok":true}', b"1", END + bytes(TOKEN_BYTES)], ChannelViolation),
        (lambda t: [b'{"ok":true}', b"1", END + t + b"x"], ChannelViolation),
        (lambda t: [b'{"ok":true}', None], ChannelViolation),
    ],
)
def test_a_reply_read_whole_is_read_as_a_reply_read_frame_by_frame(
    reply: Callable[[bytes], list[bytes | None]], expected: object
) -> None:
    """The same reply gives the same answer, or the same violation, whether it arrives in
    one write (its body and end taken from the buffer with its head) or a frame at a time,
    each write read before the next (every frame waited for)."""
    outcomes = []
    for whole in (True, False):

        async def worker(sock: socket.socket, whole: bool = whole) -> None:
            token, _, _ = await _read_call(sock)
            parts = [_body_over_limit() if p is None else _frames(p) for p in reply(token)]
            loop = asyncio.get_running_loop()
            if whole:
                await loop.sock_sendall(sock, b"".join(parts))
                return
            for part in parts:
                await loop.sock_sendall(sock, part)
                await asyncio.sleep(0.02)

        results, _ = asyncio.run(_run(worker))
        outcome = results[0]
        outcomes.append(type(outcome) if isinstance(outcome, Exception) else outcome)
    assert outcomes == [expected, expected]
