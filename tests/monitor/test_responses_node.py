"""Quarantine, release and the timeline on a real node (`donjon serve`), through the CLI."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from async_support import bundle, invoke_async, wait_for
from harness import FUNCTIONS, LiveNode, fresh_source, run_cli, start_node

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node of this module's own (it is restarted), serving `web`."""
    live = start_node(tmp_path_factory.mktemp("responses-node"))
    try:
        live.deploy(FUNCTIONS / "web")
        yield live
    finally:
        live.stop()


def _cli(node: LiveNode, *args: str, key: str | None = None, check: bool = True) -> Any:
    done = run_cli(node.env(key), *args, check=check)
    if not check:
        return done
    return json.loads(done.stdout) if "--json" in args else done.stdout


def _public(node: LiveNode) -> int:
    """The status of a call to web's public http trigger."""
    with node.client("") as c:
        return c.get("/fn/web/public").status_code


def _audit(node: LiveNode, action: str) -> list[dict[str, Any]]:
    with node.client() as c:
        records: list[dict[str, Any]] = c.get("/v1/audit", params={"n": 1000}).json()
    return [r for r in records if r["action"] == action]


def test_quarantined_function_answers_503_until_released_even_after_restart(
    own: LiveNode,
) -> None:
    """A quarantine stops every way in with 503 and its reason, outlives a restart, and
    ends only with `donjon function release`; both are audited."""
    assert _public(own) == 200
    _cli(own, "function", "quarantine", "web", "--reason", "calls home to evil.test", "--json")
    refused = own.invoke("web", {})
    assert refused.status_code == 503
    problem = refused.json()
    assert problem["errorType"] == "Function.Quarantined"
    assert problem["reason"] == "calls home to evil.test"
    assert "donjon function release" in problem["detail"]
    with own.client("") as c:  # the public http trigger too: no function code runs,
        public = c.get("/fn/web/public")  # and anyone at all is not told why
    assert public.status_code == 503
    assert public.json()["errorType"] == "Function.Quarantined"
    assert "evil.test" not in public.text and "reason" not in public.json()
    with own.client() as c:  # a caller with a key is told
        private = c.get("/fn/web/private")
    assert private.status_code == 503 and private.json()["reason"] == "calls home to evil.test"
    listed = _cli(own, "function", "quarantined", "--json")
    assert [q["function"] for q in listed] == ["web"]

    own.stop()
    own.serve_again()
    assert own.invoke("web", {}).status_code == 503  # stored: a restart does not release it

    _cli(own, "function", "release", "web")
    assert _public(own) == 200
    [quarantine] = _audit(own, "response.quarantine")
    assert quarantine["target"] == "function:web"
    assert quarantine["detail"]["reason"] == "calls home to evil.test"
    [release] = _audit(own, "function.release")
    assert release["target"] == "function:web"
    assert release["actor"].startswith("key:")
    assert release["detail"]["reason"] == "calls home to evil.test"


