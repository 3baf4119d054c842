"""A node with one slow function at concurrency 1, and reading what it sheds: the
Prometheus metrics, the audit records and raw TLS connections read answer by answer
(the overload attacks in tests/security)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select

from donjon.store.tables import audit_log
from harness import LiveNode, start_node

SLOW = """\
import time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"slept": event.get("sleep", 0)}
"""
#: A node where at most one call waits per function (as long as it takes) and the loop's
#: lag sheds nothing (the machine's load must not decide what is shed).
SHEDDING_ENV = {
    "DONJON_MAX_QUEUED_PER_FUNCTION": "1",
    "DONJON_MAX_QUEUE_WAIT_S": "300",
    "DONJON_MAX_LOOP_LAG_S": "0",
}
MANIFEST = """\
name: {name}
handler: main.handler
memory_mb: 64
timeout_s: 60
isolation: warm
limits: {{concurrency: 1}}
"""


@contextlib.contextmanager
def bare_node(tmp_path: Path, env: dict[str, str]) -> Iterator[LiveNode]:
    """A node started with `env`, nothing deployed."""
    live = start_node(tmp_path / "data", env)
    try:
        yield live
    finally:
        live.stop()


@contextlib.contextmanager
def slow_node(tmp_path: Path, name: str, env: dict[str, str]) -> Iterator[LiveNode]:
    """A node started with `env`, with `name` deployed: a warm function at concurrency 1
    whose handler sleeps the event's `sleep` seconds."""
    live = start_node(tmp_path / "data", env)
    fn = tmp_path / name
    fn.mkdir(mode=0o755)
    (fn / "main.py").write_text(SLOW)
    (fn / "donjon.yaml").write_text(MANIFEST.format(name=name))
    fn.chmod(0o755)
    try:
        live.deploy(fn)
        yield live
    finally:
        live.stop()


def metric(node: LiveNode, name: str, **labels: str) -> float:
    """The value of metric `name` with exactly `labels` (0 if not shown)."""
    with node.client() as c:
        text = c.get("/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head in (name, f"{name}{{{want}}}"):
            return float(value)
    return 0.0


def wait_for_metric(node: LiveNode, name: str, value: float, **labels: str) -> None:
    """Poll until metric `name` shows `value` (fails after 60 s)."""
    deadline = time.monotonic() + 60
    while metric(node, name, **labels) != value:
        assert time.monotonic() < deadline, f"{name} never reached {value}"
        time.sleep(0.05)


def saturate(node: LiveNode, function: str, answers: list[Any]) -> list[threading.Thread]:
    """One call of `function` (a slow node's) running for 10 s and one waiting, each on a
    thread of its own that puts its response in `answers`: with a queue of one place, the
    next call is shed. Join the threads before the node stops."""

    def call(sleep: float) -> None:
        answers.append(node.invoke(function, {"sleep": sleep}))

    running = threading.Thread(target=call, args=(10,))
    running.start()
    wait_for_metric(node, "donjon_sandboxes", 1, function=function, state="busy")
    waiting = threading.Thread(target=call, args=(0,))
    waiting.start()
    wait_for_metric(node, "donjon_calls_waiting", 1)
    return [running, waiting]


def audit_records(data_dir: Path) -> list[dict[str, Any]]:
    """Every audit record of the node's SQLite database, in order."""
    engine = create_engine(f"sqlite:///{data_dir / 'donjon.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(audit_log.c.record).order_by(audit_log.c.seq))
            return [json.loads(bytes(raw)) for raw in rows.scalars()]
    finally:
        engine.dispose()


class Connection:
    """One raw TLS connection to the node, read response by response."""

    def __init__(self, node: LiveNode) -> None:
        self.host, port = node.url.removeprefix("https://").split(":")
        raw = socket.create_connection((self.host, int(port)), timeout=30)
        self.sock = node.tls.wrap_socket(raw, server_hostname=self.host)
        self.key = node.admin_key
        self.buf = b""

    def invoke(
        self,
        function: str,
        sleep: float,
        version: str = "1.1",
        extra: str = "",
        auth: str | None = None,
    ) -> bytes:
        """An invoke request's bytes; `auth`: its Authorization value ("" none, None the
        admin key)."""
        body = json.dumps({"sleep": sleep}).encode()
        auth = f"Bearer {self.key}" if auth is None else auth
        credentials = f"authorization: {auth}\r\n" if auth else ""
        return (
            f"POST /v1/functions/{function}/invoke HTTP/{version}\r\nhost: {self.host}\r\n"
            f"{credentials}content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{extra}\r\n"
        ).encode() + body

    def healthz(self) -> bytes:
        return f"GET /healthz HTTP/1.1\r\nhost: {self.host}\r\n\r\n".encode()

    def _more(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def response(self) -> tuple[int, dict[bytes, bytes], bytes]:
        """The next response: status, fields (each once), body."""
        while b"\r\n\r\n" not in self.buf:
            assert self._more(), f"closed before a response: {self.buf!r}"
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        status_line, *lines = head.split(b"\r\n")
        fields: dict[bytes, bytes] = {}
        for line in lines:
            name, _, value = line.partition(b":")
            assert name.lower() not in fields, f"{name!r} twice in {head!r}"
            fields[name.lower()] = value.strip()
        length = int(fields[b"content-length"])
        while len(rest) < length:
            assert self._more(), f"closed in the body of {head!r}"
            rest = self.buf.partition(b"\r\n\r\n")[2]
        self.buf = rest[length:]
        return int(status_line.split()[1]), fields, rest[:length]

    def closed(self) -> bool:
        """Whether the node closes the connection with nothing more sent (5 s at most)."""
        self.sock.settimeout(5)
        try:
            return not self._more() and not self.buf
        except TimeoutError:
            return False
