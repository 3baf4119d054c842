"""Turning the monitor's automatic responses against someone else (issue 13, point 7).

One node with its statistical and sandbox detectors in `block` mode, as an operator
who wants the platform to act on its findings would run it. Each attack is real
traffic against real functions in real sandboxes: a caller (anonymous, or the owner
of a function others call) tries to make the monitor quarantine or throttle what is
not its own. The alert is still raised (it is a fact worth knowing); the response
must not fall on a party that did nothing.
"""

from __future__ import annotations

import base64
import gzip
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from async_support import bundle
from harness import LiveNode, fresh_source, start_node
from triggers.webhook_signing import new_whsec, standard_headers
from webhook_support import post_hook

pytestmark = pytest.mark.slow

MONITOR = {
    "DONJON_MONITOR_MODES": "sandbox_violation=block,error_rate=block,duration=block",
    "DONJON_MONITOR_TICK_S": "0.2",
}

#: A public function that takes a gzip-compressed, base64 body, as senders of large
#: payloads often do.
INFLATE = """\
import base64
import gzip


def handler(event, context):
    data = gzip.decompress(base64.b64decode(event.get("body") or ""))
    return {"statusCode": 200, "body": str(len(data))}
"""


@pytest.fixture(scope="session", autouse=True)
def hostile_warm_copies() -> None:
    """Overrides tests/security/conftest.py's: this module starts a node of its own, so the
    session's shared node (and its hostile functions) is not started for it."""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = start_node(tmp_path_factory.mktemp("monitor-abuse"), MONITOR)
    try:
        yield live
    finally:
        live.stop()


def _records(node: LiveNode, action: str) -> list[dict[str, Any]]:
    with node.client() as c:
        records: list[dict[str, Any]] = c.get("/v1/audit", params={"n": 1000}).json()
    return [r for r in records if r["action"] == action]