def test_only_an_admin_releases_and_a_bad_release_changes_nothing(own: LiveNode) -> None:
    """A developer cannot release (403, audited); releasing what is not quarantined is 404."""
    developer = own.create_key("dev", "developer")["key"]
    _cli(own, "function", "quarantine", "web", "--reason", "under review")
    try:
        done = _cli(own, "function", "release", "web", key=developer, check=False)
        assert done.returncode == 1
        assert "does not allow" in done.stderr
        assert own.invoke("web", {}).status_code == 503
    finally:
        _cli(own, "function", "release", "web")
    done = _cli(own, "function", "release", "web", check=False)
    assert done.returncode == 1 and "not quarantined" in done.stderr
    with own.client() as c:
        bad = c.post("/v1/functions/web/quarantine", json={"reason": ""})
        assert bad.status_code == 400
        assert c.post("/v1/functions/nope/quarantine", json={"reason": "x"}).status_code == 404
        assert c.delete("/v1/throttles/principal:key:0123456789abcdef").status_code == 404
        assert c.delete("/v1/throttles/nonsense").status_code == 404
        for subject in ("source:203.0.113.9", "principal:nobody", "function:Bad"):
            put = c.put(f"/v1/throttles/{subject}", json={"reason": "x"})
            assert put.status_code == 400, subject
        assert c.put("/v1/throttles/function:web", json={"reason": " "}).status_code == 400
        # A name nothing serves, as for a quarantine: before, a 201 held back whoever
        # deployed it next.
        put = c.put("/v1/throttles/function:never-deployed", json={"reason": "x"})
        assert put.status_code == 404, put.text
        assert c.get("/v1/responses").json()["throttles"] == []
        # Not printable text (a lone surrogate made GET /v1/responses a 500): kept escaped.
        kept = {b'"\\ud800"': "\\ud800", b'"a\\u0000b"': "a\\x00b", b'"a\\u001bb"': "a\\x1bb"}
        for reason, shown in kept.items():
            body = b'{"reason": ' + reason + b"}"
            put = c.put("/v1/throttles/function:web", content=body)
            assert put.status_code == 201, (body, put.text)
            quarantine = c.post("/v1/functions/web/quarantine", content=body)
            assert quarantine.status_code == 201, (body, quarantine.text)
            listed = c.get("/v1/responses")
            assert listed.status_code == 200, listed.text
            (throttle,), (held,) = listed.json()["throttles"], listed.json()["quarantined"]
            assert (throttle["reason"], held["reason"]) == (shown, shown)
            assert c.delete("/v1/throttles/function:web").status_code == 204
            assert c.post("/v1/functions/web/release").status_code in (200, 204)
        assert c.get("/v1/responses").json() == {"throttles": [], "quarantined": []}
    assert _cli(own, "throttle", "ls", "--json") == []
    assert _public(own) == 200


def test_a_principal_throttled_by_hand_gets_429_until_lifted(own: LiveNode) -> None:
    """`donjon throttle add` slows one key (10/minute here: a 429 once 10 are spent), no
    other; `donjon throttle rm` lifts it; both are audited with the admin as actor."""
    invoker = own.create_key("suspect", "invoker")
    other = own.create_key("bystander", "invoker")["key"]
    _cli(own, "throttle", "add", invoker["id"], "--reason", "looking into it", "--for", "1h")
    [listed] = _cli(own, "throttle", "ls", "--json")
    assert listed["subject"] == f"principal:key:{invoker['id']}"
    assert listed["alert_seq"] is None and listed["rate"] == "10/minute"
    statuses: list[int] = []
    with own.client(invoker["key"]) as c:  # the bucket refills a token per 6 s: bounded
        while len(statuses) < 40 and 429 not in statuses:
            statuses.append(c.get("/fn/web/private").status_code)
    assert statuses[:10] == [200] * 10 and statuses[-1] == 429
    with own.client(other) as c:
        assert c.get("/fn/web/private").status_code == 200
    _cli(own, "throttle", "rm", invoker["id"])
    with own.client(invoker["key"]) as c:
        assert c.get("/fn/web/private").status_code == 200
    [added] = [r for r in _audit(own, "response.throttle") if r["target"].endswith(invoker["id"])]
    assert added["actor"].startswith("key:") and added["detail"]["reason"] == "looking into it"
    [lifted] = [
        r for r in _audit(own, "response.unthrottle") if r["target"].endswith(invoker["id"])
    ]
    assert lifted["actor"] == added["actor"]


def test_a_throttle_outlives_a_restart_until_it_is_lifted(own: LiveNode) -> None:
    """A throttle is kept: a restart (an upgrade, a crash) does not lift it, an admin's
    nor one on a function; lifted, it stays lifted after the next restart. Before, the
    node kept them in memory only, and every restart lifted them all."""
    suspect = own.create_key("suspect-restart", "invoker")
    _cli(own, "throttle", "add", suspect["id"], "--reason", "kept", "--for", "1h")
    _cli(own, "throttle", "add", "function:web", "--reason", "kept too", "--for", "1h")
    before = _cli(own, "throttle", "ls", "--json")
    own.stop()
    own.serve_again()
    after = _cli(own, "throttle", "ls", "--json")
    assert after == before, after
    statuses: list[int] = []
    with own.client(suspect["key"]) as c:  # in force: a 429 once its 10 are spent
        while len(statuses) < 40 and 429 not in statuses:
            statuses.append(c.get("/fn/web/private").status_code)
    assert statuses[-1] == 429, statuses
    _cli(own, "throttle", "rm", suspect["id"])
    _cli(own, "throttle", "rm", "function:web")
    own.stop()
    own.serve_again()
    assert _cli(own, "throttle", "ls", "--json") == []
    with own.client(suspect["key"]) as c:
        assert c.get("/fn/web/private").status_code == 200


