"""A ClientHello trickled in one-byte TLS records keeps the gateway's event loop busy.

The egress proxy runs on the node's one event loop and, for a CONNECT to port 443,
reads the tunnel's first bytes until they hold a whole ClientHello (to check its SNI).
It parsed everything read so far again after every read, and a hello may span many TLS
records: a function that sends a hello header announcing 60,000 bytes, then one byte
per 6-byte record, a record every millisecond on each of its 32 connections (the
per-call default), made the proxy re-walk up to 10,000 records per read, for the whole
10 s the proxy waits for a hello. Measured before the fix, on 2 shared cores: another
function's calls, made one after another meanwhile, took a median of several hundred
milliseconds to seconds (about 30 ms otherwise), some shed with 503 for the loop's lag.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from donjon.bundle import build_bundle
from egress_world import DnsServer, bind_free
from harness import LiveNode, start_node

HOST = "trickle.lag.test"
#: The per-call default of DONJON_EGRESS_MAX_CONNECTIONS.
CONNECTIONS = 32
#: Seconds the attack trickles (the proxy waits 10 s for a hello).
TRICKLE_S = 9.0

_ATTACKER = f'''\
import socket
import time

HOST = "{HOST}"


def _tunnel():
    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    s.sendall(f"CONNECT {{HOST}}:443 HTTP/1.1\\r\\nHost: {{HOST}}:443\\r\\n\\r\\n".encode())
    head = b""
    while b"\\r\\n\\r\\n" not in head:
        chunk = s.recv(1024)
        if not chunk:
            break
        head += chunk
    return s if head.startswith(b"HTTP/1.1 200") else None


def handler(event, context):
    socks = [s for s in (_tunnel() for _ in range(event["connections"])) if s]
    tunnels = len(socks)
    # A handshake header announcing a 60,000-byte ClientHello, then zeros: one byte per record.
    message = bytes([1]) + (60000).to_bytes(3, "big")
    end = time.monotonic() + event["seconds"]
    sent = 0
    while socks and time.monotonic() < end:
        byte = message[sent] if sent < len(message) else 0
        record = b"\\x16\\x03\\x01\\x00\\x01" + bytes([byte])
        for s in list(socks):
            try:
                s.sendall(record)
            except OSError:
                socks.remove(s)
        sent += 1
        time.sleep(0.001)
    return {{"tunnels": tunnels, "records": sent, "closed": tunnels - len(socks)}}
'''


class _Sink:
    """A TCP server at `address`:443 that accepts and discards: the attack's upstream."""

    def __init__(self, address: str) -> None:
        import socket

        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((address, 443))
        self._sock.listen(128)
        self._sock.settimeout(0.5)
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)  # nothing reads: the proxy never sends before its check

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._sock.close()


def _address() -> str:
    for last in range(2, 60):
        address = f"127.0.93.{last}"
        if bind_free(address, 443):
            return address
    raise RuntimeError("port 443 is taken on 127.0.93.2 to 127.0.93.59")


@pytest.fixture(scope="module")
def lag_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node whose proxy resolves HOST to a loopback sink it may dial."""
    address = _address()
    sink = _Sink(address)
    dns = DnsServer({HOST: [address]}, {})
    try:
        live = start_node(
            tmp_path_factory.mktemp("trickle-node"),
            {
                "DONJON_EGRESS_DNS": dns.address,
                "DONJON_EGRESS_ALLOW_NETWORKS": f"{address}/32",
            },
        )
        try:
            yield live
        finally:
            live.stop()
    finally:
        dns.close()
        sink.close()


def _deploy(node: LiveNode, root: Path, name: str, code: str, extra: str = "") -> None:
    root.mkdir()
    (root / "main.py").write_text(code)
    (root / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 30\n{extra}"
    )
    _, archive = build_bundle(root)
    with node.client() as c:
        r = c.post(
            "/v1/functions",
            content=archive,
            headers={"content-type": "application/gzip"},
            params={"unsafe_skip_scan": "true"},
        )
    assert r.status_code == 201, r.text


def test_trickled_client_hello_does_not_stall_other_functions(
    lag_node: LiveNode, tmp_path: Path
) -> None:
    """While one function trickles ClientHellos in one-byte records on all its tunnels,
    the proxy ends every tunnel at the hello's 17th record (before, it read on for the
    10 s it waits for a hello, re-parsing each time), and another function's calls are
    all served meanwhile (none shed for the loop's lag). Counts, not times: no test
    asserts a timing."""
    node = lag_node
    _deploy(
        node,
        tmp_path / "attacker",
        "trickler",
        _ATTACKER,
        f'permissions:\n  egress: ["{HOST}:443"]\n',
    )
    _deploy(node, tmp_path / "victim", "bystander", "def handler(event, context):\n    return 1\n")
    for _ in range(3):  # both sandboxes started before the attack
        assert node.invoke("bystander", {}).status_code == 200
    outcome: dict[str, object] = {}

    def attack() -> None:
        r = node.invoke("trickler", {"connections": CONNECTIONS, "seconds": TRICKLE_S})
        outcome["status"] = r.status_code
        outcome["body"] = r.json() if r.status_code == 200 else r.text

    attacker = threading.Thread(target=attack)
    attacker.start()
    time.sleep(1.5)  # the tunnels are open and the trickle has begun
    # For as long as the trickle would last (after the fix the proxy ends it at once).
    until = time.monotonic() + TRICKLE_S - 2
    _served(node, lambda n: time.monotonic() < until and n < 200)
    attacker.join(60)
    assert outcome.get("status") == 200, outcome
    body = outcome["body"]
    assert isinstance(body, dict) and body["tunnels"] == CONNECTIONS, body
    assert body["closed"] == CONNECTIONS, body  # every tunnel ended by the proxy


def _served(node: LiveNode, more: Callable[[int], bool]) -> None:
    """The bystander's calls, one after another while `more`(made so far) holds: each
    must answer 200 (none shed for the loop's lag)."""
    made = 0
    with node.client() as c:
        while more(made):
            r = c.post("/v1/functions/bystander/invoke", json={})
            assert r.status_code == 200, r.text
            made += 1
    assert made
