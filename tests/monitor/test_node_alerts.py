"""Alerts on a real node: raised from real requests, listed by GET /v1/alerts and
`donjon alerts`, delivered to a webhook, kept across a restart."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from async_support import bundle
from donjon.bundle import build_bundle
from harness import FUNCTIONS, LiveNode, fresh_source, run_cli, start_node
from monitor_support import WebhookReceiver

SECRET = "whsec_" + base64.b64encode(b"n" * 32).decode()
#: The settings each node of this module was started with (a restart uses them again).
ENV_OF: dict[Path, dict[str, str]] = {}
_PER_SOURCE = 5
_DISTINCT = 8


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(tmp_path_factory.mktemp("hooks"))
    yield r
    r.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, receiver: WebhookReceiver) -> Iterator[LiveNode]:
    env = {
        "DONJON_MONITOR_AUTH_FAILURES": str(_PER_SOURCE),
        "DONJON_MONITOR_AUTH_DISTINCT_KEYS": str(_DISTINCT),
        "DONJON_MONITOR_TICK_S": "0.2",
        "DONJON_ALERT_WEBHOOKS": receiver.url,
        "DONJON_ALERT_WEBHOOK_SECRET": SECRET,
        "DONJON_ALERT_WEBHOOK_CA": str(receiver.ca_file),
    }
    node = start_node(tmp_path_factory.mktemp("monitor-node"), env)
    ENV_OF[node.data_dir] = env
    yield node
    node.stop()


def _bad_key(key_id: str) -> str:
    return f"dj_{key_id}_" + "A" * 43


def _alerts(node: LiveNode, **params: Any) -> list[dict[str, Any]]:
    with node.client() as c:
        r = c.get("/v1/alerts", params=params)
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()
    return found


def _wait_alert(node: LiveNode, kind: str, subject: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for alert in _alerts(node, kind=kind, n=1000):
            if alert["subject"] == subject:
                return alert
        time.sleep(0.2)
    raise AssertionError(f"no {kind} alert on {subject} within 60 s")


def _records(node: LiveNode) -> dict[int, dict[str, Any]]:
    with node.client() as c:
        records = c.get("/v1/audit", params={"n": 10_000}).json()
    return {r["seq"]: r for r in records}


def test_credential_stuffing_from_one_source_is_alerted(
    live: LiveNode, receiver: WebhookReceiver
) -> None:
    """Bad keys from one address raise auth.credential_stuffing resting on its denials."""
    source = fresh_source()
    with live.client(_bad_key("00000000000000f1"), source) as c:
        for _ in range(_PER_SOURCE + 1):
            assert c.get("/v1/functions").status_code == 401
    alert = _wait_alert(live, "auth.credential_stuffing", f"source:{source}")
    records = _records(live)
    assert records[alert["seq"]]["action"] == "alert.raised"
    assert records[alert["seq"]]["actor"] == "system:monitor"
    for seq in alert["evidence"]:
        assert records[seq]["action"] == "auth.denied"
        assert records[seq]["detail"]["client"] == source
    receiver.wait_for(1)
    bodies = [Webhook(SECRET).verify(d.body, d.headers) for d in receiver.delivered()]
    assert alert["seq"] in [b["data"]["seq"] for b in bodies]


def test_failures_across_keys_are_alerted(live: LiveNode) -> None:
    """Bad keys with different ids, each from its own address, raise a node-wide alert."""
    for i in range(_DISTINCT):
        with live.client(_bad_key(f"{0xABC000 + i:016x}"), fresh_source()) as c:
            assert c.get("/v1/functions").status_code == 401
    alert = _wait_alert(live, "auth.credential_stuffing", "node:authentication")
    assert alert["detail"]["distinct_keys"] >= _DISTINCT


def _deploy_unscanned(node: LiveNode, directory: Path) -> str:
    """Deploy `directory` with --unsafe-skip-scan; the function's name."""
    _, archive = build_bundle(directory)
    with node.client() as c:
        r = c.post(
            "/v1/functions",
            content=archive,
            headers={"content-type": "application/gzip"},
            params={"unsafe_skip_scan": "true"},
        )
    assert r.status_code == 201, r.text
    name: str = r.json()["name"]
    return name


def test_deploy_without_scan_is_alerted_and_listed_by_the_cli(live: LiveNode) -> None:
    """--unsafe-skip-scan raises deploy.scan_skipped, listed by `donjon alerts --json`."""
    name = _deploy_unscanned(live, FUNCTIONS / "web")
    alert = _wait_alert(live, "deploy.scan_skipped", f"function:{name}")
    out = run_cli(live.env(), "alerts", "--json", "--since", "1h", "--kind", "deploy.scan_skipped")
    listed = json.loads(out.stdout)
    assert alert["seq"] in [a["seq"] for a in listed]
    table = run_cli(live.env(), "alerts", "-n", "1000").stdout
    assert "deploy.scan_skipped" in table and str(alert["seq"]) in table


def test_alerts_need_alert_read(live: LiveNode) -> None:
    """An invoker key is refused GET /v1/alerts; an auditor key is served."""
    invoker = live.create_key("inv-alerts", "invoker")["key"]
    auditor = live.create_key("aud-alerts", "auditor")["key"]
    with live.client(invoker) as c:
        assert c.get("/v1/alerts").status_code == 403
    with live.client(auditor) as c:
        assert c.get("/v1/alerts").status_code == 200


@pytest.mark.parametrize(
    "query",
    ["n=0", "n=5000", "since=yesterday", "since=-5", "kind=Bad Kind!", "kind=", "before=-1"],
)
def test_bad_alert_queries_are_refused(live: LiveNode, query: str) -> None:
    """A malformed query is a 400 that names the parameter."""
    with live.client() as c:
        r = c.get(f"/v1/alerts?{query}")
    assert r.status_code == 400, r.text


def test_alerts_survive_a_restart(live: LiveNode) -> None:
    """After the node stops and starts again, its alerts are still listed (the index)."""
    before = {a["seq"] for a in _alerts(live, n=1000)}
    assert before
    live.stop()
    live.serve_again(ENV_OF[live.data_dir])
    after = {a["seq"] for a in _alerts(live, n=1000)}
    assert before <= after


def _metric(text: str, line_start: str) -> float:
    found = [ln for ln in text.splitlines() if ln.startswith(line_start + " ")]
    assert found, f"{line_start} is not in /metrics"
    return float(found[0].rsplit(" ", 1)[1])


def test_alert_deliveries_and_losses_are_counted_in_metrics(
    live: LiveNode, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    """/metrics counts alerts raised, webhook deliveries by outcome (delivered, failed,
    dropped for a full queue) and records the monitor never examined: a flood that makes
    a real alert's push or examination be lost shows where an operator's monitoring looks
    (before, only a log line said so)."""
    name = _deploy_unscanned(
        live, bundle(tmp_path, "counted", "def handler(e, c):\n    return 1\n")
    )
    _wait_alert(live, "deploy.scan_skipped", f"function:{name}")
    deadline = time.monotonic() + 60
    while True:
        with live.client() as c:
            text = c.get("/metrics").text
        delivered = 'donjon_alert_webhook_alerts_total{outcome="delivered"}'
        if _metric(text, delivered) >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert _metric(text, delivered) >= 1
    assert _metric(text, 'donjon_alert_webhook_alerts_total{outcome="dropped"}') == 0
    assert _metric(text, 'donjon_alert_webhook_alerts_total{outcome="failed"}') == 0
    assert _metric(text, "donjon_alerts_raised_total") >= 1
    assert _metric(text, "donjon_monitor_records_dropped_total") == 0