def test_timeline_tells_a_functions_story_with_seqs(own: LiveNode) -> None:
    """`donjon audit timeline --function web` lists its deploy, calls, quarantine and
    release in seq order; `--request` narrows to one call; each line starts with its seq."""
    with own.client("") as c:
        call = c.get("/fn/web/public")
    assert call.status_code == 200
    request_id = call.headers["x-request-id"]
    story = _cli(own, "audit", "timeline", "--function", "web", "--json")
    seqs = [r["seq"] for r in story]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    categories = {r["category"] for r in story}
    assert {"deploy", "invoke", "response"} <= categories
    assert all(
        "web" in (r["target"], r["actor"]) or r["target"].startswith(("web@", "function:web"))
        for r in story
    )
    [one] = _cli(own, "audit", "timeline", "--request", request_id, "--json")
    assert one["action"] == "function.invoke" and one["detail"]["request_id"] == request_id
    lines = _cli(own, "audit", "timeline", "--function", "web", "--since", "1h").splitlines()
    assert lines and all(line.split()[0].isdigit() for line in lines)
    assert any("scan:" in line or "scan SKIPPED" in line for line in lines)
    assert str(one["seq"]) in {line.split()[0] for line in lines}


def test_timeline_refuses_bad_filters(own: LiveNode) -> None:
    """A bad filter is a 400 naming it (and the CLI's error), never a partial answer."""
    with own.client() as c:
        for params in (
            {"source": "not-an-address"},
            {"function": "../etc"},
            {"since": "-1"},
            {"n": "0"},
            {"after": "x"},
        ):
            answer = c.get("/v1/audit/timeline", params=params)
            assert answer.status_code == 400, params
    invoker = own.create_key("inv", "invoker")["key"]
    with own.client(invoker) as c:
        assert c.get("/v1/audit/timeline").status_code == 403


# -- automatic responses: detectors in block mode on a node of their own ------------------

BLOCKING = {
    "DONJON_MONITOR_MODES": "auth_failures=block,scan_skipped=block",
    "DONJON_MONITOR_AUTH_FAILURES": "5",
    "DONJON_MONITOR_THROTTLE": "2/hour",
    "DONJON_MONITOR_TICK_S": "0.2",
}


@pytest.fixture(scope="module")
def blocking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node whose credential-stuffing and skipped-scan detectors are in block mode."""
    live = start_node(tmp_path_factory.mktemp("blocking-node"), BLOCKING)
    try:
        yield live
    finally:
        live.stop()


def _wait_for(node: LiveNode, action: str, target: str) -> dict[str, Any]:
    """The first `action` record on `target`, waited for (bounded: 60 s)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = [r for r in _audit(node, action) if r["target"] == target]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no {action} record on {target}")


def test_credential_stuffing_is_throttled_until_lifted(blocking: LiveNode) -> None:
    """Bad keys from one source raise an alert; the source is throttled (429 even with a
    good key), audited with the alert's seq, listed, and lifted by hand."""
    source = fresh_source()
    with blocking.client("dj_0123456789abcdef_" + "x" * 43, source) as c:
        for _ in range(6):
            assert c.get("/v1/functions").status_code == 401
    alert = _wait_for(blocking, "alert.raised", f"source:{source}")
    response = _wait_for(blocking, "response.throttle", f"source:{source}")
    assert alert["detail"]["kind"] == "auth.credential_stuffing"
    assert response["detail"]["alert_seq"] == alert["seq"]
    assert response["actor"] == "system:monitor"

    with blocking.client(None, source) as c:  # the admin's own key, from that source
        statuses = [c.get("/v1/functions").status_code for _ in range(3)]
        refused = c.get("/v1/functions")
    assert statuses[-1] == 429 and refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    with blocking.client(None, fresh_source()) as c:  # any other source: served
        assert c.get("/v1/functions").status_code == 200
    [listed] = [
        t for t in _cli(blocking, "throttle", "ls", "--json") if t["subject"] == f"source:{source}"
    ]
    assert listed["alert_seq"] == alert["seq"] and listed["rate"] == "2/hour"

    _cli(blocking, "throttle", "rm", f"source:{source}")
    with blocking.client(None, source) as c:
        assert c.get("/v1/functions").status_code == 200
    lifted = _wait_for(blocking, "response.unthrottle", f"source:{source}")
    assert lifted["detail"]["alert_seq"] == alert["seq"]
    assert _audit(blocking, "throttle.denied")  # the refusals are on record too
    story = _cli(blocking, "audit", "timeline", "--source", source, "--json")
    assert {"denial", "alert", "response"} <= {r["category"] for r in story}


