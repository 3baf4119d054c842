"""Simulated attacks on a real node, seen by the monitor (issue 13, points 5 to 7 and 9).

One node serves every attack here, its monitor configured as an operator would:
`auth_failures` in `block` mode with credential stuffing answered by a throttle of the
source, the other detectors in `alert` mode, a learning window of a few seconds. Each
attack is real traffic (HTTPS requests from loopback addresses of its own, real
functions in real sandboxes, the egress proxy of egress_realworld.py's test world):
each must raise its alert, listed by `GET /v1/alerts` and by `donjon alerts --json`,
resting on audit records that exist and say what the alert claims.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.auth
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from donjon.client_network import client_network
from egress_realworld import World, build_world, deploy, function_source, node_settings
from egress_world import DOMAIN
from harness import LiveNode, fresh_source, run_cli, start_node

#: The learning window of the first-seen detector: short, so the test outlives it.
LEARNING_S = 6.0
MONITOR = {
    "DONJON_MONITOR_MODES": "auth_failures=block",
    "DONJON_MONITOR_RESPONSES": "auth.credential_stuffing=throttle",
    "DONJON_MONITOR_THROTTLE": "3/minute",
    "DONJON_MONITOR_LEARNING_S": str(LEARNING_S),
    "DONJON_MONITOR_TICK_S": "1",
    # 127.0.0.1 is a proxy: its X-Forwarded-For names IPv6 callers (fresh_source() never
    # gives 127.0.0.1, so every other test's source is its own).
    "DONJON_TRUSTED_PROXIES": "127.0.0.1/32",
}
#: Failed authentications a credential-stuffing source sends (the rule's default: 20).
STUFFING = 30
#: Sources of a spread-out stuffing, one failure each (the across-keys rule's default: 10).
SPREAD = 12
#: Calls of a healthy function before its broken version is deployed: the error-rate
#: baseline judges after 5 blocks of 20 calls (monitor/baselines.py); one block more.
HEALTHY_CALLS = 120
BROKEN_CALLS = 12

Alert = dict[str, Any]


@pytest.fixture(scope="session", autouse=True)
def hostile_warm_copies() -> None:
    """Overrides tests/security/conftest.py's: this module starts a node of its own, so the
    session's shared node (and its hostile functions) is not started for it."""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The egress test world (origins, CA, DNS) the egress attack's proxy resolves through."""
    with build_world(tmp_path_factory.mktemp("monitor-world")) as built:
        yield built


@pytest.fixture(scope="module")
def mon(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node with its monitor configured for the attacks, and the functions they call."""
    root = tmp_path_factory.mktemp("monitor")
    live = start_node(root / "data", {**node_settings(world), **MONITOR})
    try:
        for name in ("mon-echo", "mon-other"):
            live.deploy(_function(root, name, "return event"))
        yield live
    finally:
        live.stop()


def _function(root: Path, name: str, body: str, tag: str = "") -> Path:
    fn = root / f"{name}{tag}"
    fn.mkdir()
    (fn / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
        "limits: {concurrency: 8}\n"
    )
    (fn / "main.py").write_text(f"def handler(event, context):\n    {body}\n")
    return fn


# --- reading the alerts --------------------------------------------------------------------


def _api_alerts(node: LiveNode, kind: str) -> list[Alert]:
    with node.client() as c:
        r = c.get("/v1/alerts", params={"kind": kind, "n": 500})
    assert r.status_code == 200, r.text
    alerts: list[Alert] = r.json()
    return alerts


def _wait_for_alert(node: LiveNode, kind: str, want: Callable[[Alert], bool]) -> Alert:
    """The first alert of `kind` that `want` accepts, waiting (bounded) for the monitor."""
    seen: list[Alert] = []
    started = time.monotonic()
    for _ in range(240):
        seen = _api_alerts(node, kind)
        found = [a for a in seen if want(a)]
        if found:
            # The figures for the report (pytest -s).
            print(
                f"\n{kind}: alert {found[0]['seq']} ({found[0]['subject']}) after "
                f"{time.monotonic() - started:.1f} s, {len(found[0]['evidence'])} evidence seq(s): "
                f"{found[0]['summary']}"
            )
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"no {kind} alert as expected in 120 s; alerts of that kind: {seen}")


