"""Attack: an SQS trigger's endpoint (a developer writes its secret) that answers the
node's poller with a response of any size.

botocore reads a whole response into memory, then parses it: a queue endpoint of the
developer's own answered each receive with 64 MiB and the poller read 704 MiB in 8 s, the
process's memory growing about four times the body; a gigabyte was the node's end, and
every tenant's. No SQS response is near `MAX_RESPONSE` (ten messages of at most 1 MiB
each): past it the read stops, the connection is closed, and the source is in an outage
that says why.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from donjon.triggers.sqs_source import BATCH
from poller_support import run_poller
from sec_support import Listener

#: The endpoints these tests stand up are on loopback: opened as an admin opens a network.
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
#: The body the endpoint sends to each request (never held whole: sent a chunk at a time).
HUGE = 128 << 20
_CHUNK = 1 << 20


class Flood(Listener):
    """Answers every request with 200 and `HUGE` bytes of JSON whitespace; counts what it
    got to send of each before the poller closed the connection (past what the poller
    read, at most the two sockets' buffers: here 32 MiB to receive, 64 KiB to send)."""

    def __init__(self, declared: bool) -> None:
        self.declared = declared
        self.sent: list[int] = []
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            while length is not None and len(body) < int(length[1]):
                body += conn.recv(65536)  # read it all: a close with unread bytes resets
            lead = b'{"Messages": []}'
            size = (
                b"Content-Length: %d" % (len(lead) + HUGE)
                if self.declared
                else b"Connection: close"
            )
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
                + size
                + b"\r\n\r\n"
                + lead
            )
            done, chunk = 0, b" " * _CHUNK
            try:
                while done < HUGE:
                    conn.sendall(chunk)
                    done += _CHUNK
            except OSError:  # the poller closed the connection
                pass
            self.sent.append(done)


@pytest.fixture(params=[True, False], ids=["content-length", "read-to-close"])
def flood(request: pytest.FixtureRequest) -> Iterator[Flood]:
    service = Flood(bool(request.param))
    try:
        yield service
    finally:
        service.close()


def test_a_queue_endpoint_answering_gigabytes_is_not_read_whole(flood: Flood) -> None:
    """Each receive's response is read up to the bound, not further; the poller is in an
    outage whose record says the response was too large, and nothing is submitted."""
    records = run_poller(
        f"http://127.0.0.1:{flood.port}",
        lambda poller: len(flood.sent) >= 2 or bool(poller.health.failures),
        LOOPBACK,
        120,
    )
    deadline = time.monotonic() + 30
    while not flood.sent and time.monotonic() < deadline:  # its thread sees the close
        time.sleep(0.05)
    assert flood.sent, "the endpoint was never asked"
    assert max(flood.sent) < HUGE // 2, flood.sent  # the bound and the buffers, no more
    [outage] = [r for r in records if r.action == "trigger.source.unavailable"]
    assert "larger than" in outage.detail["reason"], outage.detail


class Crowd(ThreadingHTTPServer):
    """An SQS endpoint (JSON protocol) whose every receive returns `MANY` messages that
    are not S3 notifications; it counts the receives and the other calls it gets."""

    daemon_threads = True

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        super().__init__(("127.0.0.1", 0), _CrowdHandler)


#: Messages one receive of `Crowd` returns (SQS returns at most ten).
MANY = 3000


class _CrowdHandler(BaseHTTPRequestHandler):
    server: Crowd

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        action = str(self.headers.get("x-amz-target", "")).rpartition(".")[2]
        self.server.calls[action] = self.server.calls.get(action, 0) + 1
        reply: dict[str, object] = {}
        if action == "ReceiveMessage":
            reply = {
                "Messages": [
                    {"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": "not a notification"}
                    for i in range(MANY)
                ]
            }
        body = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("content-type", "application/x-amz-json-1.0")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_receive_answering_thousands_of_messages_is_taken_ten_at_a_time() -> None:
    """An endpoint whose receive returns 3,000 messages (SQS returns at most ten): the
    poller handles ten of them, not each (before, each was parsed, reported and hidden with
    a call of its own: the endpoint's one answer set the node's work)."""
    crowd = Crowd()
    threading.Thread(target=crowd.serve_forever, daemon=True).start()
    try:
        run_poller(
            f"http://127.0.0.1:{crowd.server_address[1]}",
            lambda poller: crowd.calls.get("ReceiveMessage", 0) >= 3,
            LOOPBACK,
            120,
        )
    finally:
        crowd.shutdown()
        crowd.server_close()
    receives = crowd.calls["ReceiveMessage"]
    assert crowd.calls.get("ChangeMessageVisibility", 0) <= BATCH * receives, crowd.calls
