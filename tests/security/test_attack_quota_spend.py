"""Attacks on the daily quotas (denial of wallet, docs/limits.md "Quotas") through ways in
that count a call's compute after it runs: a key whose compute-seconds quota is set gets
no more work out of the node than it allows by queueing its calls instead of waiting."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from async_support import bundle, invoke_async
from harness import LiveNode
from jwt_support import SigningKey, claims, jwks

SLOW = "import time\n\ndef handler(event, context):\n    time.sleep(1.1)\n    return {}\n"


def _seen(node: LiveNode, ids: list[str], key: str) -> list[dict[str, Any]]:
    with node.client(key) as c:
        return [c.get(f"/v1/invocations/{i}").json() for i in ids]


def _settled(seen: list[dict[str, Any]]) -> bool:
    """Each invocation ran, or was last refused by its quota, spent or held."""
    return all(
        s["status"] == "succeeded"
        or (s["error"] or {}).get("type") in ("QuotaExhausted", "QuotaHeld")
        for s in seen
    )


def test_async_invocations_queued_under_a_compute_quota_do_not_all_run(
    node: LiveNode, tmp_path: Path
) -> None:
    """A key held to 1 compute-second a day queued ten calls of 1.1 s before any had run
    (each was admitted against a usage of 0, and a first attempt was not checked again):
    all ten ran, 11 s of compute. Now an attempt whose key's compute quota was spent since
    its enqueue, or whose quota is reserved by the calls running, is refused (429, given
    back): one runs."""
    node.deploy(bundle(tmp_path, "atk-quota-slow", SLOW, "timeout_s: 5\n"))
    made = node.create_key("atk-quota-compute", "developer")
    with node.client() as c:
        r = c.put(f"/v1/quotas/key:{made['id']}", json={"compute_seconds": 1})
    assert r.status_code == 201, r.text
    ids = []
    for _ in range(10):
        r = invoke_async(node, "atk-quota-slow", {}, key=made["key"])
        assert r.status_code == 202, r.text
        ids.append(r.json()["invocation_id"])
    deadline = time.monotonic() + 60
    seen = _seen(node, ids, made["key"])
    while not _settled(seen) and time.monotonic() < deadline:
        time.sleep(0.5)
        seen = _seen(node, ids, made["key"])
    # The first ran; those tried while it ran were held (its timeout reserved), given back.
    assert _settled(seen), seen
    assert [s["status"] for s in seen].count("succeeded") == 1, seen
    for invocation in seen:
        if invocation["status"] != "succeeded":
            assert invocation["attempts"] == 0, invocation  # a refusal gives it back
            # Not tried again within seconds (the held quota's Retry-After is the running
            # call's timeout): a backlog of limits.queued would spin the workers and write
            # an invocation.attempt record per event each time.
            assert invocation["next_attempt_at"] - invocation["updated_at"] >= 30, invocation
    # The synchronous way in says the same: the quota is spent.
    with node.client(made["key"]) as c:
        refused = c.post("/v1/functions/atk-quota-slow/invoke", content=b"{}")
    assert refused.status_code == 429, refused.text
    assert "compute seconds" in refused.json()["detail"]


def test_concurrent_calls_under_a_compute_quota_do_not_all_run(
    node: LiveNode, tmp_path: Path
) -> None:
    """A key held to 1 compute-second a day sent eight calls of 1.1 s at once: each was
    admitted against a usage of 0 (compute is charged when a call ends), and all eight ran,
    8.8 s of compute. Now a call starts only while the quota covers the calls already
    running (each reserves its timeout until it ends): one runs, the others are refused
    (429, with a Retry-After of that call's timeout: the quota is held, not spent)."""
    node.deploy(bundle(tmp_path, "atk-quota-wide", SLOW, "timeout_s: 2\n"))
    made = node.create_key("atk-quota-wide", "developer")
    with node.client() as c:
        r = c.put(f"/v1/quotas/key:{made['id']}", json={"compute_seconds": 1})
    assert r.status_code == 201, r.text

    def call(_: int) -> httpx.Response:
        with node.client(made["key"]) as c:
            return c.post("/v1/functions/atk-quota-wide/invoke", content=b"{}")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, range(8)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(200) == 1, statuses
    assert statuses.count(429) == 7, statuses
    # Not spent, held by the call running: told to retry once it ends (its timeout), not
    # at the reset.
    refused = next(r for r in answers if r.status_code == 429)
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    assert "reserved by its calls running now" in refused.json()["detail"]
    # Ended, it spent the quota (1.1 s of 1): now refused until the reset. (Its reservation
    # is held until its processes are gone, a moment after its answer: refused meanwhile
    # as reserved, never run.)
    deadline = time.monotonic() + 30
    with node.client(made["key"]) as c:
        while True:
            spent = c.post("/v1/functions/atk-quota-wide/invoke", content=b"{}")
            assert spent.status_code == 429, spent.text
            held = "reserved by its calls running now" in spent.json()["detail"]
            if not held or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert "is exhausted" in spent.json()["detail"], spent.text
    assert int(spent.headers["retry-after"]) > 2 or time.gmtime().tm_hour == 23


def test_a_tokens_queued_calls_are_held_to_its_roles_quota(node: LiveNode, tmp_path: Path) -> None:
    """A token's async invocations ran under a stand-in role, `jwt`: the compute quota of
    the role its token granted (and that role's limits) did not apply to them, and six
    calls of 1.1 s queued by a role held to 1 compute-second all ran. Now the roles are
    kept with the event (as far as its issuer still grants them): one runs."""
    node.deploy(bundle(tmp_path, "atk-quota-jwt", SLOW, "timeout_s: 5\n"))
    role = f"atk-jq-{secrets.token_hex(3)}"
    statements = [{"effect": "allow", "actions": ["function:invoke"], "resources": ["*"]}]
    signing = SigningKey.generate(f"jq-{role}", "ES256")
    iss = f"https://{role}.example"
    issuer = {
        "name": role,
        "issuer": iss,
        "audience": "donjon",
        "jwks": jwks(signing),
        "allowed_roles": [role],
    }
    with node.client() as c:
        assert c.post("/v1/roles", json={"name": role, "statements": statements}).status_code == 201
        assert c.post("/v1/issuers", json=issuer).status_code == 201
        r = c.put(f"/v1/quotas/role:{role}", json={"compute_seconds": 1})
        assert r.status_code == 201, r.text
    token = signing.sign(claims(iss, "donjon", roles=[role]))
    ids = []
    for _ in range(6):
        r = invoke_async(node, "atk-quota-jwt", {}, key=token)
        assert r.status_code == 202, r.text
        ids.append(r.json()["invocation_id"])
    deadline = time.monotonic() + 60
    seen = _seen(node, ids, token)
    while not _settled(seen) and time.monotonic() < deadline:
        time.sleep(0.5)
        seen = _seen(node, ids, token)
    assert _settled(seen), seen
    assert [s["status"] for s in seen].count("succeeded") == 1, seen


def test_queued_calls_do_not_run_past_a_quota_lowered_below_the_days_usage(
    node: LiveNode, tmp_path: Path
) -> None:
    """An admin who lowers a key's invocations quota below what it used today wants no
    more of its calls today: its queued ones (each counted as it was queued) all ran.
    Now an attempt not yet started is refused (429, given back until the reset)."""
    node.deploy(bundle(tmp_path, "atk-quota-lowered", SLOW, "timeout_s: 5\n"))
    made = node.create_key("atk-quota-lowered", "developer")
    subject = f"/v1/quotas/key:{made['id']}"
    with node.client() as c:
        assert c.put(subject, json={"invocations": 100}).status_code == 201
    ids = []
    for _ in range(10):
        r = invoke_async(node, "atk-quota-lowered", {}, key=made["key"])
        assert r.status_code == 202, r.text
        ids.append(r.json()["invocation_id"])
    with node.client() as c:
        assert c.put(subject, json={"invocations": 1}).status_code == 200
    deadline = time.monotonic() + 60
    seen = _seen(node, ids, made["key"])
    while not _settled(seen) and time.monotonic() < deadline:
        time.sleep(0.5)
        seen = _seen(node, ids, made["key"])
    assert _settled(seen), seen
    assert [s["status"] for s in seen].count("succeeded") <= 5, seen  # those running


FANS_OUT = (
    "def handler(event, context):\n"
    "    return [context.invoke('atk-quota-leaf', {'n': n}) for n in range(2)]\n"
)


def test_calls_a_function_makes_for_a_key_spend_that_keys_invocations(
    node: LiveNode, tmp_path: Path
) -> None:
    """A key held to 3 invocations a day calls a function that invokes another twice:
    the three calls spend the key's three (before, only the first did, so a key's quota
    bounded its requests, not the work they fanned out to), and its next call is refused
    429; the callee's own function quota is spent as before."""
    node.deploy(bundle(tmp_path, "atk-quota-leaf", "def handler(event, context):\n    return 1\n"))
    grant = "permissions: {invoke: [atk-quota-leaf]}\n"
    node.deploy(bundle(tmp_path, "atk-quota-fan", FANS_OUT, grant))
    made = node.create_key("atk-quota-fanner", "invoker")
    with node.client() as c:
        r = c.put(f"/v1/quotas/key:{made['id']}", json={"invocations": 3})
        assert r.status_code == 201, r.text
    first = node.invoke("atk-quota-fan", {}, key=made["key"])
    assert first.status_code == 200, first.text
    assert first.json() == [1, 1]
    again = node.invoke("atk-quota-fan", {}, key=made["key"])
    assert again.status_code == 429, again.text
    with node.client() as c:
        quotas = {q["subject"]: q for q in c.get("/v1/quotas").json()}
    assert quotas[f"key:{made['id']}"]["invocations"]["used"] >= 3, quotas