def test_deploy_without_the_scan_is_quarantined_automatically(blocking: LiveNode) -> None:
    """A deploy that skipped the scan raises deploy.scan_skipped; in block mode the
    function is quarantined (503 naming the alert) until released."""
    blocking.deploy(FUNCTIONS / "probe")  # a gate-refused probe: deployed with unsafe_skip_scan
    alert = _wait_for(blocking, "alert.raised", "function:probe")
    quarantine = _wait_for(blocking, "response.quarantine", "function:probe")
    assert quarantine["detail"]["alert_seq"] == alert["seq"]
    refused = blocking.invoke("probe", {})
    assert refused.status_code == 503
    assert refused.json()["alert_seq"] == alert["seq"]
    assert refused.json()["reason"].startswith("deploy.scan_skipped")
    _cli(blocking, "function", "release", "probe")
    assert blocking.invoke("probe", {}).status_code != 503


def test_a_throttled_keys_queued_events_are_throttled_too(
    blocking: LiveNode, tmp_path: Path
) -> None:
    """A principal throttled (here by hand, as the monitor does on a first_seen or call rate
    finding) has its queued async events held to the throttle at their delivery, as its
    requests are: a call and an enqueue spent the bucket (2/hour), so the queued event
    waits, refused `Throttled` with its attempt given back (before, every queued event ran
    at once). (One event: a second enqueue could come after the first one's delivery had
    spent the last token.)"""
    blocking.deploy(bundle(tmp_path, "queued-echo", "def handler(event, context):\n    return 1\n"))
    suspect = blocking.create_key("queued-suspect", "invoker")
    _cli(blocking, "throttle", "add", suspect["id"], "--reason", "a stolen key?", "--for", "1h")
    try:
        called = blocking.invoke("queued-echo", {"n": 0}, key=suspect["key"])
        assert called.status_code == 200, called.text
        r = invoke_async(blocking, "queued-echo", {"n": 1}, key=suspect["key"])
        assert r.status_code == 202, r.text
        held = wait_for(blocking, r.json()["invocation_id"], ("failed", "succeeded"))
        assert held["status"] == "failed", held
        assert held["error"]["type"] == "Throttled" and held["attempts"] == 0, held
    finally:
        _cli(blocking, "throttle", "rm", suspect["id"])


LEAKY = """\
import os


def handler(event, context):
    with open("/tmp/" + os.path.basename(event["name"]), "w") as f:
        f.write("x")
    return {"ok": True}
"""


def test_an_automatic_quarantine_shows_other_callers_the_findings_kind_only(
    tmp_path: Path,
) -> None:
    """A quarantine the monitor made from one caller's call (a runtime policy that saw a
    /tmp path built from that caller's event) tells the next callers its finding's kind
    and alert, not the summary holding that path; admins still read the whole reason."""
    node = start_node(
        tmp_path / "node",
        {"DONJON_MONITOR_MODES": "sandbox_violation=block", "DONJON_MONITOR_TICK_S": "0.2"},
    )
    try:
        fn = tmp_path / "leaky"
        fn.mkdir()
        (fn / "main.py").write_text(LEAKY)
        (fn / "donjon.yaml").write_text(
            "name: leaky\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
            "policies: {tmp_write: alert}\n"
        )
        node.deploy(fn)
        marker = "LEAKMARK-" + secrets.token_hex(6)
        first = node.create_key("leaky-first", "invoker")["key"]
        other = node.create_key("leaky-other", "invoker")["key"]
        with node.client(first) as c:
            c.post("/v1/functions/leaky/invoke", json={"name": marker})
        alert = _wait_for(node, "alert.raised", "function:leaky")
        _wait_for(node, "response.quarantine", "function:leaky")
        with node.client(other) as c:
            refused = c.post("/v1/functions/leaky/invoke", json={"name": "mine"})
        assert refused.status_code == 503, refused.text
        assert marker not in refused.text
        assert refused.json()["reason"] == "sandbox.violation"
        assert refused.json()["alert_seq"] == alert["seq"]
        [listed] = _cli(node, "function", "quarantined", "--json")
        assert marker in listed["reason"]  # for the admin who investigates
    finally:
        node.stop()


