"""`context.invoke` (issue 10 item 4): a function calls another only as its manifest grants,
through the gateway's checks, within its own deadline and a bounded depth; each attack
against a real node, in both isolation modes where the mode could matter."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from donjon.bundle import build_bundle
from harness import LiveNode
from sec_support import Ready, audit_records, in_both_modes

#: Calls `event["to"]` with `event["event"]`; returns its result, or what refused it.
CALLER = (
    "def handler(event, context):\n"
    "    try:\n"
    "        result = context.invoke(event['to'], event.get('event'))\n"
    "        return {'result': result, 'deadline': context.deadline}\n"
    "    except context.InvokeError as e:\n"
    "        return {'class': type(e).__name__, 'kind': e.kind, 'reason': e.reason}\n"
)
#: What a callee knows of its call.
TARGET = (
    "def handler(event, context):\n"
    "    return {'got': event, 'principal': context.principal,\n"
    "            'request_id': context.request_id, 'deadline': context.deadline}\n"
)
#: Sleeps as long as it is asked.
SLOW = (
    "import time\n"
    "def handler(event, context):\n"
    "    time.sleep(event.get('sleep', 0))\n"
    "    return {'slept': event.get('sleep', 0)}\n"
)
#: A loop: each calls the other (inv-loop-a -> inv-loop-b -> inv-loop-a ...).
LOOP = (
    "def handler(event, context):\n"
    "    nxt = {'inv-loop-a': 'inv-loop-b', 'inv-loop-b': 'inv-loop-a'}[context.function_name]\n"
    "    try:\n"
    "        return {'fn': context.function_name, 'next': context.invoke(nxt, event)}\n"
    "    except context.InvokeError as e:\n"
    "        return {'fn': context.function_name, 'stopped': e.kind, 'reason': e.reason}\n"
)
#: Writes a request of its own on its call socket, past the runtime's checks.
FORGER = (
    "import json, struct\n"
    "def frame(b):\n"
    "    return struct.pack('>I', len(b)) + b\n"
    "def recv(s, n):\n"
    "    out = b''\n"
    "    while len(out) < n:\n"
    "        out += s.recv(n - len(out))\n"
    "    return out\n"
    "def handler(event, context):\n"
    "    s = context._sock\n"
    "    s.sendall(frame(event['head'].encode()) + frame(b'{}'))\n"
    "    head = json.loads(recv(s, struct.unpack('>I', recv(s, 4))[0]))\n"
    "    recv(s, struct.unpack('>I', recv(s, 4))[0])\n"
    "    return head\n"
)


def _write(root: Path, name: str, code: str, extra: str = "") -> Path:
    d = root / f"{name}-{secrets.token_hex(3)}"
    d.mkdir()
    (d / "donjon.yaml").write_text(f"name: {name}\nhandler: main.handler\nmemory_mb: 64\n{extra}")
    (d / "main.py").write_text(code)
    return d


def _deploy(node: LiveNode, directory: Path) -> Any:
    _, archive = build_bundle(directory)
    with node.client() as c:
        return c.post(
            "/v1/functions", content=archive, headers={"content-type": "application/gzip"}
        )


@pytest.fixture(scope="module")
def functions(
    node: LiveNode, tmp_path_factory: pytest.TempPathFactory, sources: dict[str, Path]
) -> None:
    """Callees first (a grant must name a deployed function), then their callers."""
    root = tmp_path_factory.mktemp("function-calls")
    grants = "permissions: {invoke: [inv-target, inv-limited, inv-typed, inv-doomed]}\n"
    plan = [
        ("inv-target", TARGET, ""),
        ("inv-typed", TARGET, "input_schema: {type: object, required: [url]}\n"),
        ("inv-doomed", TARGET, ""),
        ("inv-limited", TARGET, 'limits: {rate: "1/hour"}\n'),
        ("inv-slow", SLOW, "timeout_s: 60\n"),
        ("inv-slow-warm", SLOW, "timeout_s: 60\nisolation: warm\n"),
        ("inv-granted", CALLER, grants),
        ("inv-granted-warm", CALLER, grants + "isolation: warm\n"),
        ("inv-ungranted", CALLER, ""),
        ("inv-ungranted-warm", CALLER, "isolation: warm\n"),
        # The same for the warm start: a caller's denial is written at once only once a window.
        ("inv-ungranted2", CALLER, ""),
        ("inv-ungranted2-warm", CALLER, "isolation: warm\n"),
        (
            "inv-short",
            CALLER,
            "timeout_s: 3\npermissions: {invoke: [inv-target, inv-slow, inv-slow-warm]}\n",
        ),
        # The loop: a first without the grant (b does not exist yet), then b, then a again.
        ("inv-loop-a", LOOP, ""),
        ("inv-loop-b", LOOP, "permissions: {invoke: [inv-loop-a]}\n"),
        ("inv-loop-a", LOOP, "permissions: {invoke: [inv-loop-b]}\n"),
        ("inv-forger", FORGER, "permissions: {invoke: [inv-target]}\n"),
    ]
    for name, code, extra in plan:
        sources[name] = _write(root, name, code, extra)  # what a cold start deploys again
        r = _deploy(node, sources[name])
        assert r.status_code == 201, r.text


@pytest.mark.usefixtures("functions")
@pytest.mark.parametrize("mode", ["invocation", "warm"])
def test_function_without_the_grant_cannot_invoke(
    node: LiveNode, mode: str, start: str, started: Ready
) -> None:
    """A function whose manifest grants no invoke gets InvokeDenied; the refusal is audited."""
    # Only a caller's first denial in a window is written at once (audit/denials.py): each
    # start has a caller of its own.
    name = "inv-ungranted" if start == "cold" else "inv-ungranted2"
    fn = started(name if mode == "invocation" else f"{name}-warm")
    r = node.invoke(fn, {"to": "inv-target", "event": {"x": 1}})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["class"] == "InvokeDenied" and out["kind"] == "denied"
    assert "permissions.invoke" in out["reason"]
    records = audit_records(node, r.headers["x-request-id"])
    assert not [x for x in records if x["target"].startswith("inv-target@")]
    (denial,) = [x for x in records if x["action"] == "authz.denied"]
    assert denial["actor"] == f"function:{fn}" and denial["target"] == "inv-target"
    assert denial["detail"]["permission"] == "function:invoke"


@pytest.mark.usefixtures("functions")
@in_both_modes("inv-granted")
def test_granted_function_invokes_another(node: LiveNode, fn: str) -> None:
    """A granted call returns the callee's result; the callee sees `function:<caller>`."""
    r = node.invoke(fn, {"to": "inv-target", "event": {"x": [1, 2]}})
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["got"] == {"x": [1, 2]} and result["principal"] == f"function:{fn}"


