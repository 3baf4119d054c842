"""context.invoke, second round: a hostile caller inside a deployed function's sandbox.

A call that keeps calling after it was quarantined or its grant was taken away, a forged
event frame, what a chain of calls leaves in the audit log, and callees that answer early
and run on (slots and compute held by the caller's principal). Round one is
test_attack_function_calls.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from async_support import bundle
from harness import LiveNode
from sec_support import audit_records

#: What a callee knows of its call.
TARGET = (
    "def handler(event, context):\n"
    "    return {'principal': context.principal, 'request_id': context.request_id}\n"
)
#: Writes its own /tmp (what the tmp_write policy watches), then answers its call's id.
TMP_WRITER = (
    "def handler(event, context):\n"
    "    with open('/tmp/note', 'w') as f:\n"
    "        f.write('x')\n"
    "    return {'request_id': context.request_id}\n"
)
#: Writes a request of its own (event frame: `event["body"]`) with the runtime's frames.
FORGER = (
    "import json, sys\n"
    "def handler(event, context):\n"
    "    frames = sys.modules[type(context).__module__.rpartition('.')[0] + '.frames']\n"
    '    head = b\'{"op":"invoke","function":"sc2-target"}\'\n'
    "    frames.send_frames(context._sock, head, event['body'].encode())\n"
    "    answer = frames.recv_frame(context._sock)\n"
    "    frames.recv_frame(context._sock)\n"
    "    return json.loads(answer)\n"
)
#: Writes its reply on its call socket at once, then runs on until its deadline kills it.
LINGER = (
    "import json, time\n"
    "def handler(event, context):\n"
    "    frames = (json.dumps({'ok': True, 'out': ''}).encode(), b'{\"early\": true}')\n"
    "    context._sock.sendall(b''.join(len(p).to_bytes(4, 'big') + p for p in frames))\n"
    "    time.sleep(60)\n"
    "    return {'late': True}\n"
)
#: Calls `event["to"]` again and again (up to `event["n"]` times, `event["pause"]` apart)
#: until a call is refused; returns every outcome.
PERSIST = (
    "import time\n"
    "def handler(event, context):\n"
    "    out = []\n"
    "    for _ in range(event.get('n', 40)):\n"
    "        try:\n"
    "            context.invoke(event['to'], event.get('event', {}))\n"
    "            out.append('ok')\n"
    "        except context.InvokeError as e:\n"
    "            out.append(e.kind + ': ' + e.reason)\n"
    "            break\n"
    "        time.sleep(event.get('pause', 0.2))\n"
    "    return out\n"
)


@pytest.fixture(scope="module")
def functions(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("subcalls-r2")
    plan = [
        ("sc2-target", TARGET, ""),
        ("sc2-linger", LINGER, "timeout_s: 20\n"),
        ("sc2-linger-short", LINGER, "timeout_s: 1\n"),
        ("sc2-relay", PERSIST, "permissions: {invoke: [sc2-target]}\n"),
        ("sc2-forger", FORGER, "permissions: {invoke: [sc2-target]}\n"),
        ("sc2-tmp", TMP_WRITER, "policies: {tmp_write: alert}\n"),
        ("sc2-tmp-warm", TMP_WRITER, "isolation: warm\npolicies: {tmp_write: alert}\n"),
        (
            "sc2-persist",
            PERSIST,
            "timeout_s: 30\n"
            "permissions: {invoke: [sc2-target, sc2-tmp, sc2-tmp-warm, sc2-relay]}\n",
        ),
        (
            "sc2-persist-warm",
            PERSIST,
            "timeout_s: 30\nisolation: warm\npermissions: {invoke: [sc2-target]}\n",
        ),
    ]
    for name, code, extra in plan:
        node.deploy(bundle(root, name, code, "memory_mb: 64\n" + extra))


def _in_background(node: LiveNode, name: str, event: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        out.append(node.invoke(name, event))

    t = threading.Thread(target=run)
    t.start()
    return t, out


def _wait_for_a_call_by(node: LiveNode, caller: str) -> None:
    for _ in range(200):
        with node.client() as c:
            recs = c.get("/v1/audit", params={"n": 200}).json()
        if any(r["actor"] == f"function:{caller}" for r in recs):
            return
        time.sleep(0.1)
    raise AssertionError(f"{caller} made no call")


def _outcomes(
    node: LiveNode, t: threading.Thread, out: list[Any]
) -> tuple[list[str], dict[str, Any]]:
    """What a caller started by `_in_background` saw (its first call served), and the
    audit record of its one refusal."""
    t.join(60)
    r = out[0]
    assert r.status_code == 200, r.text
    outcomes: list[str] = r.json()
    assert outcomes[0] == "ok", outcomes
    records = audit_records(node, r.headers["x-request-id"])
    (denial,) = [x for x in records if x["action"] == "authz.denied"]
    return outcomes, denial


@pytest.mark.usefixtures("functions")
@pytest.mark.parametrize("caller", ["sc2-persist", "sc2-persist-warm"])
def test_quarantined_caller_cannot_invoke_while_it_runs(node: LiveNode, caller: str) -> None:
    """A function quarantined while it runs gets InvokeDenied (audited) on its next
    context.invoke: the quarantine stops what a compromised call goes on to start."""
    t, out = _in_background(node, caller, {"to": "sc2-target"})
    _wait_for_a_call_by(node, caller)
    with node.client() as c:
        r = c.post(f"/v1/functions/{caller}/quarantine", json={"reason": "review"})
        assert r.status_code == 201, r.text
    try:
        outcomes, denial = _outcomes(node, t, out)
        refused = f"denied: {caller} may not invoke sc2-target: {caller} is quarantined"
        assert outcomes[-1] == refused, outcomes
        assert denial["actor"] == f"function:{caller}" and denial["target"] == "sc2-target"
        assert denial["detail"]["statement"] == "quarantine"
    finally:
        with node.client() as c:
            c.post(f"/v1/functions/{caller}/release")


@pytest.mark.parametrize("mode", ["invocation", "warm"])
def test_grant_taken_away_by_a_redeploy_stops_the_running_call(
    node: LiveNode, mode: str, tmp_path: Path, functions: None
) -> None:
    """A redeploy that takes the invoke grant away holds for the call already running:
    its next context.invoke is InvokeDenied (audited), not served until its deadline."""
    name = f"sc2-revoked-{mode}"
    extra = "timeout_s: 30\n" + ("isolation: warm\n" if mode == "warm" else "")
    granted = extra + "permissions: {invoke: [sc2-target]}\n"
    node.deploy(bundle(tmp_path, name, PERSIST, granted))
    t, out = _in_background(node, name, {"to": "sc2-target"})
    _wait_for_a_call_by(node, name)
    node.deploy(bundle(tmp_path, name, PERSIST, extra))
    outcomes, denial = _outcomes(node, t, out)
    refused = f"the version of {name} deployed now does not grant sc2-target"
    assert outcomes[-1] == f"denied: {name} may not invoke sc2-target: {refused}", outcomes
    assert denial["actor"] == f"function:{name}" and denial["detail"]["reason"] == refused


@pytest.mark.usefixtures("functions")
@pytest.mark.parametrize("callee", ["sc2-tmp", "sc2-tmp-warm"])
def test_callee_policy_events_are_found_under_the_request_that_made_them(
    node: LiveNode, callee: str
) -> None:
    """A callee's runtime policy record names the request from outside (`request_id`) and
    its own call (`call_id`), as its invoke record does: what a call chain did at run time
    is found under the request that started it."""
    r = node.invoke("sc2-persist", {"to": callee, "n": 1})
    assert r.status_code == 200 and r.json() == ["ok"], r.text
    root = r.headers["x-request-id"]
    records = audit_records(node, root)
    (call,) = [
        x
        for x in records
        if x["action"] == "function.invoke" and x["target"].startswith(callee + "@")
    ]
    (alert,) = [x for x in records if x["action"] == "policy.alert"]
    assert alert["detail"]["policy"] == "tmp_write" and alert["actor"] == f"function:{callee}"
    assert alert["detail"]["call_id"] == call["detail"]["call_id"] != root
    assert alert["detail"]["caller"] == "function:sc2-persist"


@pytest.mark.usefixtures("functions")
def test_event_nested_too_deeply_is_refused_and_audited(node: LiveNode) -> None:
    """A forged event frame nested past the bound is refused as invalid and audited as
    `input.refused` by `function:<caller>`, as the same body from outside is; the callee
    does not run."""
    r = node.invoke("sc2-forger", {"body": "[" * 5000 + "]" * 5000})
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "invalid", r.json()
    records = audit_records(node, r.headers["x-request-id"])
    assert not [x for x in records if x["target"].startswith("sc2-target@")]
    (refused,) = [x for x in records if x["action"] == "input.refused"]
    assert refused["actor"] == "function:sc2-forger" and refused["target"] == "sc2-target"
    assert refused["detail"]["trigger"] == "function"


@pytest.mark.usefixtures("functions")
def test_each_call_of_a_chain_names_the_call_that_made_it(node: LiveNode) -> None:
    """A -> B -> C: each callee's record names its caller's own call (`caller_call_id`), not
    only the caller's name and the request from outside, so a chain whose calls repeat a
    function can be told apart call by call."""
    inner = {"to": "sc2-target", "n": 2, "pause": 0}
    r = node.invoke("sc2-persist", {"to": "sc2-relay", "n": 2, "pause": 0, "event": inner})
    assert r.status_code == 200 and r.json() == ["ok", "ok"], r.text
    root = r.headers["x-request-id"]
    calls = [x for x in audit_records(node, root) if x["action"] == "function.invoke"]
    relays = [x["detail"] for x in calls if x["target"].startswith("sc2-relay@")]
    targets = [x["detail"] for x in calls if x["target"].startswith("sc2-target@")]
    assert len(relays) == 2 and len(targets) == 4, calls
    assert all(d["caller_call_id"] == root for d in relays)
    made_by = sorted(d["caller_call_id"] for d in targets)
    assert made_by == sorted(2 * [d["call_id"] for d in relays])


@pytest.mark.usefixtures("functions")
def test_early_answer_keeps_the_callers_concurrency_slot(node: LiveNode) -> None:
    """A call that writes its answer early and runs on keeps its caller's concurrency slot
    (and the node's) until its processes are gone, as it keeps the function's: a key
    allowed one call at a time (or a function calling through context.invoke) cannot keep
    several sandboxes running past the node's cap by answering early."""
    key = node.create_key("sc2-one-at-a-time", "invoker", ["sc2-linger"], {"concurrency": 1})
    first = node.invoke("sc2-linger", {}, key=key["key"])
    assert first.status_code == 200 and first.json() == {"early": True}, first.text
    second = node.invoke("sc2-linger", {}, key=key["key"])
    assert second.status_code == 503, second.text
    assert "your concurrency limit (1 calls at once)" in second.json()["detail"], second.text
    # Once the first call's processes are gone (killed at its 20 s deadline), the slot is
    # given back: the key is served again, nothing was leaked.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r = node.invoke("sc2-linger", {}, key=key["key"])
        if r.status_code == 200:
            return
        assert r.status_code == 503, r.text
    raise AssertionError("the key was never served again")


@pytest.mark.usefixtures("functions")
def test_early_answer_is_charged_the_compute_its_processes_use(node: LiveNode) -> None:
    """A call that answers early and runs on to its deadline is charged that time, and its
    reservation is held until its processes are gone: a key held to 2 compute-seconds a day
    cannot run ten calls of a second each by answering at once (each was charged the
    milliseconds to its answer)."""
    made = node.create_key("sc2-compute", "invoker", ["sc2-linger-short"])
    with node.client() as c:
        r = c.put(f"/v1/quotas/key:{made['id']}", json={"compute_seconds": 2})
    assert r.status_code == 201, r.text
    statuses = [node.invoke("sc2-linger-short", {}, key=made["key"]).status_code for _ in range(10)]
    assert statuses.count(200) <= 3 and set(statuses) <= {200, 429}, statuses
