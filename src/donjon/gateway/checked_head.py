"""A function's JSON result's head written as uvicorn writes it, from lines checked when
they were made (issue 14: the warm path in fewer Python steps).

uvicorn's `send` checks every header of a response's head as it writes it: two regular
expressions, a lower-casing and a list's extend per header, and a test of the name for
the three that frame the response (content-length, transfer-encoding, connection),
about thirty Python-level calls for a warm call's six headers, every call. A function's
JSON result (response_policy.py `_JSONResult`) has the same five headers every time:
three constants, its request id (letters and digits, minted by the gateway) and its
length (digits). Its head lines are made with it (`checked_head`: the lines, exactly as
uvicorn's loop would write them, and the length), and the hot route hands them over
with the head's message (`CHECKED_HEAD`). `CheckedCycle.send` writes them after
uvicorn's default headers (the date: rendered and checked with uvicorn's own
expressions once per list uvicorn makes, once a second) and sets the cycle's state as
uvicorn's loop would have for them (a known length, no chunking).

Anything else is uvicorn's own `send`, unchanged: a message without the lines, a
connection that closes after this answer (uvicorn adds `connection: close`), a cycle
already answered, disconnected or whose writes are paused, an access log, or default
headers that would frame the response. The body's messages always are.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)

__all__ = ["CHECKED_HEAD", "CheckedCycle", "default_lines"]

#: The head message's key for a response's checked lines: (lines, content length).
CHECKED_HEAD = "donjon.checked_head"
#: Header names uvicorn's loop reads to frame the response: left to it.
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})


def default_lines(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The lines uvicorn's `send` writes for its default headers, checked as it checks
    them; None if one is invalid or frames the response (then uvicorn's `send` writes)."""
    lines = []
    for name, value in headers:
        if HEADER_RE.search(name) or HEADER_VALUE_RE.search(value):
            return None
        lower = name.lower()
        if lower in _FRAMING:
            return None
        lines.append(b"%s: %s\r\n" % (lower, value))
    return b"".join(lines)


#: The default headers' list uvicorn last handed a cycle, and its lines.
_rendered: list[Any] = [None, None]


class CheckedCycle(RequestResponseCycle):
    """uvicorn's request-response cycle, writing a head whose lines were checked as they
    were made without checking them again."""

    async def send(self, message: Any) -> None:
        checked = message.get(CHECKED_HEAD)
        if (
            checked is None
            or self.response_started
            or not self.keep_alive
            or self.disconnected
            or self.flow.write_paused
            or self.access_log
            or self.chunked_encoding is not None
        ):
            await super().send(message)
            return
        defaults = self.default_headers
        if defaults is not _rendered[0]:
            _rendered[0], _rendered[1] = defaults, default_lines(defaults)
        head: bytes | None = _rendered[1]
        if head is None:
            await super().send(message)
            return
        lines, length = checked
        self.response_started = True
        self.waiting_for_100_continue = False
        self.expected_content_length = length
        self.chunked_encoding = False
        self.transport.write(b"".join((STATUS_LINE[message["status"]], head, lines, b"\r\n")))
