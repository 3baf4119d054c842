"""Hostile receivers of the alert and checkpoint webhooks: a huge answer, one that trickles,
and a flood of alerts that fills a receiver's queue.

The receiver is whoever holds the URL (a chat service, a SIEM, or a host an
attacker took over); what it answers must cost the node bounded memory and
bounded time per attempt, or one bad receiver holds its queue (every later
alert or checkpoint to it waits) and grows the node's memory with its answer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from donjon.audit.sinks import ATTEMPTS
from donjon.audit.sinks import WebhookSink as CheckpointWebhook
from donjon.monitor.webhooks import WebhookSink
from donjon.secret import Secret
from egress_world import TestCA
from monitor_support import WebhookReceiver

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
#: The bytes a huge answer offers: far more than any alert receiver needs to say.
HUGE = 256 << 20


class HostileReceiver:
    """A TLS server on loopback that reads one request and answers with `answer(conn)`."""

    def __init__(self, directory: Path, answer: Callable[[ssl.SSLSocket], None]) -> None:
        ca = TestCA()
        cert, key = ca.issue(["localhost"], directory / "hostile")
        self.ca_file = directory / "hostile-ca.pem"
        self.ca_file.write_bytes(ca.pem)
        self.requests = 0
        self.sent = 0
        self._answer = answer
        self._stop = threading.Event()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._tls = context.wrap_socket(socket.create_server(("127.0.0.1", 0)), server_side=True)
        self.url = f"https://localhost:{self._tls.getsockname()[1]}/hook"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._tls.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: ssl.SSLSocket) -> None:
        with conn:
            try:
                conn.recv(65536)
                self.requests += 1
                self._answer(conn)
            except OSError:
                pass

    def send(self, conn: ssl.SSLSocket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self._stop.set()
        self._tls.close()


@pytest.fixture
def huge(tmp_path: Path) -> Iterator[HostileReceiver]:
    def answer(conn: ssl.SSLSocket) -> None:
        receiver.send(conn, f"HTTP/1.1 200 OK\r\ncontent-length: {HUGE}\r\n\r\n".encode())
        chunk = b"x" * 65536
        for _ in range(HUGE // len(chunk)):
            receiver.send(conn, chunk)

    receiver = HostileReceiver(tmp_path, answer)
    yield receiver
    receiver.close()


@pytest.fixture
def trickle(tmp_path: Path) -> Iterator[HostileReceiver]:
    stop = threading.Event()

    def answer(conn: ssl.SSLSocket) -> None:
        receiver.send(conn, b"HTTP/1.1 200 OK\r\n")
        while not stop.wait(0.2):  # a header byte each time, never the blank line
            receiver.send(conn, b"x")

    receiver = HostileReceiver(tmp_path, answer)
    yield receiver
    stop.set()
    receiver.close()


def _alert(seq: int) -> dict[str, Any]:
    return {"seq": seq, "ts": 1764547200.0, "id": f"alert_{seq:032x}", "kind": "k"}


async def _deliver(receiver: HostileReceiver, grace_s: float, **opts: Any) -> WebhookSink:
    sink = WebhookSink([receiver.url], Secret(SECRET), ca_file=receiver.ca_file, **opts)
    sink.start()
    sink.deliver(_alert(1))
    await sink.close(grace_s=grace_s)
    return sink


def test_a_huge_answer_is_not_read_into_the_node(huge: HostileReceiver) -> None:
    """A 2xx with a 256 MiB body is a delivery; the body is not read (memory stays bounded)."""
    sink = asyncio.run(_deliver(huge, grace_s=120, max_attempts=1, timeout_s=60))
    assert huge.sent < 32 << 20, f"the node read {huge.sent} bytes of the receiver's answer"
    assert (sink.delivered, sink.failed) == (1, 0)


def test_a_trickling_answer_ends_the_attempt(trickle: HostileReceiver) -> None:
    """A receiver sending a header byte every 0.2 s cannot hold an attempt past its timeout:
    the attempt fails, and the alert is counted failed instead of waiting forever."""
    sink = asyncio.run(_deliver(trickle, grace_s=30, max_attempts=1, timeout_s=1.0))
    assert trickle.requests == 1
    assert (sink.delivered, sink.failed) == (0, 1)


def test_a_flood_of_one_kind_does_not_push_out_another_kinds_alert(tmp_path: Path) -> None:
    """Credential stuffing from many networks fills a URL's queue with one kind of alert;
    the sandbox violation raised next still goes, in place of one of the flood's (before,
    the full queue dropped it: the attack the flood covered was never pushed)."""
    receiver = WebhookReceiver(tmp_path)
    try:
        flood = [_alert(seq) | {"kind": "auth.credential_stuffing"} for seq in range(1, 6)]
        real = _alert(6) | {"kind": "sandbox.violation"}
        sink = WebhookSink([receiver.url], Secret(SECRET), ca_file=receiver.ca_file, max_queue=5)

        async def deliver() -> None:
            sink.start()
            for alert in [*flood, real]:
                sink.deliver(alert)
            await sink.close(grace_s=60)

        asyncio.run(deliver())
        sent = [json.loads(d.body)["data"] for d in receiver.delivered()]
        assert real["id"] in [a["id"] for a in sent]
        assert [a["kind"] for a in sent].count("auth.credential_stuffing") == 4
        assert (sink.delivered, sink.dropped) == (5, 1)
    finally:
        receiver.close()


def test_a_flood_of_one_kind_gives_way_to_itself_alone(tmp_path: Path) -> None:
    """Past a full queue, more alerts of the kind that fills it are dropped, newest first,
    and never one of another kind that was queued."""
    receiver = WebhookReceiver(tmp_path)
    try:
        first = _alert(1) | {"kind": "egress.refused"}
        flood = [_alert(seq) | {"kind": "auth.credential_stuffing"} for seq in range(2, 9)]
        sink = WebhookSink([receiver.url], Secret(SECRET), ca_file=receiver.ca_file, max_queue=3)

        async def deliver() -> None:
            sink.start()
            for alert in [first, *flood]:
                sink.deliver(alert)
            await sink.close(grace_s=60)

        asyncio.run(deliver())
        sent = [json.loads(d.body)["data"]["seq"] for d in receiver.delivered()]
        assert sent == [1, 2, 3]
        assert sink.dropped == 5
    finally:
        receiver.close()


def _checkpoint(receiver: HostileReceiver) -> CheckpointWebhook:
    """A checkpoint webhook sink given one checkpoint, stopped once it has tried it."""
    sink = CheckpointWebhook(
        receiver.url,
        verify=ssl.create_default_context(cafile=str(receiver.ca_file)),
        timeout_s=1.0,
    )
    sink.deliver({"size": 1, "root": "00" * 32, "ts": 1764547200.0, "note": "n"})
    sink.close(timeout=60)
    return sink


def test_a_huge_answer_is_not_read_into_the_audit_writer(huge: HostileReceiver) -> None:
    """The checkpoint webhook reads a 2xx's status, not its 256 MiB body."""
    sink = _checkpoint(huge)
    assert huge.sent < 32 << 20, f"the writer read {huge.sent} bytes of the receiver's answer"
    assert sink.delivered == 1


def test_a_trickling_answer_ends_the_checkpoint_attempt(trickle: HostileReceiver) -> None:
    """A receiver trickling header bytes cannot hold a checkpoint's attempt past its timeout:
    the attempts end (five, then the checkpoint is logged as not delivered)."""
    sink = _checkpoint(trickle)
    assert trickle.requests == ATTEMPTS
    assert sink.delivered == 0
