"""The hostile requests test_attack_trigger_input_sweep.py sends to the public trigger
routes (/fn/ and /hooks/), and a raw HTTP/1.1 client to send them: what a client library
would refuse to write (duplicate Content-Length or Host, bytes that are not UTF-8, a
50,000-byte request target) is exactly what a hostile caller sends."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from harness import LiveNode

__all__ = ["ECHO_HANDLER", "Reply", "post_raw", "send_raw"]

#: A function that answers (and returns, for an async call's result) the event it got.
ECHO_HANDLER = """\
import json
def handler(event, context):
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"event": event, "request_id": context.request_id,
                                "principal": context.principal})}
"""


@dataclass(frozen=True)
class Reply:
    """A response as it came off the wire: its status, headers (names lower case, in
    order, repeats kept) and body."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def problem(self) -> dict[str, Any]:
        """The problem document of a refusal (AssertionError if it is not one)."""
        assert self.header("content-type") == "application/problem+json", self
        body: dict[str, Any] = self.json()
        assert body["status"] == self.status, body
        assert len(body.get("detail", "")) >= 10, body
        return body


Headers = list[tuple[str, str | bytes]] | dict[str, str]


def send_raw(
    node: LiveNode,
    method: str | bytes,
    target: str | bytes,
    headers: Headers = (),  # type: ignore[assignment]
    body: bytes = b"",
    *,
    source: str | None = None,
    content_length: bool = True,
) -> Reply:
    """Send one request, byte for byte as given (a Host and, unless `content_length` is
    False, a Content-Length are added), over a fresh TLS connection from `source`."""
    url = urlsplit(node.url)
    host, port = url.hostname or "127.0.0.1", url.port or 443
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
    names = {k.lower() for k, _ in pairs}
    if "host" not in names:
        pairs.insert(0, ("host", f"{host}:{port}"))
    if content_length and "content-length" not in names:
        pairs.append(("content-length", str(len(body))))
    pairs.append(("connection", "close"))
    head = _bytes(method) + b" " + _bytes(target) + b" HTTP/1.1\r\n"
    head += b"".join(_bytes(k) + b": " + _bytes(v) + b"\r\n" for k, v in pairs)
    raw = socket.create_connection((host, port), timeout=60, source_address=(source or "", 0))
    with node.tls.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(head + b"\r\n" + body)
        received = b""
        while chunk := tls.recv(65536):
            received += chunk
    return _parse(received)


def post_raw(
    node: LiveNode, path: str, headers: Headers, body: bytes, *, source: str | None = None
) -> Reply:
    return send_raw(node, "POST", path, headers, body, source=source)


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def _parse(received: bytes) -> Reply:
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = [
        (k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])
    ]
    if ("transfer-encoding", "chunked") in headers:
        body = _unchunk(body)
    return Reply(status, headers, body)


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out