@pytest.mark.usefixtures("functions")
def test_granted_function_cannot_invoke_what_it_was_not_granted(node: LiveNode) -> None:
    """A grant of some functions is not a grant of others (here the caller itself)."""
    out = node.invoke("inv-granted", {"to": "inv-granted", "event": {}}).json()
    assert out["class"] == "InvokeDenied", out


@pytest.mark.usefixtures("functions")
def test_invoke_is_audited_as_the_calling_function(node: LiveNode) -> None:
    """The callee's record: function.invoke by function:<caller>, the original request id."""
    r = node.invoke("inv-granted", {"to": "inv-target", "event": {}})
    request_id = r.headers["x-request-id"]
    callee_id = r.json()["result"]["request_id"]
    records = audit_records(node, request_id)
    (outer,) = [x for x in records if x["target"].startswith("inv-granted@")]
    (inner,) = [x for x in records if x["target"].startswith("inv-target@")]
    assert outer["actor"].startswith("key:") and outer["detail"]["trigger"] == "invoke"
    assert inner["actor"] == "function:inv-granted"
    assert inner["action"] == "function.invoke" and inner["outcome"] == "ok"
    assert inner["detail"]["trigger"] == "function"
    assert inner["detail"]["call_id"] == callee_id != request_id


@pytest.mark.usefixtures("functions")
def test_callee_over_its_rate_limit_refuses_the_caller(node: LiveNode) -> None:
    """The callee's own rate limit holds for calls from functions (throttle audited)."""
    first = node.invoke("inv-granted", {"to": "inv-limited"}).json()
    assert "result" in first, first
    r = node.invoke("inv-granted", {"to": "inv-limited"})
    out = r.json()
    assert out["class"] == "InvokeError" and out["kind"] == "throttled", out
    assert "rate limit" in out["reason"]
    (throttle,) = [
        x
        for x in audit_records(node, r.headers["x-request-id"])
        if x["action"] == "function.throttle"
    ]
    assert throttle["actor"] == "function:inv-granted"


@pytest.mark.usefixtures("functions")
def test_call_loop_stops_at_the_depth_limit(node: LiveNode) -> None:
    """A -> B -> A -> ... stops with InvokeDenied at depth 4, each call audited."""
    r = node.invoke("inv-loop-a", {})
    assert r.status_code == 200, r.text
    chain, hops = r.json(), 0
    while "next" in chain:
        chain, hops = chain["next"], hops + 1
    assert hops == 4 and chain["stopped"] == "denied", r.json()
    assert "over the limit of 4" in chain["reason"]
    records = audit_records(node, r.headers["x-request-id"])
    calls = [x for x in records if x["action"] == "function.invoke"]
    assert len(calls) == 5 and all(x["outcome"] == "ok" for x in calls)


@pytest.mark.usefixtures("functions")
def test_callee_gets_no_more_time_than_its_caller(node: LiveNode) -> None:
    """A callee allowed 10 s, called by a function allowed 3 s, gets the caller's deadline."""
    r = node.invoke("inv-short", {"to": "inv-target"})
    assert r.status_code == 200, r.text
    out = r.json()
    # Both are wall-clock times taken by the node; without the limit the callee's is 7 s later.
    assert out["result"]["deadline"] <= out["deadline"] + 0.05, out


