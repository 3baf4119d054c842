"""GET /metrics and the JSON logs of a real `donjon serve`: what a call, a refusal, a cold
start and a kill leave in each, and the one request id they share with the audit log."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import LiveNode, run_cli, start_node

pytestmark = pytest.mark.slow  # a node of its own, real sandboxes

HANDLER = """\
import time


def handler(event, context):
    time.sleep(float(event.get("s", 0)))
    return {"ok": True}
"""


def _function(root: Path, name: str, manifest: str) -> Path:
    directory = root / name
    directory.mkdir()
    (directory / "donjon.yaml").write_text(f"name: {name}\nhandler: main.handler\n{manifest}")
    (directory / "main.py").write_text(HANDLER)
    return directory


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node serving `obs-warm` (warm, 4 at once, 6 s) and `obs-limited` (2 calls a minute)."""
    node = start_node(tmp_path_factory.mktemp("obs-node"))
    try:
        src = tmp_path_factory.mktemp("obs-src")
        node.deploy(
            _function(
                src,
                "obs-warm",
                "memory_mb: 64\ntimeout_s: 6\nisolation: warm\nlimits: {concurrency: 4}\n",
            )
        )
        node.deploy(
            _function(src, "obs-limited", "memory_mb: 64\ntimeout_s: 5\nlimits: {rate: 2/minute}\n")
        )
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def scraper(own: LiveNode) -> str:
    """A key made with `donjon key create --role metrics`."""
    done = run_cli(own.env(), "key", "create", "scraper", "--role", "metrics", "--output", "json")
    key: str = json.loads(done.stdout)["key"]
    return key


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(node: LiveNode, key: str) -> Samples:
    with node.client(key) as c:
        r = c.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): float(s.value)
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def log_lines(node: LiveNode) -> list[dict[str, Any]]:
    """Every line `donjon serve` wrote so far, each parsed as JSON (a line that is not fails)."""
    text = (node.data_dir / "serve.log").read_text()
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def audit_record(node: LiveNode, request_id: str) -> dict[str, Any]:
    with node.client() as c:
        records = c.get("/v1/audit", params={"n": 200}).json()
    return next(
        r
        for r in records
        if r["action"] == "function.invoke" and r["detail"].get("request_id") == request_id
    )


def test_metrics_key_reads_metrics_and_nothing_else(own: LiveNode, scraper: str) -> None:
    """The built-in metrics role reads /metrics; invoke, audit, keys and the API doc are 403."""
    with own.client(scraper) as c:
        text = c.get("/metrics").text
    for family, kind in (
        ("donjon_invocations_total", "counter"),
        ("donjon_invocation_duration_seconds", "histogram"),
        ("donjon_cold_starts_total", "counter"),
        ("donjon_sandbox_kills_total", "counter"),
        ("donjon_auth_failures_total", "counter"),
        ("donjon_rate_limited_total", "counter"),
        ("donjon_egress_connections_total", "counter"),
        ("donjon_sandboxes", "gauge"),
        ("donjon_sandboxes_draining", "gauge"),
        ("donjon_audit_append_seconds", "histogram"),
        ("donjon_audit_batch_records", "histogram"),
        ("donjon_audit_records_total", "counter"),
    ):
        assert f"# TYPE {family} {kind}\n" in text
    with own.client(scraper) as c:
        assert c.post("/v1/functions/obs-warm/invoke", json={}).status_code == 403
        assert c.get("/v1/audit").status_code == 403
        assert c.get("/v1/keys").status_code == 403
        assert c.get("/openapi.json").status_code == 403


def test_a_call_is_counted_with_its_latency_and_pool(own: LiveNode, scraper: str) -> None:
    """One call adds one ok invocation and one latency sample; its sandbox shows in the pool."""
    before = scrape(own, scraper)
    assert own.invoke("obs-warm", {}).status_code == 200
    after = scrape(own, scraper)
    key = {"function": "obs-warm", "outcome": "ok"}
    assert (
        value(after, "donjon_invocations_total", **key)
        - value(before, "donjon_invocations_total", **key)
        == 1
    )
    name = "donjon_invocation_duration_seconds_count"
    assert value(after, name, function="obs-warm") - value(before, name, function="obs-warm") == 1
    sandboxes = value(after, "donjon_sandboxes", function="obs-warm", state="idle") + value(
        after, "donjon_sandboxes", function="obs-warm", state="busy"
    )
    assert sandboxes >= 1
    assert value(after, "donjon_audit_records_total") > value(before, "donjon_audit_records_total")


