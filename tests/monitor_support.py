"""Shared pieces of the monitor's tests: a real audit log on a SQLite file, a fake clock."""

from __future__ import annotations

import http.server
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from donjon.audit.log import AuditLog, CommittedRecord
from donjon.monitor.findings import Finding, Subject
from donjon.secret import Secret
from donjon.store import connect, create_schema
from egress_world import TestCA

KEY = Secret(b"k" * 32)


def make_engine(tmp_path: Path) -> Engine:
    engine = connect(f"sqlite:///{tmp_path / 'm.db'}")
    create_schema(engine)
    return engine


def make_log(engine: Engine) -> AuditLog:
    return AuditLog(engine, KEY)


@dataclass
class FakeClock:
    """A clock a test moves by hand."""

    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class EveryDenial:
    """A detector that finds every `auth.denied` record (the engine's tests)."""

    name: str = "every_denial"
    seen: list[int] = field(default_factory=list)
    ticks: int = 0

    def observe(self, record: CommittedRecord, now: float) -> list[Finding]:
        self.seen.append(record.seq)
        if record.event.action != "auth.denied":
            return []
        subject = Subject("source", str(record.event.detail.get("client", "?")))
        return [
            Finding(
                "auth.test", self.name, "high", subject, "a denial", (record.seq,), now, {"n": 1}
            )
        ]

    def tick(self, now: float) -> list[Finding]:
        self.ticks += 1
        return []


@dataclass
class Delivery:
    """One POST a receiver got: its headers (lower-case names) and body."""

    headers: dict[str, str]
    body: bytes
    #: The status the receiver answered.
    status: int


class WebhookReceiver:
    """An HTTPS server on loopback (a certificate from a CA of its own) that records POSTs.

    The first `fail_first` requests are answered 503, the rest 204.
    """

    def __init__(self, directory: Path, fail_first: int = 0) -> None:
        ca = TestCA()
        cert, key = ca.issue(["localhost"], directory / "receiver")
        self.ca_file = directory / "receiver-ca.pem"
        self.ca_file.write_bytes(ca.pem)
        #: Every POST, answered or refused, in order.
        self.attempts: list[Delivery] = []
        self.fail_first = fail_first
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("content-length", "0")), 1 << 20)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    status = 503 if len(receiver.attempts) < receiver.fail_first else 204
                    receiver.attempts.append(Delivery(headers, body, status))
                    receiver._arrived.notify_all()
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://localhost:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def delivered(self) -> list[Delivery]:
        with self._lock:
            return [d for d in self.attempts if d.status == 204]

    def wait_for(self, count: int, timeout_s: float = 60.0, *, attempts: bool = False) -> None:
        """Until `count` deliveries (or POSTs, with `attempts`) arrived, or the timeout passed."""
        deadline = time.monotonic() + timeout_s
        with self._arrived:
            while time.monotonic() < deadline:
                done = [d for d in self.attempts if attempts or d.status == 204]
                if len(done) >= count:
                    return
                self._arrived.wait(0.2)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