@pytest.mark.usefixtures("functions")
@in_both_modes("inv-slow")
def test_callee_that_runs_long_ends_with_its_caller(node: LiveNode, fn: str) -> None:
    """A callee that would run 60 s ends before its caller's 3 s deadline: the caller gets
    InvokeError (timeout), the callee's record is written (not ok), and it serves on."""
    callee = fn
    r = node.invoke("inv-short", {"to": callee, "event": {"sleep": 60}})
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "timeout", r.json()
    (inner,) = [
        x
        for x in audit_records(node, r.headers["x-request-id"])
        if x["target"].startswith(f"{callee}@")
    ]
    assert inner["outcome"] != "ok", inner
    assert node.invoke(callee, {"sleep": 0}).json() == {"slept": 0}


@pytest.mark.usefixtures("functions")
@pytest.mark.parametrize(
    "head",
    [
        '{"op":"invoke","function":"inv-target","extra":1}',
        '{"op":"invoke","function":"../inv-target"}',
        '{"op":"invoke","function":["inv-target"]}',
        '{"op":"invoke",' + '"function":"' + "a" * 300 + '"}',
        '{"op":"invoke",not json',
    ],
)
def test_forged_invoke_request_is_refused(node: LiveNode, head: str) -> None:
    """A request the runtime would not write is refused as invalid; the node serves on."""
    r = node.invoke("inv-forger", {"head": head})
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": False, "kind": "invalid", "error": "the invoke request was malformed"}
    assert "result" in node.invoke("inv-granted", {"to": "inv-target"}).json()


@pytest.mark.usefixtures("functions")
def test_deploy_granting_a_missing_function_is_refused(node: LiveNode, tmp_path: Path) -> None:
    """permissions.invoke naming no deployed function fails the deploy with 422, nothing stored."""
    name = f"inv-orphan-{secrets.token_hex(3)}"
    extra = "permissions: {invoke: [inv-target, inv-nowhere]}\n"
    r = _deploy(node, _write(tmp_path, name, CALLER, extra))
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["problems"] == ["permissions.invoke: no function named inv-nowhere"]
    with node.client() as c:
        assert c.get(f"/v1/functions/{name}").status_code == 404


@pytest.mark.usefixtures("functions")
def test_deployer_cannot_grant_invoke_it_does_not_hold(node: LiveNode, tmp_path: Path) -> None:
    """A role that may deploy and invoke team-* cannot deploy a team function granted another
    function (403, audited with the deciding statement); the same grant inside team-* deploys."""
    tag = secrets.token_hex(3)
    role, team = f"sec-team-{tag}", f"team{tag}"
    doc = {
        "name": role,
        "statements": [
            {
                "effect": "allow",
                "actions": ["function:deploy", "function:invoke"],
                "resources": [f"{team}-*"],
            }
        ],
    }
    with node.client() as c:
        assert c.post("/v1/roles", json=doc).status_code == 201
        r = c.post("/v1/keys", json={"name": role, "role": role})
    assert r.status_code == 201, r.text
    key = r.json()["key"]

    def deploy(name: str, grant: str) -> Any:
        d = _write(tmp_path, name, CALLER, f"permissions: {{invoke: [{grant}]}}\n")
        _, archive = build_bundle(d)
        with node.client(key) as c:
            return c.post(
                "/v1/functions", content=archive, headers={"content-type": "application/gzip"}
            )

    assert deploy(f"{team}-callee", f"{team}-callee").status_code == 201  # itself: allowed
    r = deploy(f"{team}-caller", "inv-target")
    assert r.status_code == 403 and "inv-target" in r.json()["detail"], r.text
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert (
        record["outcome"] == "rejected" and record["detail"]["statement"] == "no statement allows"
    )
    with node.client() as c:
        assert c.get(f"/v1/functions/{team}-caller").status_code == 404
    assert deploy(f"{team}-caller", f"{team}-callee").status_code == 201


@pytest.mark.usefixtures("functions")
def test_event_the_callee_schema_refuses_is_invalid(node: LiveNode) -> None:
    """The callee's input_schema holds for calls from functions: InvokeError kind invalid."""
    out = node.invoke("inv-granted", {"to": "inv-typed", "event": {"nourl": 1}}).json()
    assert out["class"] == "InvokeError" and out["kind"] == "invalid", out
    assert "schema" in out["reason"]
    ok = node.invoke("inv-granted", {"to": "inv-typed", "event": {"url": "u"}}).json()
    assert ok["result"]["got"] == {"url": "u"}


@pytest.mark.usefixtures("functions")
def test_granted_callee_removed_later_is_not_found(node: LiveNode) -> None:
    """A grant of a function since removed gives InvokeError kind not-found, nothing runs."""
    with node.client() as c:
        assert c.delete("/v1/functions/inv-doomed").status_code in (200, 204)
    out = node.invoke("inv-granted-warm", {"to": "inv-doomed"}).json()
    assert out["class"] == "InvokeError" and out["kind"] == "not-found", out