def _alert(node: LiveNode, kind: str, subject: str) -> dict[str, Any]:
    """The first alert of `kind` on `subject`, waited for (bounded: 60 s)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for alert in _records(node, "alert.raised"):
            if alert["target"] == subject and alert["detail"]["kind"] == kind:
                return alert
        time.sleep(0.2)
    raise AssertionError(f"no {kind} alert on {subject} within 60 s")


def _responses_to(node: LiveNode, alert: dict[str, Any]) -> list[dict[str, Any]]:
    """The response records answering `alert`, after the moment its response would take."""
    time.sleep(2)  # the responder acts right after the alert is written, if it acts
    return [
        r
        for prefix in ("response.throttle", "response.quarantine", "response.revoke")
        for r in _records(node, prefix)
        if r["detail"].get("alert_seq") == alert["seq"]
    ]


def test_anonymous_caller_cannot_quarantine_a_public_function_with_a_memory_bomb(
    node: LiveNode, tmp_path: Path
) -> None:
    """One anonymous request whose body inflates past the function's memory ends that call
    (507) and raises sandbox.violation; it does not quarantine the function for every other
    caller (before, a 250 KiB gzip of zeros made the monitor stop a public function until
    an admin released it)."""
    node.deploy(
        bundle(
            tmp_path,
            "inflate",
            INFLATE,
            "memory_mb: 64\ntimeout_s: 10\nlimits: {rate: 600/minute}\n"
            "triggers:\n  - http: {path: /inflate, methods: [POST], auth: public}\n",
        )
    )
    small = base64.b64encode(gzip.compress(b"hello"))
    bomb = base64.b64encode(gzip.compress(b"\0" * 200_000_000))
    with node.client("", fresh_source()) as c:
        assert c.post("/fn/inflate", content=small).status_code == 200
        killed = c.post("/fn/inflate", content=bomb)
    assert killed.status_code == 507, killed.text
    alert = _alert(node, "sandbox.violation", "function:inflate")
    assert alert["detail"]["detail"]["outcome"] == "FunctionMemoryExceeded"
    assert _responses_to(node, alert) == []
    with node.client("", fresh_source()) as c:  # anyone else: still served
        served = c.post("/fn/inflate", content=small)
    assert served.status_code == 200, served.text


def test_a_functions_owner_cannot_get_its_callers_keys_throttled(
    node: LiveNode, tmp_path: Path
) -> None:
    """A key that calls another tenant's function a lot, which then starts failing (a broken
    deploy, or a handler that fails that key's calls on purpose), raises the key's error-rate
    alert; the key is not throttled on every function, its own included (before: 10 calls
    a minute for an hour, set off by five failures the function's owner chose)."""
    node.deploy(bundle(tmp_path / "v1", "shared-svc", "def handler(e, c):\n    return 1\n"))
    node.deploy(bundle(tmp_path / "own", "callers-own", "def handler(e, c):\n    return 2\n"))
    caller = node.create_key("shared-svc-caller", "invoker")
    with node.client(caller["key"]) as c:
        for _ in range(120):  # five blocks of 20 learned (monitor/baselines.py), and one more
            assert c.post("/v1/functions/shared-svc/invoke", json={}).status_code == 200
    broken = "def handler(e, c):\n    raise RuntimeError('not for you')\n"
    node.deploy(bundle(tmp_path / "v2", "shared-svc", broken))
    with node.client(caller["key"]) as c:
        for _ in range(10):
            assert c.post("/v1/functions/shared-svc/invoke", json={}).status_code == 500
    alert = _alert(node, "baseline.error_rate", f"principal:key:{caller['id']}")
    assert _responses_to(node, alert) == []
    with node.client(caller["key"]) as c:
        statuses = [
            c.post("/v1/functions/callers-own/invoke", json={}).status_code for _ in range(15)
        ]
    assert set(statuses) == {200}, statuses


#: INFLATE with a way to a process a caller can take (as an exploit of the handler would).
INFLATE_AND_RUN = """\
import base64
import gzip
import subprocess


def handler(event, context):
    if "echo" in event:
        return subprocess.run(["/bin/echo", str(event["echo"])], check=False).returncode
    return len(gzip.decompress(base64.b64decode(event.get("data") or "")))
"""


def test_a_memory_bomb_first_does_not_hide_the_exploit_that_follows(
    node: LiveNode, tmp_path: Path
) -> None:
    """A call killed for its memory (alerted, answered by nothing) does not stand for the
    runtime policy block that follows on the same function within the alerts' window: the
    exploit is alerted and the function quarantined (an attacker's memory bomb must not buy
    five minutes of exploiting with no response)."""
    node.deploy(bundle(tmp_path, "inflate-run", INFLATE_AND_RUN, "memory_mb: 64\ntimeout_s: 10\n"))
    bomb = base64.b64encode(gzip.compress(b"\0" * 200_000_000)).decode()
    caller = node.create_key("inflate-run-caller", "invoker")["key"]
    with node.client(caller) as c:
        killed = c.post("/v1/functions/inflate-run/invoke", json={"data": bomb})
        assert killed.status_code == 507, killed.text
        _alert(node, "sandbox.violation", "function:inflate-run")
        c.post("/v1/functions/inflate-run/invoke", json={"echo": "pwned"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not [
        r for r in _records(node, "response.quarantine") if r["target"] == "function:inflate-run"
    ]:
        time.sleep(0.2)
    with node.client(caller) as c:
        refused = c.post("/v1/functions/inflate-run/invoke", json={"data": ""})
    assert refused.status_code == 503, refused.text
    assert refused.json()["errorType"] == "Function.Quarantined"


def test_a_suspect_key_cannot_shorten_its_throttle_by_hand_with_a_finding(
    tmp_path: Path,
) -> None:
    """An admin throttles a suspect key by hand for 30 days; the key then calls a function
    it never called (first_seen.function, in block mode a throttle of an hour). The hour
    does not replace the 30 days: the throttle in force ends later and stays (before, the
    key's holder set off a finding on purpose and was free an hour later)."""
    node = start_node(
        tmp_path / "node",
        {
            "DONJON_MONITOR_MODES": "first_seen=block",
            "DONJON_MONITOR_LEARNING_S": "3",
            "DONJON_MONITOR_THROTTLE": "100/minute",
            "DONJON_MONITOR_TICK_S": "0.2",
        },
    )
    try:
        node.deploy(bundle(tmp_path / "a", "known-fn", "def handler(e, c):\n    return 1\n"))
        node.deploy(bundle(tmp_path / "b", "other-fn", "def handler(e, c):\n    return 2\n"))
        suspect = node.create_key("suspect", "invoker")
        subject = f"principal:key:{suspect['id']}"
        with node.client(suspect["key"]) as c:
            assert c.post("/v1/functions/known-fn/invoke", json={}).status_code == 200
        month = 30 * 86400
        with node.client() as c:
            held = c.put(
                f"/v1/throttles/{subject}", json={"reason": "a stolen key?", "duration_s": month}
            )
        assert held.status_code == 201, held.text
        until = held.json()["until"]
        time.sleep(4)  # past its learning window
        with node.client(suspect["key"]) as c:
            assert c.post("/v1/functions/other-fn/invoke", json={}).status_code == 200
        alert = _alert(node, "first_seen.function", subject)
        [response] = _responses_to(node, alert)
        assert response["outcome"] == "unchanged", response
        with node.client() as c:
            throttles = c.get("/v1/responses").json()["throttles"]
        [kept] = [t for t in throttles if t["subject"] == subject]
        assert kept["until"] == until and kept["alert_seq"] is None, kept
    finally:
        node.stop()


def test_webhook_deliveries_are_no_principal_to_the_first_seen_detector(tmp_path: Path) -> None:
    """Calls made by webhook deliveries are recorded under the trigger kind (`webhook`), as
    public ones are under `public`: not a principal. A tenant's webhook function first
    delivered after the detector's learning window raises no first_seen.function alert on
    a `principal:webhook` (before, it was a high alert, and in block mode a throttle of a
    `key:webhook` that exists nowhere)."""
    node = start_node(
        tmp_path / "node",
        {
            "DONJON_MONITOR_MODES": "first_seen=block",
            "DONJON_MONITOR_LEARNING_S": "3",
            "DONJON_MONITOR_TICK_S": "0.2",
        },
    )
    try:
        secret = new_whsec()
        for name in ("hook-first", "hook-later"):
            with node.client() as c:  # a hook secret authenticates one path
                r = c.post(f"/v1/secrets/{name}-key", json={"value": secret})
                assert r.status_code == 201, r.text
            node.deploy(
                bundle(
                    tmp_path / name,
                    name,
                    "def handler(e, c):\n    return 1\n",
                    "limits: {rate: 600/minute}\ntriggers:\n"
                    f"  - webhook: {{path: /{name}, scheme: standard, secret: {name}-key}}\n",
                )
            )
        body = b'{"n": 1}'
        assert (
            post_hook(node, "/hook-first", body, standard_headers(secret, body)).status_code == 202
        )
        time.sleep(4)  # past the learning window
        assert (
            post_hook(node, "/hook-later", body, standard_headers(secret, body)).status_code == 202
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not [
            r for r in _records(node, "function.invoke") if r["target"] == "hook-later@1"
        ]:
            time.sleep(0.2)
        time.sleep(2)  # the monitor examines the call's record at once, if at all
        kinds = {(a["detail"]["kind"], a["target"]) for a in _records(node, "alert.raised")}
        assert ("first_seen.function", "principal:webhook") not in kinds, kinds
        assert _records(node, "response.throttle") == []
    finally:
        node.stop()
