"""What an SQS endpoint may answer the poller: at most `MAX_RESPONSE` bytes a response.

The endpoint is a developer's to name (the trigger's secret holds it), and botocore
reads a whole response into memory before it parses it: an endpoint of the developer's
own answered each receive with 64 MiB and the poller read it all, eleven times in 8 s,
the process's memory growing about four times the body. A gigabyte was the node's end,
and so every tenant's. No SQS response comes near the bound (ten messages of at most
1 MiB each, and their attributes): past it the read stops, the connection is closed, and
`ResponseTooLarge` makes the source's outage say why.

botocore offers no hook between its send and its read, so `bound_responses` wraps the
send of the client's HTTP session (`client._endpoint.http_session`, the same in every
botocore since 1.11), asks it to leave the body unread (the request's `stream_output`,
as for S3's downloads) and hands botocore the body it read, within the bound. A response
over it has its connection closed: its rest is never read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from donjon.triggers.source_errors import SourceError

__all__ = ["MAX_RESPONSE", "ResponseTooLarge", "bound_responses"]

#: The most an SQS response may hold (16 MiB: ten 1 MiB messages, four times over).
MAX_RESPONSE = 16 << 20
_CHUNK = 64 << 10


class ResponseTooLarge(SourceError):
    """An SQS endpoint answered with more than `MAX_RESPONSE` bytes."""


class _Read:
    """A body already read, as botocore reads a response's `raw` (its `stream()`)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, *args: object, **kwargs: object) -> Iterator[bytes]:
        yield self._body


def bound_responses(client: Any, limit: int = MAX_RESPONSE) -> Any:
    """`client` (botocore's), each response of which is read up to `limit` bytes at most:
    past it `ResponseTooLarge`, its connection closed."""
    session = client._endpoint.http_session
    send: Callable[[Any], Any] = session.send

    def bounded(request: Any) -> Any:
        request.stream_output = True  # else the send reads the whole body before returning
        response = send(request)
        try:
            response.raw = _Read(_read_within(response.raw, limit))
        except ResponseTooLarge:
            response.raw.close()  # its connection too: the rest is never read
            raise
        return response

    session.send = bounded
    return client


def _read_within(raw: Any, limit: int) -> bytes:
    """The urllib3 response's body (botocore asks it undecoded), or `ResponseTooLarge`."""
    declared = str(raw.headers.get("content-length", ""))
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_large(f"{declared} bytes")
    chunks: list[bytes] = []
    total = 0
    for chunk in raw.stream(_CHUNK):
        total += len(chunk)
        if total > limit:
            raise _too_large(f"more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: str) -> ResponseTooLarge:
    return ResponseTooLarge(
        f"the SQS endpoint's response is larger than {MAX_RESPONSE >> 20} MiB ({size}): "
        "no SQS response is; the read was stopped",
        hint="check the queue_url and endpoint_url in the trigger's secret",
    )
