"""Daily quotas (denial of wallet) on a real node: set by the CLI and the API, enforced at
admission (429 with the reason and Retry-After to UTC midnight), compute charged after each
call, refusals audited in aggregate plus one `quota.exhausted`, usage kept over a restart.

The node is this module's own: quotas on its functions must not reach other tests' calls.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from harness import LiveNode, run_cli, start_node
from utc_day import clear_of_utc_midnight

_HANDLER = """\
import time


def handler(event, context):
    time.sleep(float(event.get("sleep", 0)))
    return {"ok": True}
"""
FUNCTIONS = ("q-hello", "q-shared", "q-sleep", "q-audit", "q-restart", "q-cli", "q-ways")
#: q-ways is also served by an http trigger (every way in passes admission).
_TRIGGER = "triggers:\n  - http: {path: /q-ways, methods: [POST], auth: key}\n"


@pytest.fixture(scope="module")
def qnode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node of its own whose denial aggregates are written every second."""
    live = start_node(tmp_path_factory.mktemp("quota-node"), {"DONJON_AUDIT_DENIAL_WINDOW_S": "1"})
    try:
        for name in FUNCTIONS:
            fn = tmp_path_factory.mktemp(name)
            (fn / "donjon.yaml").write_text(
                f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
                "isolation: warm\n" + (_TRIGGER if name == "q-ways" else "")
            )
            (fn / "main.py").write_text(_HANDLER)
            live.deploy(fn)
        yield live
    finally:
        live.stop()


@pytest.fixture(autouse=True)
def _one_utc_day() -> None:
    """Each test spends and counts a daily quota: it runs inside one UTC day."""
    clear_of_utc_midnight()


def _seconds_to_midnight() -> float:
    now = dt.datetime.now(dt.UTC)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    return (midnight - now).total_seconds()


def _audit(node: LiveNode) -> list[dict[str, Any]]:
    with node.client() as c:
        records: list[dict[str, Any]] = c.get("/v1/audit", params={"n": 10_000}).json()
    return records


def _quota(node: LiveNode, subject: str) -> dict[str, Any]:
    with node.client() as c:
        quotas: list[dict[str, Any]] = c.get("/v1/quotas").json()
    return next(q for q in quotas if q["subject"] == subject)


