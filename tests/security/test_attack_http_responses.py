"""An http-triggered function shapes its own response; it must not shape the HTTP framing.

A function that can set Transfer-Encoding, Content-Length or a 1xx status can desync a
connection that a reverse proxy shares between users (response splitting / smuggling).
The responses are read off a raw TLS socket, exactly as a proxy would see them.
"""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest

from harness import LiveNode
from sec_support import Ready, audit_records


@pytest.fixture(autouse=True)
def _function_started(started: Ready) -> None:
    """Each attack here meets sec-http from a cold start and from a warm one (invariant 4)."""
    started("sec-http")


def _raw_exchange(node: LiveNode, respond: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """POST to the public trigger; return the status line and the header list, unparsed."""
    parts = urlsplit(node.url)
    assert parts.hostname is not None
    assert parts.port is not None
    body = json.dumps({"respond": respond}).encode()
    request = (
        f"POST /fn/sec-http/public HTTP/1.1\r\nHost: {parts.hostname}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    with (
        socket.create_connection((parts.hostname, parts.port), timeout=30) as raw,
        node.tls.wrap_socket(raw, server_hostname=parts.hostname) as tls,
    ):
        tls.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                chunk = tls.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    headers = [
        (k.strip().lower(), v.strip())
        for k, _, v in (line.partition(":") for line in lines[1:] if line)
    ]
    return lines[0], headers


def test_function_cannot_add_transfer_encoding_to_a_framed_response(node: LiveNode) -> None:
    """A function's `transfer-encoding: chunked` never goes out beside a Content-Length."""
    status, headers = _raw_exchange(
        node,
        {
            "statusCode": 200,
            "body": "0\r\n\r\nGET /x HTTP/1.1",
            "headers": {"transfer-encoding": "chunked"},
        },
    )
    names = [k for k, _ in headers]
    assert status, "no response at all"
    assert not ("transfer-encoding" in names and "content-length" in names), (status, headers)


@pytest.mark.parametrize("length", ["1", "1000"])
def test_function_cannot_declare_a_false_content_length(node: LiveNode, length: str) -> None:
    """A function's own Content-Length is not sent with a body of another length."""
    body = "hello"
    status, headers = _raw_exchange(
        node, {"statusCode": 200, "body": body, "headers": {"content-length": length}}
    )
    declared = [v for k, v in headers if k == "content-length"]
    assert declared in ([], [str(len(body))]), (status, headers)


@pytest.mark.parametrize("code", [100, 101, 103])
def test_function_cannot_answer_with_an_interim_status(node: LiveNode, code: int) -> None:
    """A 1xx statusCode (e.g. a fake 101 Switching Protocols) is not passed to the client."""
    status, _ = _raw_exchange(
        node,
        {"statusCode": code, "headers": {"upgrade": "h2c", "connection": "upgrade"}, "body": ""},
    )
    assert not status.startswith("HTTP/1.1 1"), status


def test_function_cannot_inject_headers_with_crlf(node: LiveNode) -> None:
    """CR/LF in a header value never becomes a second header."""
    _, headers = _raw_exchange(
        node,
        {"statusCode": 200, "body": "x", "headers": {"x-sec": "a\r\nset-cookie: sec-injected=1"}},
    )
    assert ("set-cookie", "sec-injected=1") not in headers


@pytest.mark.parametrize(
    "headers",
    [
        {f"x-sec-{i}": "v" for i in range(2000)},  # 2,000 fields: past any client's count
        {"x-sec": "v" * 200_000},  # a 200 KB field: past any client's or proxy's head
    ],
    ids=["many", "huge"],
)
def test_function_cannot_send_a_head_no_client_reads(
    node: LiveNode, headers: dict[str, str]
) -> None:
    """A head past what the gateway itself takes (100 fields, 64 KiB) is a 502 audited as
    the function's failure, not a response clients drop that is audited as ok."""
    status, sent = _raw_exchange(node, {"statusCode": 200, "body": "x", "headers": headers})
    assert status.startswith("HTTP/1.1 502"), status
    assert not [k for k, _ in sent if k.startswith("x-sec")]
    (request_id,) = [v for k, v in sent if k == "x-request-id"]
    (record,) = audit_records(node, request_id)
    assert record["outcome"] == "BadFunctionResponse", record


def test_function_cannot_add_a_second_date(node: LiveNode) -> None:
    """The server's Date is the only one: a function's own is dropped, not sent beside it."""
    _, headers = _raw_exchange(
        node, {"statusCode": 200, "body": "x", "headers": {"date": "Thu, 01 Jan 1970 00:00:00 GMT"}}
    )
    dates = [v for k, v in headers if k == "date"]
    assert len(dates) == 1 and "1970" not in dates[0], headers
