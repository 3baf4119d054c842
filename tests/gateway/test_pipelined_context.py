"""A pipelined request's task starts in its connection's context, not in the task of the
request answered before it (whose request id its first log lines would carry)."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from donjon.config import ConnectionSettings
from donjon.obs import bind_request_id, configure_logging
from protocol_support import read_until, served

#: What the request served before set in its own context (the app's, besides the id).
_PATH: contextvars.ContextVar[str | None] = contextvars.ContextVar("test_path", default=None)


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Logs a line before binding anything (as a shed or capacity warning would be), then
    binds its path as its request id; `/refused` answers a 429 with Retry-After."""
    if scope["type"] != "http":
        return
    logging.getLogger("donjon.test").warning("start %s: saw %s", scope["path"], _PATH.get())
    bind_request_id(scope["path"])
    _PATH.set(scope["path"])
    await receive()
    status, headers = 200, [(b"content-length", b"2")]
    if scope["path"] == "/refused":
        status, headers = 429, [*headers, (b"retry-after", b"1")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def server() -> Iterator[tuple[tuple[str, int], io.StringIO]]:
    """A server with the gateway's protocol (a short rest after a 429), its log lines."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging(json=True, stream=stream, level="info")
    try:
        with served(_app, ConnectionSettings(refusal_hold_s=0.2)) as address:
            yield address, stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


def _starts(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line]
    return [line for line in lines if line["event"].startswith("start ")]


@pytest.mark.parametrize("first", ["/first", "/refused"])
def test_a_pipelined_request_starts_without_the_previous_requests_context(
    server: tuple[tuple[str, int], io.StringIO], first: str
) -> None:
    """The second of two pipelined requests (started when the first's answer completes,
    or when its rest after a 429 ends) logs no request id and sees no context of the
    first before binding its own."""
    address, stream = server
    with socket.create_connection(address) as sock:
        heads = [f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n" for path in (first, "/second")]
        sock.sendall("".join(heads).encode())
        data = read_until(sock, lambda d: d.count(b"\r\n\r\nok") == 2)
    assert data.count(b"\r\n\r\nok") == 2
    by_event = {line["event"].split(":")[0]: line for line in _starts(stream)}
    assert set(by_event) == {f"start {first}", "start /second"}
    second = by_event["start /second"]
    assert second["event"] == "start /second: saw None"
    assert "request_id" not in second
