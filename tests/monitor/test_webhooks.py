"""Alert webhooks: Standard Webhooks signatures (checked by the reference verifier),
retries with backoff, a bounded queue, and the settings that configure them."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from donjon.config import ConfigError, load_settings
from donjon.monitor.webhooks import WebhookSink
from donjon.secret import Secret
from monitor_support import WebhookReceiver

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()


def _alert(seq: int) -> dict[str, Any]:
    return {
        "seq": seq,
        "ts": 1764547200.0 + seq,
        "id": f"alert_{seq:032x}",
        "kind": "auth.credential_stuffing",
        "detector": "auth_failures",
        "mode": "alert",
        "severity": "high",
        "subject": "source:203.0.113.7",
        "summary": "25 failed authentications",
        "evidence": [seq - 1],
        "detail": {},
    }


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(tmp_path)
    yield r
    r.close()


async def _deliver(
    receiver: WebhookReceiver, alerts: list[dict[str, Any]], **opts: Any
) -> WebhookSink:
    sink = WebhookSink([receiver.url], Secret(SECRET), ca_file=receiver.ca_file, **opts)
    sink.start()
    for alert in alerts:
        sink.deliver(alert)
    await sink.close(grace_s=60)
    return sink


def test_alert_is_signed_per_standard_webhooks(receiver: WebhookReceiver) -> None:
    """The reference verifier accepts the delivery; its payload is the alert."""
    asyncio.run(_deliver(receiver, [_alert(7)]))
    (delivery,) = receiver.delivered()
    payload = Webhook(SECRET).verify(delivery.body, delivery.headers)
    assert payload["type"] == "alert.raised"
    assert payload["data"]["seq"] == 7
    assert delivery.headers["webhook-id"] == _alert(7)["id"]
    assert delivery.headers["webhook-signature"].startswith("v1,")


def test_tampered_delivery_fails_verification(receiver: WebhookReceiver) -> None:
    """A body changed in transit, or another secret, does not verify."""
    asyncio.run(_deliver(receiver, [_alert(8)]))
    (delivery,) = receiver.delivered()
    tampered = delivery.body.replace(b'"high"', b'"low"')
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, delivery.headers)
    other = "whsec_" + base64.b64encode(b"o" * 32).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(delivery.body, delivery.headers)


@pytest.mark.slow
def test_failed_delivery_is_retried_with_the_same_id(tmp_path: Path) -> None:
    """Two 503s, then a 2xx: three attempts, one message id, each signed for its time."""
    receiver = WebhookReceiver(tmp_path, fail_first=2)
    try:
        sink = asyncio.run(_deliver(receiver, [_alert(9)], first_delay_s=0.05))
        assert [a.status for a in receiver.attempts] == [503, 503, 204]
        assert {a.headers["webhook-id"] for a in receiver.attempts} == {_alert(9)["id"]}
        for attempt in receiver.attempts:
            Webhook(SECRET).verify(attempt.body, attempt.headers)
        assert (sink.delivered, sink.failed) == (1, 0)
    finally:
        receiver.close()


@pytest.mark.slow
def test_delivery_gives_up_after_max_attempts(tmp_path: Path) -> None:
    """A receiver that always fails gets max_attempts tries, then the alert is counted failed."""
    receiver = WebhookReceiver(tmp_path, fail_first=1000)
    try:
        sink = asyncio.run(_deliver(receiver, [_alert(10)], first_delay_s=0.05, max_attempts=3))
        assert len(receiver.attempts) == 3
        assert (sink.delivered, sink.failed) == (0, 1)
    finally:
        receiver.close()


def test_full_queue_drops_and_counts(receiver: WebhookReceiver) -> None:
    """Past the queue's bound alerts are dropped and counted, never queued without limit."""
    sink = asyncio.run(_deliver(receiver, [_alert(s) for s in range(20, 25)], max_queue=2))
    assert sink.dropped == 3
    delivered = [json.loads(d.body)["data"]["seq"] for d in receiver.delivered()]
    assert delivered == [20, 21]


def _settings(**env: str) -> Any:
    return load_settings({"DONJON_DATA_DIR": "/tmp/donjon-test-unused", **env})


def test_webhook_settings_are_read() -> None:
    """DONJON_ALERT_WEBHOOKS, _SECRET and DONJON_MONITOR_MODES reach MonitorSettings."""
    monitor = _settings(
        DONJON_ALERT_WEBHOOKS="https://a.example/hook, https://b.example/x",
        DONJON_ALERT_WEBHOOK_SECRET=SECRET,
        DONJON_MONITOR_MODES="auth_failures=block,egress_refused=learn",
    ).monitor
    assert monitor.webhooks == ("https://a.example/hook", "https://b.example/x")
    assert monitor.webhook_secret is not None and monitor.webhook_secret.reveal() == SECRET
    assert dict(monitor.modes) == {"auth_failures": "block", "egress_refused": "learn"}


@pytest.mark.parametrize(
    "env",
    [
        {"DONJON_ALERT_WEBHOOKS": "http://a.example/hook", "DONJON_ALERT_WEBHOOK_SECRET": SECRET},
        {"DONJON_ALERT_WEBHOOKS": "https://a.example/hook"},
        {"DONJON_ALERT_WEBHOOKS": "https://a.example/h", "DONJON_ALERT_WEBHOOK_SECRET": "s3cret"},
        {"DONJON_MONITOR_MODES": "auth_failures=panic"},
        {"DONJON_MONITOR_MODES": "auth_failures"},
        {"DONJON_MONITOR_RESPONSES": "auth.credential_stuffing=explode"},
    ],
)
def test_bad_monitor_settings_are_refused(env: dict[str, str]) -> None:
    """Plain http, a missing or malformed secret, an unknown mode: a clear error."""
    with pytest.raises(ConfigError):
        _settings(**env)