def test_a_second_call_while_the_sandbox_is_busy_is_a_cold_start(
    own: LiveNode, scraper: str
) -> None:
    """A warm function's call that finds its sandbox busy starts another: a cold start."""
    assert own.invoke("obs-warm", {}).status_code == 200  # at least one sandbox, idle
    before = scrape(own, scraper)
    busy0 = value(before, "donjon_sandboxes", function="obs-warm", state="busy")
    idle0 = value(before, "donjon_sandboxes", function="obs-warm", state="idle")
    holders = [
        threading.Thread(target=own.invoke, args=("obs-warm", {"s": 4})) for _ in range(int(idle0))
    ]
    for t in holders:  # every idle sandbox busy
        t.start()
    try:
        deadline = time.monotonic() + 60
        now = before
        while time.monotonic() < deadline:
            now = scrape(own, scraper)
            if value(now, "donjon_sandboxes", function="obs-warm", state="busy") >= busy0 + idle0:
                break
            time.sleep(0.02)
        else:
            pytest.fail(f"the holding calls never ran: {now}")
        assert own.invoke("obs-warm", {}).status_code == 200
    finally:
        for t in holders:
            t.join(60)
    after = scrape(own, scraper)
    assert value(after, "donjon_cold_starts_total") - value(before, "donjon_cold_starts_total") >= 1


def test_refusals_count_by_kind_and_limit(own: LiveNode, scraper: str) -> None:
    """A missing and a bad key count as auth failures by kind; a throttled call by its limit."""
    before = scrape(own, scraper)
    with httpx.Client(base_url=own.url, verify=own.tls, timeout=60) as c:
        assert c.post("/v1/functions/obs-warm/invoke", json={}).status_code == 401
        bad = {"authorization": "Bearer dj_0000000000000000_notakeyatall"}
        assert c.post("/v1/functions/obs-warm/invoke", json={}, headers=bad).status_code == 401
    with own.client(scraper) as c:  # a key whose role does not allow it
        assert c.get("/v1/audit").status_code == 403
    statuses = [own.invoke("obs-limited", {}).status_code for _ in range(3)]
    assert statuses.count(429) >= 1
    after = scrape(own, scraper)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("donjon_auth_failures_total", kind="missing") == 1
    assert delta("donjon_auth_failures_total", kind="invalid") == 1
    assert delta("donjon_auth_failures_total", kind="forbidden") == 1
    limited = delta("donjon_rate_limited_total", function="obs-limited", limit="rate")
    assert limited == statuses.count(429)


def test_a_killed_call_is_counted_and_logged_with_its_request_id(
    own: LiveNode, scraper: str
) -> None:
    """A call past its timeout: a kill by reason, and a JSON log line under the request id
    that its response and its audit record carry."""
    before = scrape(own, scraper)
    r = own.invoke("obs-warm", {"s": 30})
    assert r.status_code == 504 or r.status_code >= 500
    request_id = r.headers["x-request-id"]
    after = scrape(own, scraper)
    name = "donjon_sandbox_kills_total"
    assert value(after, name, reason="timeout") - value(before, name, reason="timeout") == 1
    outcome = {"function": "obs-warm", "outcome": "FunctionTimeout"}
    assert value(after, "donjon_invocations_total", **outcome) >= 1
    assert audit_record(own, request_id)["outcome"] == "FunctionTimeout"
    killed = [line for line in log_lines(own) if line.get("request_id") == request_id]
    assert [(line["level"], line["logger"]) for line in killed] == [("WARNING", "donjon.sandbox")]
    assert "obs-warm@" in killed[0]["event"] and "timeout" in killed[0]["event"]


def test_serve_writes_only_json_lines_without_credentials(own: LiveNode, scraper: str) -> None:
    """Off a terminal every line of the server is a JSON object, and no key is in any."""
    text = (own.data_dir / "serve.log").read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines
    for line in lines:
        assert isinstance(json.loads(line), dict), line
    assert own.admin_key not in text
    assert scraper not in text