def _cli_alerts(node: LiveNode) -> list[Alert]:
    done = run_cli(node.env(), "alerts", "--json")
    alerts: list[Alert] = json.loads(done.stdout)
    return alerts


def _records(node: LiveNode) -> dict[int, dict[str, Any]]:
    """The newest audit records (as many as the API gives at once), by seq."""
    with node.client() as c:
        r = c.get("/v1/audit", params={"n": 10_000})
    assert r.status_code == 200, r.text
    return {int(rec["seq"]): rec for rec in r.json()}


def _assert_grounded(
    node: LiveNode, alert: Alert, evidence_ok: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """The alert is an `alert.raised` record, is listed by the CLI too, and each of its
    evidence seqs is a record that exists and that `evidence_ok` accepts. -> the evidence."""
    records = _records(node)
    own = records.get(int(alert["seq"]))
    assert own is not None and own["action"] == "alert.raised", (alert, own)
    assert own["detail"]["kind"] == alert["kind"] and own["target"] == alert["subject"], own
    assert alert["evidence"], alert
    evidence = [records.get(int(seq)) for seq in alert["evidence"]]
    missing = [s for s, r in zip(alert["evidence"], evidence, strict=True) if r is None]
    assert not missing, f"evidence seqs {missing} of {alert} are not in the log"
    found = [r for r in evidence if r is not None]
    wrong = [r for r in found if not evidence_ok(r)]
    assert not wrong, f"evidence of {alert['kind']} that does not show it: {wrong}"
    listed = [a for a in _cli_alerts(node) if a["seq"] == alert["seq"]]
    assert listed and listed[0]["kind"] == alert["kind"], listed
    return found


# --- the attacks -----------------------------------------------------------------------


def test_credential_stuffing_is_alerted_and_throttled(mon: LiveNode) -> None:
    """Many bad keys from one source: a credential-stuffing alert, and the source throttled."""
    source = fresh_source()
    statuses = set()
    for _ in range(STUFFING):
        r = mon.invoke("mon-echo", {}, key=f"dj_{secrets.token_urlsafe(24)}", source=source)
        statuses.add(r.status_code)
    assert statuses <= {401, 429}, statuses

    alert = _wait_for_alert(
        mon, "auth.credential_stuffing", lambda a: a["subject"] == f"source:{source}"
    )
    assert alert["mode"] == "block" and alert["severity"] in ("high", "critical"), alert
    _assert_grounded(
        mon,
        alert,
        lambda r: r["action"] == "auth.denied" and r["detail"].get("client") == source,
    )

    # The configured response: a throttle of the source, audited with the alert it answers.
    def throttled() -> list[dict[str, Any]]:
        return [
            r
            for r in _records(mon).values()
            if r["action"] == "response.throttle" and r["detail"].get("alert_seq") == alert["seq"]
        ]

    for _ in range(120):
        if throttled():
            break
        time.sleep(0.5)
    responses = throttled()
    assert responses and responses[0]["outcome"] == "ok", responses
    # Even the right key, from that source, is now held to the throttle's 3 a minute ...
    got = [mon.invoke("mon-echo", {"i": i}, source=source).status_code for i in range(5)]
    assert 429 in got, got
    print(f"\nafter the throttle, the admin key from {source}: {got}")
    # ... while the same key from anywhere else is served.
    assert mon.invoke("mon-echo", {}, source=fresh_source()).status_code == 200


def test_credential_stuffing_from_a_rotating_ipv6_64_is_alerted_and_throttled(
    mon: LiveNode,
) -> None:
    """Bad keys from a new IPv6 address each time, all in one /64 (a host has a whole
    one): each address stays under the per-source threshold, the /64 does not. The alert
    names the /64, and its throttle holds any address in it; another /64 is served."""
    net = f"2001:db8:{secrets.randbelow(0xFFFF):x}"

    def call(address: str, key: str | None = None) -> int:
        with mon.client(key, "127.0.0.1") as c:  # the trusted proxy, forwarding `address`
            return c.post(
                "/v1/functions/mon-echo/invoke", content=b"{}", headers={"x-forwarded-for": address}
            ).status_code

    bad = {call(f"{net}:1::{n:x}", f"dj_{secrets.token_urlsafe(24)}") for n in range(STUFFING)}
    assert bad <= {401, 429}, bad
    subject = f"source:{client_network(f'{net}:1::1')}"
    alert = _wait_for_alert(mon, "auth.credential_stuffing", lambda a: a["subject"] == subject)
    assert alert["mode"] == "block", alert

    def throttled() -> bool:
        return any(
            r["action"] == "response.throttle" and r["detail"].get("alert_seq") == alert["seq"]
            for r in _records(mon).values()
        )

    for _ in range(120):
        if throttled():
            break
        time.sleep(0.5)
    assert throttled()
    got = [call(f"{net}:1:ffff::{i}") for i in range(5)]  # the right key, a new address
    assert 429 in got, got
    assert call(f"{net}:2::1") == 200


def test_credential_stuffing_spread_over_sources_is_alerted(mon: LiveNode) -> None:
    """Wrong secrets for many key ids, one try per source address (under any per-source
    threshold): the failures across keys make a node-wide credential-stuffing alert."""
    sources = [fresh_source() for _ in range(SPREAD)]
    for source in sources:
        key = f"dj_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"
        assert mon.invoke("mon-echo", {}, key=key, source=source).status_code == 401
    alert = _wait_for_alert(
        mon, "auth.credential_stuffing", lambda a: a["subject"] == "node:authentication"
    )
    evidence = _assert_grounded(mon, alert, lambda r: r["action"] == "auth.denied")
    assert {e["detail"].get("client") for e in evidence} & set(sources), evidence


def test_compromised_key_calling_a_function_it_never_called(mon: LiveNode) -> None:
    """A key used on one function through its learning window, then on another from a new
    network: first-seen alerts name the key, the function and the source."""
    key = mon.create_key(f"stolen-{secrets.token_hex(3)}", "invoker")
    created = time.monotonic()
    principal = f"key:{key['id']}"
    subject = f"principal:{principal}"
    for i in range(3):  # its usual traffic, learned: mon-echo from 127.0.0.1
        assert mon.invoke("mon-echo", {"i": i}, key=key["key"]).status_code == 200
    time.sleep(max(0.0, LEARNING_S + 1.0 - (time.monotonic() - created)))

    attacker = fresh_source()
    assert mon.invoke("mon-echo", {}, key=key["key"]).status_code == 200  # still usual
    r = mon.invoke("mon-other", {"loot": 1}, key=key["key"], source=attacker)
    assert r.status_code == 200, r.text  # alert mode: the call is served, and seen

    alert = _wait_for_alert(mon, "first_seen.function", lambda a: a["subject"] == subject)
    assert "mon-other" in json.dumps(alert), alert
    _assert_grounded(
        mon,
        alert,
        lambda r: (
            r["action"] == "function.invoke"
            and r["actor"] == principal
            and r["target"].startswith("mon-other@")
        ),
    )
    # What it did as usual raised nothing: only mon-other is named.
    assert not [
        a
        for a in _api_alerts(mon, "first_seen.function")
        if a["subject"] == subject and "mon-other" not in json.dumps(a)
    ]
    # The new network is first-seen too (127.0.0.1's /24 was the only one learned).
    _wait_for_alert(mon, "first_seen.source", lambda a: a["subject"] == subject)


def test_function_trying_egress_it_lacks(mon: LiveNode, world: World, tmp_path: Path) -> None:
    """A function granted api.donjon.test tries another host: an egress.refused alert."""
    deploy(mon, function_source(world, tmp_path, "eg-attack", "mon-egress"))
    host = f"other.{DOMAIN}"
    r = mon.invoke("mon-egress", {"op": "connect", "target": f"{host}:443", "sni": host})
    assert r.status_code == 200, r.text
    request_id = r.headers["x-request-id"]

    alert = _wait_for_alert(mon, "egress.refused", lambda a: a["subject"] == "function:mon-egress")
    evidence = _assert_grounded(
        mon,
        alert,
        lambda r: r["action"] == "egress.connect" and r["outcome"] == "denied",
    )
    assert any(
        e["detail"].get("request_id") == request_id
        and e["detail"].get("destination") == f"{host}:443"
        for e in evidence
    ), evidence


def test_error_rate_jump_after_a_deploy(mon: LiveNode, tmp_path: Path) -> None:
    """A healthy function redeployed broken: its error rate jumps, a baseline alert."""
    caller = mon.create_key(f"err-{secrets.token_hex(3)}", "invoker")
    mon.deploy(_function(tmp_path, "mon-flaky", "return event", "-v1"))
    with mon.client(caller["key"]) as c:
        for i in range(HEALTHY_CALLS):
            r = c.post("/v1/functions/mon-flaky/invoke", json={"i": i})
            assert r.status_code == 200, r.text
    broken = mon.deploy(
        _function(tmp_path, "mon-flaky", "raise RuntimeError('broken release')", "-v2")
    )
    with mon.client(caller["key"]) as c:
        for i in range(BROKEN_CALLS):
            r = c.post("/v1/functions/mon-flaky/invoke", json={"i": i})
            assert r.status_code >= 500, r.text

    subjects = {"function:mon-flaky@", f"principal:key:{caller['id']}"}
    alert = _wait_for_alert(
        mon,
        "baseline.error_rate",
        lambda a: any(str(a["subject"]).startswith(s) for s in subjects),
    )
    evidence = _assert_grounded(
        mon,
        alert,
        lambda r: (
            r["action"] == "function.invoke"
            and r["target"].startswith("mon-flaky@")
            and r["outcome"] != "ok"
        ),
    )
    version = broken.get("version")
    if version is not None:  # the failures are the broken version's
        assert all(e["target"] == f"mon-flaky@{version}" for e in evidence), evidence


def test_alerts_api_refuses_a_caller_without_alert_read(mon: LiveNode) -> None:
    """An invoker key cannot list the alerts (they name keys, sources and functions)."""
    key = mon.create_key(f"nosy-{secrets.token_hex(3)}", "invoker")
    with mon.client(key["key"]) as c:
        r = c.get("/v1/alerts")
    assert r.status_code == 403, r.text
    with httpx.Client(base_url=mon.url, verify=mon.tls) as anonymous:
        assert anonymous.get("/v1/alerts").status_code == 401


@pytest.mark.parametrize("invocation", ["RequestResponse", "Event"])
def test_stolen_sigv4_secret_used_from_a_new_network(mon: LiveNode, invocation: str) -> None:
    """A key's SigV4 secret used through the Lambda API (a call, or an Event queued) from a
    network the key never used, after its learning window: `first_seen.source` names the
    key, resting on the record that holds the new address."""
    key = mon.create_key(f"sigv4-{secrets.token_hex(3)}", "invoker")
    created = time.monotonic()
    principal = f"key:{key['id']}"
    for i in range(3):  # its usual traffic, learned: mon-echo from 127.0.0.1
        assert mon.invoke("mon-echo", {"i": i}, key=key["key"]).status_code == 200
    time.sleep(max(0.0, LEARNING_S + 1.0 - (time.monotonic() - created)))

    attacker = fresh_source()
    request = AWSRequest(
        method="POST",
        url=f"{mon.url}/2015-03-31/functions/mon-echo/invocations",
        data=b"{}",
        headers={"X-Amz-Invocation-Type": invocation},
    )
    credentials = Credentials(key["id"], key["sigv4_secret"])
    botocore.auth.SigV4Auth(credentials, "lambda", "us-east-1").add_auth(request)
    with mon.client("", source=attacker) as c:
        r = c.post(request.url, content=b"{}", headers=dict(request.headers.items()))
    assert r.status_code in (200, 202), r.text  # alert mode: served, and seen

    alert = _wait_for_alert(
        mon, "first_seen.source", lambda a: a["subject"] == f"principal:{principal}"
    )
    _assert_grounded(
        mon,
        alert,
        lambda rec: rec["actor"] == principal and rec["detail"].get("client") == attacker,
    )
