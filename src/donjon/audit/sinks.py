"""Where checkpoints go besides the database and the checkpoint file: a webhook, a syslog.

A copy held by someone else is what makes a rollback of the whole data dir
(database AND checkpoint file) visible. Both sinks hand each checkpoint to a
thread of their own through a bounded queue: the audit writer never waits on
the network, and a dead receiver costs dropped copies (counted and logged),
never memory or appends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from donjon.config_validators import loopback_host
from donjon.errors import Error

__all__ = [
    "CheckpointSink",
    "SinkError",
    "SyslogSink",
    "WebhookSink",
    "parse_syslog_target",
    "parse_webhook_url",
    "syslog_line",
]

log_ = logging.getLogger("donjon.audit")

#: Checkpoints waiting for one sink; beyond this the newest are dropped (and counted).
QUEUE_SIZE = 256
#: Attempts per checkpoint, and the pause before the n-th retry (seconds, doubling).
ATTEMPTS = 5
FIRST_BACKOFF_S = 0.5
TIMEOUT_S = 10.0
#: RFC 5424 PRI: facility 13 (log audit) * 8 + severity 6 (informational).
_PRI = 13 * 8 + 6


class SinkError(Error):
    """A checkpoint sink is misconfigured."""

    title = "Audit checkpoint sink error"


class CheckpointSink(Protocol):
    def deliver(self, entry: Mapping[str, Any]) -> None:
        """Queue one checkpoint entry ({"size", "root", "ts", "note"}); never blocks."""

    def close(self) -> None:
        """Deliver what is queued (bounded in time), then stop."""


def parse_webhook_url(url: str) -> str:
    """https://..., or http:// to a loopback address only (a receiver on the same host)."""
    parts = urlsplit(url.strip())
    hint = "set DONJON_AUDIT_CHECKPOINT_WEBHOOK to https://HOST[:PORT]/PATH"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SinkError(f"the checkpoint webhook {url!r} is not an http(s) URL", hint=hint)
    if parts.username or parts.password:
        raise SinkError("the checkpoint webhook URL must not carry credentials", hint=hint)
    if parts.scheme == "http" and not loopback_host(parts.hostname):
        raise SinkError(
            "the checkpoint webhook must be https:// unless it is on this host", hint=hint
        )
    return url.strip()


def parse_syslog_target(target: str) -> tuple[str, Any]:
    """("udp", (host, port)) or ("unix", path) from udp://HOST:PORT or unix:/PATH."""
    hint = "set DONJON_AUDIT_CHECKPOINT_SYSLOG to udp://HOST:PORT or unix:/PATH"
    target = target.strip()
    if target.startswith("unix:"):
        path = target[len("unix:") :]
        if not path.startswith("/"):
            raise SinkError(f"the syslog socket {path!r} is not an absolute path", hint=hint)
        return ("unix", path)
    parts = urlsplit(target)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "udp" or not parts.hostname or port is None or parts.path:
        raise SinkError(f"the syslog target {target!r} is malformed", hint=hint)
    return ("udp", (parts.hostname, port))


def syslog_line(entry: Mapping[str, Any], app: str = "donjon", msgid: str = "checkpoint") -> bytes:
    """One RFC 5424 message whose MSG is the entry's JSON."""
    stamp = datetime.fromtimestamp(float(entry.get("ts", time.time())), UTC)
    when = stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    host = socket.gethostname() or "-"
    body = json.dumps(entry, separators=(",", ":"), sort_keys=True)
    return f"<{_PRI}>1 {when} {host} {app} - {msgid} - {body}".encode()


class _QueuedSink:
    """A daemon thread draining a bounded queue into `_send`, with retries."""

    name = "sink"

    def __init__(self) -> None:
        self._queue: queue.Queue[Mapping[str, Any] | None] = queue.Queue(QUEUE_SIZE)
        self.dropped = 0
        self.delivered = 0
        self._thread = threading.Thread(target=self._run, name=f"audit-{self.name}", daemon=True)
        self._thread.start()

    def deliver(self, entry: Mapping[str, Any]) -> None:
        try:
            self._queue.put_nowait(dict(entry))
        except queue.Full:
            self.dropped += 1
            log_.warning(
                "audit checkpoint %s: queue full, checkpoint %s not sent (%d dropped)",
                self.name,
                entry.get("size"),
                self.dropped,
            )

    def close(self, timeout: float = 5.0) -> None:
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _send(self, entry: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is None:
                return
            pause = FIRST_BACKOFF_S
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    self._send(entry)
                except Exception as e:  # any failure of the receiver: retry, then log
                    if attempt == ATTEMPTS:
                        log_.error(
                            "audit checkpoint %s: checkpoint %s not delivered after %d tries: %s",
                            self.name,
                            entry.get("size"),
                            ATTEMPTS,
                            e,
                        )
                        break
                    time.sleep(pause)
                    pause *= 2
                else:
                    self.delivered += 1
                    break


class WebhookSink(_QueuedSink):
    """POSTs each checkpoint entry as JSON; a 2xx answer is a delivery.

    Only the answer's status is read, never its body, and an attempt ends within
    `timeout_s` in all: a receiver answering without end, or a header byte at a time,
    costs the audit writer bounded memory and its queue one attempt's time (before, a
    2xx body was read whole, and a trickle held every later checkpoint for ever).
    """

    name = "webhook"

    def __init__(self, url: str, *, verify: Any = True, timeout_s: float = TIMEOUT_S) -> None:
        # Imported here: httpx (with the CLI libraries it loads) costs the audit writer's
        # start about 0.1 s, and most nodes send their checkpoints nowhere.
        import httpx

        self._httpx = httpx
        self._url = parse_webhook_url(url)
        self._timeout_s = timeout_s
        self._verify = verify
        super().__init__()

    def _send(self, entry: Mapping[str, Any]) -> None:
        # An event loop (and a client) of the sink's thread for each attempt: checkpoints
        # are minutes apart, and it bounds the attempt in all, as httpx's timeout (per
        # read) does not.
        status = asyncio.run(self._post(entry))
        if not 200 <= status < 300:
            raise SinkError(f"the checkpoint webhook answered {status}")

    async def _post(self, entry: Mapping[str, Any]) -> int:
        client = self._httpx.AsyncClient(
            timeout=self._timeout_s, verify=self._verify, follow_redirects=False
        )
        async with (
            asyncio.timeout(self._timeout_s),
            client,
            client.stream("POST", self._url, json=dict(entry)) as response,
        ):
            return response.status_code


class SyslogSink(_QueuedSink):
    """Sends each checkpoint as one RFC 5424 datagram (UDP or a unix datagram socket)."""

    name = "syslog"

    def __init__(self, target: str) -> None:
        self._kind, self._address = parse_syslog_target(target)
        super().__init__()

    def _send(self, entry: Mapping[str, Any]) -> None:
        family = socket.AF_UNIX if self._kind == "unix" else socket.AF_INET
        if self._kind == "udp" and ":" in str(self._address[0]):
            family = socket.AF_INET6
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(TIMEOUT_S)
            sock.sendto(syslog_line(entry), self._address)
