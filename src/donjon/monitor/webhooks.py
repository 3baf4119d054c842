"""Alerts delivered to webhooks, signed per the Standard Webhooks specification.

Each alert is POSTed as JSON (`{"type": "alert.raised", "timestamp": ISO 8601,
"data": <the alert>}`) with three headers (standardwebhooks.com):

- `webhook-id`: the alert's id, the same on every attempt (receivers dedupe by it);
- `webhook-timestamp`: the attempt's time, integer Unix seconds;
- `webhook-signature`: `v1,` and base64 of HMAC-SHA256 under the secret's bytes
  (DONJON_ALERT_WEBHOOK_SECRET is `whsec_` + base64) of `id.timestamp.body`.

`deliver` only queues (on the event loop, never blocking it): one bounded
queue and one sending task per URL, so a slow or dead receiver delays only
its own alerts. A full queue gives up one alert, counts it (`dropped`) and
logs it; the alert stays in the audit log and `GET /v1/alerts`. The alert
given up is of the kind the queue holds most of: the newest queued one of that
kind, or the new alert if it is of that kind, so a flood of one kind
(credential stuffing from a thousand networks) never pushes out another kind's
alert. A failed attempt (a connection error, a timeout, any status but 2xx) is
retried with exponential backoff (1 s, 2 s, 4 s ... capped), `max_attempts` in
all; a redirect is a failure (never followed). Only the answer's status is read, never
its body, and each attempt ends within `timeout_s` in all: a receiver answering
without end, or a byte at a time, costs bounded memory and holds its queue for
one attempt's time at most.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import hmac
import json
import logging
import ssl
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from donjon.errors import Error
from donjon.secret import Secret

__all__ = ["WebhookError", "WebhookSink", "sign"]

log = logging.getLogger("donjon.monitor")


class WebhookError(Error):
    """The alert webhooks are misconfigured."""

    title = "Webhook error"


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        key = b""
    if not secret.startswith("whsec_") or len(key) < 24:
        raise WebhookError(
            "the webhook secret is not whsec_ and base64 of at least 24 bytes",
            hint="DONJON_ALERT_WEBHOOK_SECRET=whsec_$(head -c 32 /dev/urandom | base64)",
        )
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header's value: `v1,<base64 HMAC-SHA256(id.timestamp.body)>`."""
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def _kind(alert: Mapping[str, Any]) -> str:
    return str(alert.get("kind", ""))