def test_key_with_three_invocations_a_day_gets_three_calls_then_429(qnode: LiveNode) -> None:
    """`donjon quota set --key ID --invocations 3/day`: 3 calls, then 429 naming the quota,
    its usage and its reset, with Retry-After to UTC midnight; other callers go on."""
    key = qnode.create_key("quota-three", "invoker")
    run_cli(qnode.env(), "quota", "set", "--key", key["id"], "--invocations", "3/day")
    statuses = [qnode.invoke("q-hello", {}, key=key["key"]).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    refused = qnode.invoke("q-hello", {}, key=key["key"])
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["detail"].startswith("the daily quota of")
    assert f"key:{key['id']}" in problem["detail"]
    assert "3/3 invocations" in problem["detail"]
    assert "resets at" in problem["detail"] and "T00:00:00Z" in problem["detail"]
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 86400
    assert abs(retry_after - _seconds_to_midnight()) < 300
    assert qnode.invoke("q-hello", {}).status_code == 200  # the admin has no quota
    assert _quota(qnode, f"key:{key['id']}")["invocations"] == {"used": 3, "limit": 3}


def test_function_quota_applies_to_every_caller(qnode: LiveNode) -> None:
    """A function's quota of 2 a day is shared: one call by a key, one by the admin, then
    both are refused."""
    key = qnode.create_key("quota-shared", "invoker")
    with qnode.client() as c:
        assert c.put("/v1/quotas/function:q-shared", json={"invocations": 2}).status_code == 201
    assert qnode.invoke("q-shared", {}, key=key["key"]).status_code == 200
    assert qnode.invoke("q-shared", {}).status_code == 200
    for caller in (key["key"], None):
        refused = qnode.invoke("q-shared", {}, key=caller)
        assert refused.status_code == 429
        assert "function:q-shared" in refused.json()["detail"]


def test_compute_seconds_quota_stops_a_function_that_sleeps(qnode: LiveNode) -> None:
    """With 1 compute second a day, calls that sleep 0.6 s each are stopped after two."""
    run_cli(qnode.env(), "quota", "set", "--function", "q-sleep", "--compute-seconds", "1/day")
    assert qnode.invoke("q-sleep", {"sleep": 0.6}).status_code == 200
    assert qnode.invoke("q-sleep", {"sleep": 0.6}).status_code == 200
    refused = qnode.invoke("q-sleep", {"sleep": 0.6})
    assert refused.status_code == 429
    assert "compute seconds" in refused.json()["detail"]
    used = _quota(qnode, "function:q-sleep")["compute_seconds"]
    assert used["limit"] == 1 and used["used"] >= 1.2


def test_refusals_are_audited_in_aggregate_with_one_exhausted_record(qnode: LiveNode) -> None:
    """Five refusals: the quota.refused records count five in all, and one quota.exhausted."""
    with qnode.client() as c:
        assert c.put("/v1/quotas/function:q-audit", json={"invocations": 1}).status_code == 201
    assert qnode.invoke("q-audit", {}).status_code == 200
    assert [qnode.invoke("q-audit", {}).status_code for _ in range(5)] == [429] * 5

    def refused() -> int:
        """Refusals of q-audit: a single record counts one; an aggregate (one per principal
        and window, whichever function it opened on) counts its `paths` of q-audit."""
        total = 0
        for r in _audit(qnode):
            if r["action"] != "quota.refused":
                continue
            if r["detail"].get("aggregated"):
                total += sum(n for p, n in r["detail"]["paths"].items() if p.startswith("q-audit@"))
            elif r["target"].startswith("q-audit@"):
                total += int(r["detail"]["count"])
        return total

    deadline = time.monotonic() + 60
    while refused() < 5 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert refused() == 5
    exhausted = [
        r
        for r in _audit(qnode)
        if r["action"] == "quota.exhausted" and r["target"] == "function:q-audit"
    ]
    assert len(exhausted) == 1
    assert exhausted[0]["detail"]["used"] == 1 and exhausted[0]["detail"]["limit"] == 1
    sets = [r for r in _audit(qnode) if r["action"] == "quota.set"]
    assert any(r["target"] == "function:q-audit" for r in sets)


def test_quota_api_refuses_bad_input_with_400_naming_the_field(qnode: LiveNode) -> None:
    """A bad body or subject is a 400 naming what is wrong, and sets nothing."""
    with qnode.client() as c:
        for body, field in (
            ({"invocations": "ten"}, "invocations"),
            ({"invocations": -1}, "invocations"),
            ({"invocations": 1.5}, "invocations"),
            ({"compute_seconds": True}, "compute_seconds"),
            ({"invocation": 3}, "invocation"),
        ):
            r = c.put("/v1/quotas/function:q-hello", json=body)
            assert r.status_code == 400, (body, r.text)
            assert field in r.json()["detail"]
        r = c.put("/v1/quotas/bucket:q-hello", json={"invocations": 1})
        assert r.status_code == 400
        assert "key:ID, role:NAME or function:NAME" in r.json()["detail"]
        assert all(q["subject"] != "function:q-hello" for q in c.get("/v1/quotas").json())


def test_quota_api_404_for_unknown_subjects(qnode: LiveNode) -> None:
    """A quota on a key, role or function that does not exist is 404; so is removing none."""
    with qnode.client() as c:
        for subject in ("key:0000000000000000", "role:no-such-role", "function:no-such-fn"):
            r = c.put(f"/v1/quotas/{subject}", json={"invocations": 1})
            assert r.status_code == 404, (subject, r.text)
            assert "to set a quota on" in r.json()["detail"]
        assert c.delete("/v1/quotas/function:q-hello").status_code == 404


def test_quota_api_is_admin_only(qnode: LiveNode) -> None:
    """Developers and invokers may neither list, set nor remove quotas (403)."""
    for role in ("developer", "invoker"):
        key = qnode.create_key(f"quota-{role}", role)
        with qnode.client(key["key"]) as c:
            assert c.get("/v1/quotas").status_code == 403
            r = c.put(f"/v1/quotas/key:{key['id']}", json={"invocations": 1_000_000})
            assert r.status_code == 403
            assert c.delete("/v1/quotas/function:q-shared").status_code == 403
    assert _quota(qnode, "function:q-shared")["invocations"]["limit"] == 2


def test_quota_cli_set_show_rm(qnode: LiveNode) -> None:
    """`donjon quota` sets, shows (json and table) and removes; audited quota.rm."""
    env = qnode.env()
    done = run_cli(
        env, "quota", "set", "--role", "auditor", "--invocations", "100",
        "--compute-seconds", "2.5/day", "--output", "json",
    )  # fmt: skip
    assert json.loads(done.stdout)["compute_seconds"]["limit"] == 2.5
    shown = json.loads(run_cli(env, "quota", "show", "--output", "json").stdout)
    mine = next(q for q in shown if q["subject"] == "role:auditor")
    assert mine["invocations"] == {"used": 0, "limit": 100}
    table = run_cli(env, "quota", "show").stdout
    assert "role:auditor" in table and "0 / 100" in table and "RESETS" in table
    run_cli(env, "quota", "rm", "--role", "auditor")
    shown = json.loads(run_cli(env, "quota", "show", "--output", "json").stdout)
    assert all(q["subject"] != "role:auditor" for q in shown)
    assert any(r["action"] == "quota.rm" and r["target"] == "role:auditor" for r in _audit(qnode))
    two = run_cli(env, "quota", "set", "--role", "a", "--function", "b", check=False)
    assert two.returncode != 0 and "exactly one" in two.stderr
    bad = run_cli(
        env, "quota", "set", "--function", "q-cli", "--invocations", "3/week", check=False
    )
    assert bad.returncode != 0 and "daily amount" in bad.stderr


def test_a_restart_keeps_the_days_usage(qnode: LiveNode, tmp_path: Path) -> None:
    """Two of three calls used, the node restarted: one more call, then 429."""
    with qnode.client() as c:
        assert c.put("/v1/quotas/function:q-restart", json={"invocations": 3}).status_code == 201
    assert [qnode.invoke("q-restart", {}).status_code for _ in range(2)] == [200, 200]
    qnode.stop()
    qnode.serve_again({"DONJON_AUDIT_DENIAL_WINDOW_S": "1"})
    assert qnode.invoke("q-restart", {}).status_code == 200
    assert qnode.invoke("q-restart", {}).status_code == 429


def test_a_key_quota_holds_on_every_way_in(qnode: LiveNode) -> None:
    """One quota of 3 a day spent over the invoke API, an http trigger and the Lambda API;
    then each of the three answers 429."""
    key = qnode.create_key("quota-ways", "invoker")
    with qnode.client() as c:
        assert c.put(f"/v1/quotas/key:{key['id']}", json={"invocations": 3}).status_code == 201
    lam = boto3.client(
        "lambda",
        endpoint_url=qnode.url,
        region_name="us-east-1",
        verify=qnode.cert,
        aws_access_key_id=key["id"],
        aws_secret_access_key=key["sigv4_secret"],
        config=Config(retries={"total_max_attempts": 1}, read_timeout=60, connect_timeout=10),
    )
    try:  # (closed: its TLS sockets, left to the garbage collector, failed a later test)
        assert qnode.invoke("q-ways", {}, key=key["key"]).status_code == 200
        with qnode.client(key["key"]) as c:
            assert c.post("/fn/q-ways", content=b"{}").status_code == 200
        answer = lam.invoke(FunctionName="q-ways", Payload=b"{}")
        answer["Payload"].close()  # unread, it keeps its connection out of the client's pool
        assert answer["StatusCode"] == 200
        assert qnode.invoke("q-ways", {}, key=key["key"]).status_code == 429
        with qnode.client(key["key"]) as c:
            assert c.post("/fn/q-ways", content=b"{}").status_code == 429
        with pytest.raises(ClientError) as refused:
            lam.invoke(FunctionName="q-ways", Payload=b"{}")
    finally:
        lam.close()
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert _quota(qnode, f"key:{key['id']}")["invocations"] == {"used": 3, "limit": 3}
