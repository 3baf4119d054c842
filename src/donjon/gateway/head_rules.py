"""What the connection layer (connections.py) checks of a request head before the app
sees it, and the answer it writes when a head or body breaks a limit: plain functions
of the parsed head, kept apart from the protocol's state."""

from __future__ import annotations

import http
import re

import httptools

__all__ = ["closing_head", "error_response", "host_fits", "retry_after_s"]

# uvicorn's own, when the client said close (or spoke HTTP/1.0): not to be said twice.
_SAYS_CLOSE = re.compile(rb"\r\nconnection:[^\r]*\bclose\b", re.IGNORECASE)
_RETRY_AFTER = re.compile(rb"\r\nretry-after: *([0-9]{1,9})\r\n")


def error_response(status: int, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The whole answer, closing the connection, to a request that broke a limit."""
    phrase = http.HTTPStatus(status).phrase
    body = f"{phrase}\n".encode()
    lines = [f"HTTP/1.1 {status} {phrase}\r\n".encode()]
    lines += [name + b": " + value + b"\r\n" for name, value in default_headers]
    lines += [
        b"content-type: text/plain; charset=utf-8\r\n",
        f"content-length: {len(body)}\r\n".encode(),
        b"connection: close\r\n\r\n",
        body,
    ]
    return b"".join(lines)


def _authority(target: bytes) -> bytes | None:
    """The host[:port] an absolute-form request target names, in lower case; None if it
    names none the parser can read."""
    try:
        url = httptools.parse_url(target)
    except httptools.HttpParserInvalidURLError:
        return None
    if not url.host:
        return None
    host = b"[%s]" % url.host if b":" in url.host else url.host  # an IPv6 literal
    return host.lower() + (b":%d" % url.port if url.port is not None else b"")


def host_fits(
    headers: list[tuple[bytes, bytes]], target: bytes, parser: httptools.HttpRequestParser
) -> bool:
    """One Host field, or none in HTTP/1.0 (RFC 9112 3.2: else 400). Two named two
    hosts to the parts of the chain that read the first and the last. A target in
    absolute form (`https://host/path`) names the host instead of Host (RFC 9112
    3.2.2), which everything after the parser reads: it must name the same one.
    `headers` as uvicorn parses them (names in lower case), `parser` the head's."""
    hosts = 0
    host = b""
    for name, value in headers:
        if name == b"host":
            hosts += 1
            host = value
    if target[:1] != b"/" and target != b"*":
        return hosts == 1 and _authority(target) == host.strip().lower()
    return hosts == 1 or (hosts == 0 and parser.get_http_version() == "1.0")


def retry_after_s(head: bytes) -> float | None:
    """The Retry-After of a response's head, in seconds (None if it has none)."""
    match = _RETRY_AFTER.search(head)
    return None if match is None else float(match.group(1))


def closing_head(head: bytes) -> bytes:
    """A whole response head (ending in its blank line) saying the connection closes
    after its response, once."""
    if _SAYS_CLOSE.search(head):
        return head
    return head[:-2] + b"connection: close\r\n\r\n"