class _Endpoint:
    """One URL's queue of alerts (at most `max_queue`) and its sending task."""

    def __init__(self, url: str, max_queue: int) -> None:
        self.url = url
        self.max_queue = max_queue
        self.queue: deque[Mapping[str, Any]] = deque()
        #: Queued alerts by kind.
        self.kinds: Counter[str] = Counter()
        self.arrived = asyncio.Event()
        #: Set while nothing is queued or being sent.
        self.settled = asyncio.Event()
        self.settled.set()
        self.task: asyncio.Task[None] | None = None

    def put(self, alert: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """Queue `alert`; the alert given up for room (None: there was room)."""
        given_up = None
        if len(self.queue) >= self.max_queue:
            most, count = self.kinds.most_common(1)[0]
            if self.kinds[_kind(alert)] >= count:
                return alert  # of the kind the queue holds most of: it goes
            at = max(i for i, queued in enumerate(self.queue) if _kind(queued) == most)
            given_up = self.queue[at]
            del self.queue[at]
            self.kinds[most] -= 1
        self.queue.append(alert)
        self.kinds[_kind(alert)] += 1
        self.settled.clear()
        self.arrived.set()
        return given_up

    async def take(self) -> Mapping[str, Any]:
        """The oldest queued alert, once there is one."""
        while not self.queue:
            self.arrived.clear()
            await self.arrived.wait()
        alert = self.queue.popleft()
        self.kinds[_kind(alert)] -= 1
        return alert

    def sent(self) -> None:
        """The alert taken last was sent (or given up after its attempts)."""
        if not self.queue:
            self.settled.set()


class WebhookSink:
    """Queues each alert for every configured URL and sends it, signed, with retries."""

    def __init__(
        self,
        urls: Sequence[str],
        secret: Secret[str],
        *,
        ca_file: Path | None = None,
        max_queue: int = 1000,
        max_attempts: int = 6,
        first_delay_s: float = 1.0,
        max_delay_s: float = 60.0,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = secret_bytes(secret.reveal())
        self._endpoints = [_Endpoint(u, max(1, max_queue)) for u in dict.fromkeys(urls)]
        self._max_attempts = max(1, max_attempts)
        self._first_delay_s = first_delay_s
        self._max_delay_s = max_delay_s
        self._clock = clock
        self._timeout_s = timeout_s
        context = ssl.create_default_context()
        if ca_file is not None:
            context.load_verify_locations(cafile=str(ca_file))
        self._client = httpx.AsyncClient(
            verify=context, timeout=timeout_s, follow_redirects=False, trust_env=False
        )
        #: Alerts (per URL) delivered, given up after every attempt, dropped for a full queue.
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    def start(self) -> None:
        """Start one sending task per URL on the running loop."""
        loop = asyncio.get_running_loop()
        for endpoint in self._endpoints:
            if endpoint.task is None:
                endpoint.task = loop.create_task(self._send_all(endpoint), name="alert-webhook")

    def deliver(self, alert: Mapping[str, Any]) -> None:
        """Queue `alert` for every URL (on the event loop; never blocks)."""
        for endpoint in self._endpoints:
            given_up = endpoint.put(alert)
            if given_up is not None:
                self.dropped += 1
                log.warning(
                    "alert webhook %s: queue full, alert seq %s (%s) not sent (%d dropped in"
                    " all); it is in the audit log and GET /v1/alerts",
                    endpoint.url,
                    given_up.get("seq"),
                    _kind(given_up),
                    self.dropped,
                )

    async def close(self, grace_s: float = 5.0) -> None:
        """Give queued alerts up to `grace_s` to go, then stop (what is left is logged)."""
        waits = [e.settled.wait() for e in self._endpoints if e.task is not None]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), grace_s)
        for endpoint in self._endpoints:
            left = len(endpoint.queue)
            if left:
                log.warning(
                    "alert webhook %s: %d alert(s) not sent at shutdown", endpoint.url, left
                )
            if endpoint.task is not None:
                endpoint.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await endpoint.task
                endpoint.task = None
        await self._client.aclose()

    # -- sending ------------------------------------------------------------------

    async def _send_all(self, endpoint: _Endpoint) -> None:
        while True:
            alert = await endpoint.take()
            try:
                await self._send(endpoint.url, alert)
            finally:
                endpoint.sent()

    def _body(self, alert: Mapping[str, Any]) -> bytes:
        raised = datetime.datetime.fromtimestamp(float(alert.get("ts", 0)), datetime.UTC)
        payload = {
            "type": "alert.raised",
            "timestamp": raised.isoformat().replace("+00:00", "Z"),
            "data": dict(alert),
        }
        return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()

    async def _attempt(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """One POST's status, within `timeout_s` in all; the answer's body is left unread."""
        async with (
            asyncio.timeout(self._timeout_s),
            self._client.stream("POST", url, content=body, headers=headers) as response,
        ):
            return response.status_code

    async def _send(self, url: str, alert: Mapping[str, Any]) -> None:
        msg_id = str(alert.get("id") or f"alert_seq_{alert.get('seq')}")
        body = self._body(alert)
        delay = self._first_delay_s
        why = ""
        for attempt in range(1, self._max_attempts + 1):
            timestamp = int(self._clock())
            headers = {
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(self._key, msg_id, timestamp, body),
            }
            try:
                status = await self._attempt(url, body, headers)
            except TimeoutError:
                why = f"no answer within {self._timeout_s:g} s"
            except httpx.HTTPError as e:
                why = f"{type(e).__name__}: {e}"
            else:
                if 200 <= status < 300:
                    self.delivered += 1
                    return
                why = f"status {status}"
            if attempt < self._max_attempts:
                log.info("alert webhook %s: attempt %d failed (%s)", url, attempt, why)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_delay_s)
        self.failed += 1
        log.warning(
            "alert webhook %s: alert seq %s not delivered after %d attempts (%s)",
            url,
            alert.get("seq"),
            self._max_attempts,
            why,
        )