def test_a_caller_cannot_blind_the_alerts_or_dodge_the_quarantine_with_a_lone_surrogate(
    tmp_path: Path,
) -> None:
    """A caller whose event names a /tmp file `x\\udcff` (a lone surrogate: the file name's
    undecodable byte) gets the same alert and quarantine as any other: the quarantine is
    made, and the alerts and the audit log still list (before, both answered 500 for
    everyone and the quarantine failed, so the function kept serving)."""
    node = start_node(
        tmp_path / "node",
        {"DONJON_MONITOR_MODES": "sandbox_violation=block", "DONJON_MONITOR_TICK_S": "0.2"},
    )
    try:
        fn = tmp_path / "leaky"
        fn.mkdir()
        (fn / "main.py").write_text(LEAKY)
        (fn / "donjon.yaml").write_text(
            "name: leaky\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
            "policies: {tmp_write: alert}\n"
        )
        node.deploy(fn)
        with node.client() as c:
            r = c.post("/v1/functions/leaky/invoke", content=b'{"name": "x\\udcff"}')
        assert r.status_code == 200, r.text
        quarantine = _wait_for(node, "response.quarantine", "function:leaky")
        assert quarantine["outcome"] == "ok", quarantine
        assert node.invoke("leaky", {"name": "y"}).status_code == 503
        with node.client() as c:
            alerts = c.get("/v1/alerts", params={"kind": "sandbox.violation"})
            responses = c.get("/v1/responses")
        assert alerts.status_code == 200, alerts.text
        assert [a["subject"] for a in alerts.json()] == ["function:leaky"]
        assert responses.status_code == 200, responses.text
        assert "\\udcff" in responses.json()["quarantined"][0]["reason"]
    finally:
        node.stop()


PICKY = """\
def handler(event, context):
    if event.get("bad"):
        raise ValueError("not a thing I take")
    return {"ok": True}
"""


def test_one_callers_bad_events_do_not_throttle_the_function_for_everyone(
    tmp_path: Path,
) -> None:
    """An invoker sending events the handler refuses moves the function's error share:
    with error_rate in block mode that is an alert, and no throttle of the function,
    which would hold every other caller to 10 a minute for an hour (before, a handful of
    bad events did that)."""
    node = start_node(
        tmp_path / "node",
        {"DONJON_MONITOR_MODES": "error_rate=block", "DONJON_MONITOR_TICK_S": "0.2"},
    )
    try:
        node.deploy(bundle(tmp_path, "picky", PICKY, "memory_mb: 64\n"))
        owner = node.create_key("picky-owner", "invoker")["key"]
        rival = node.create_key("picky-rival", "invoker")["key"]
        with node.client(owner) as c:
            for i in range(120):  # five blocks of 20 learned, and one more
                assert c.post("/v1/functions/picky/invoke", json={"i": i}).status_code == 200
        with node.client(rival) as c:
            for _ in range(10):
                assert c.post("/v1/functions/picky/invoke", json={"bad": 1}).status_code == 500
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not [
            a
            for a in _audit(node, "alert.raised")
            if a["target"] == "function:picky@1" and a["detail"]["kind"] == "baseline.error_rate"
        ]:
            time.sleep(0.2)
        deadline = time.monotonic() + 5  # the response follows the alert at once, if any
        while time.monotonic() < deadline and not _audit(node, "response.throttle"):
            time.sleep(0.2)
        kinds = {a["detail"]["kind"] for a in _audit(node, "alert.raised")}
        assert "baseline.error_rate" in kinds, kinds
        assert _audit(node, "response.throttle") == []
        with node.client(owner) as c:
            statuses = {
                c.post("/v1/functions/picky/invoke", json={}).status_code for _ in range(15)
            }
        assert statuses == {200}
    finally:
        node.stop()
