"""Issue 15's rate buckets and concurrency caps against a real node (docs/limits.md).

One node of its own: public triggers' buckets at 3/minute per client address, a
one-second bounded wait for a full concurrency cap, and a denial window long
enough that refusals aggregate while a test runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from harness import LiveNode, start_node

HANDLER = """\
import time
def handler(event, context):
    if isinstance(event, dict) and event.get("fail"):
        raise RuntimeError("failed on purpose")
    if isinstance(event, dict):
        time.sleep(event.get("sleep", 0))
    return {"ok": True}
"""
FUNCTIONS = {
    "lim-echo": "timeout_s: 30\nlimits: {concurrency: 8}\n",
    "lim-public": (
        "timeout_s: 30\nlimits: {rate: 1000/minute}\n"
        "triggers:\n  - http: {path: /lim-public, methods: [GET], auth: public}\n"
    ),
    "lim-rated": "timeout_s: 30\nlimits: {rate: 3/minute, concurrency: 8}\n",
    "lim-short": "timeout_s: 1\nlimits: {concurrency: 8}\n",
}
WINDOW_S = 5


@pytest.fixture(scope="module")
def limits_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    data = tmp_path_factory.mktemp("limits-node")
    live = start_node(
        data,
        {
            "DONJON_RATE_PER_CLIENT": "3/minute",
            # The tests' own address is a proxy: its X-Forwarded-For names IPv6 callers.
            "DONJON_TRUSTED_PROXIES": "127.0.0.1/32",
            "DONJON_MAX_QUEUE_WAIT_S": "1",
            "DONJON_MAX_LOOP_LAG_S": "0",  # the machine's load must not shed anything
            "DONJON_AUDIT_DENIAL_WINDOW_S": str(WINDOW_S),
        },
    )
    try:
        for name, extra in FUNCTIONS.items():
            fn = tmp_path_factory.mktemp(name)
            (fn / "main.py").write_text(HANDLER)
            (fn / "donjon.yaml").write_text(
                f"name: {name}\nhandler: main.handler\nmemory_mb: 64\n{extra}"
            )
            fn.chmod(0o755)
            live.deploy(fn)
        yield live
    finally:
        live.stop()


def _key(node: LiveNode, name: str, **limits: Any) -> tuple[str, str]:
    created = node.create_key(name, "invoker", limits=limits)
    return created["id"], created["key"]


def test_a_principal_over_its_rate_is_throttled_while_another_is_not(
    limits_node: LiveNode,
) -> None:
    """Key A (2/minute, burst 2) gets 429 on its third call; key B keeps getting 200."""
    node = limits_node
    a_id, a = _key(node, "flooder", rate="2/minute", burst=2)
    b_id, b = _key(node, "bystander")
    statuses = [node.invoke("lim-echo", {}, key=a).status_code for _ in range(5)]
    assert statuses == [200, 200, 429, 429, 429]
    assert [node.invoke("lim-echo", {}, key=b).status_code for _ in range(3)] == [200] * 3
    refused = node.invoke("lim-echo", {}, key=a)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-policy"] == '"principal";q=2;w=60'
    assert refused.headers["ratelimit"].startswith('"principal";r=0;t=')
    assert refused.headers["content-type"] == "application/problem+json"
    everything = str(refused.headers) + refused.text
    assert b_id not in everything and a_id not in everything  # no principal's id is told


def test_a_key_shows_its_limits(limits_node: LiveNode) -> None:
    """The limits a key was created with are stored and listed; bad ones are refused (400)."""
    node = limits_node
    key_id, _ = _key(node, "shown", rate="50/second", burst=100, concurrency=3)
    with node.client() as c:
        keys = {k["id"]: k for k in c.get("/v1/keys").json()}
        for bad in ({"rate": "50/fortnight"}, {"burst": 0}, {"concurrency": "2"}):
            r = c.post("/v1/keys", json={"name": "bad", "role": "invoker", **bad})
            assert r.status_code == 400, (bad, r.text)
    shown = keys[key_id]
    assert (shown["rate"], shown["burst"], shown["concurrency"]) == ("50/second", 100, 3)


def test_a_role_documents_limits_apply_to_its_keys(limits_node: LiveNode) -> None:
    """A key of a role with `limits: {rate: 1/minute}` and none of its own gets 429 on its
    second call; a key of that role with a rate of its own is not held to the role's."""
    node = limits_node
    role = {
        "name": "slow-invoker",
        "statements": [{"effect": "allow", "actions": ["function:invoke"], "resources": ["*"]}],
        "limits": {"rate": "1/minute"},
    }
    with node.client() as c:
        assert c.post("/v1/roles", json=role).status_code == 201
        roles = {r["name"]: r for r in c.get("/v1/roles").json()}
    assert roles["slow-invoker"]["limits"] == {"rate": "1/minute"}
    plain = node.create_key("role-limited", "slow-invoker")["key"]
    own = node.create_key("own-limits", "slow-invoker", limits={"rate": "10/minute"})["key"]
    assert [node.invoke("lim-echo", {}, key=plain).status_code for _ in range(2)] == [200, 429]
    assert [node.invoke("lim-echo", {}, key=own).status_code for _ in range(2)] == [200, 200]


def test_a_refused_flood_spends_none_of_the_functions_shared_tokens(
    limits_node: LiveNode,
) -> None:
    """lim-rated allows 3/minute; key A (1/minute) is refused 4 times by its own bucket,
    which leaves the function's tokens to key B: its two calls succeed."""
    node = limits_node
    _, a = _key(node, "own-bucket-first", rate="1/minute")
    _, b = _key(node, "other-caller")
    statuses = [node.invoke("lim-rated", {}, key=a).status_code for _ in range(5)]
    assert statuses == [200, 429, 429, 429, 429]
    assert [node.invoke("lim-rated", {}, key=b).status_code for _ in range(2)] == [200, 200]
    refused = node.invoke("lim-rated", {}, key=b)  # the function's own bucket is spent now
    assert refused.status_code == 429
    assert refused.headers["ratelimit-policy"] == '"function";q=3;w=60'


def test_public_trigger_buckets_are_per_client_address(limits_node: LiveNode) -> None:
    """Past 3/minute one address gets 429 (policy "client"); another address is served."""
    node = limits_node

    def get(source: str) -> httpx.Response:
        with node.client("", source) as c:
            return c.get("/fn/lim-public")

    first = [get("127.0.0.5") for _ in range(4)]
    assert [r.status_code for r in first] == [200, 200, 200, 429]
    assert first[-1].headers["ratelimit-policy"] == '"client";q=3;w=60'
    assert get("127.0.0.6").status_code == 200


def test_a_public_callers_ipv6_addresses_share_the_bucket_of_their_64(
    limits_node: LiveNode,
) -> None:
    """An IPv6 host has a whole /64: a new address for each call made each call a new
    client bucket, and one caller took all of a public function's rate from the others
    (the connect gate already counted per /64). Past 3/minute its /64 gets 429, whatever
    address in it calls; another /64 is served."""
    node = limits_node

    def get(address: str) -> httpx.Response:
        with node.client("", "127.0.0.1") as c:  # the trusted proxy, forwarding `address`
            return c.get("/fn/lim-public", headers={"x-forwarded-for": address})

    rotating = [get(f"2001:db8:7:1::{n}") for n in range(1, 5)]
    assert [r.status_code for r in rotating] == [200, 200, 200, 429]
    assert rotating[-1].headers["ratelimit-policy"] == '"client";q=3;w=60'
    assert get("2001:db8:7:2::1").status_code == 200


def test_a_public_callers_new_ipv6_addresses_are_not_a_record_each(
    limits_node: LiveNode,
) -> None:
    """The refusals of a /64's client bucket were aggregated per address: a caller using a
    new address of its /64 for each refused call had each written to the log at once, a
    record per request. Now one record at once per /64 and window, the rest counted (an
    aggregate naming the /64)."""
    node = limits_node

    def get(address: str) -> httpx.Response:
        with node.client("", "127.0.0.1") as c:
            return c.get("/fn/lim-public", headers={"x-forwarded-for": address})

    statuses = [get(f"2001:db8:7:3::{n:x}").status_code for n in range(1, 16)]
    assert statuses == [200] * 3 + [429] * 12
    with node.client() as c:
        records = c.get("/v1/audit", params={"n": 5000}).json()
    written = [
        r
        for r in records
        if r["action"] == "function.throttle"
        and str(r["detail"].get("client", "")).startswith("2001:db8:7:3:")
    ]
    assert len(written) <= 2, written  # (a window of 5 s may close during the test)


def _throttle_records(node: LiveNode, actor: str) -> list[dict[str, Any]]:
    with node.client() as c:
        records = c.get("/v1/audit", params={"n": 5000}).json()
    return [r for r in records if r["action"] == "function.throttle" and r["actor"] == actor]


def test_refusals_are_audited_in_aggregate_with_their_count(limits_node: LiveNode) -> None:
    """Twelve refusals of one key on one function are a handful of records whose counts
    sum to twelve: one at once, the rest in an aggregate when the window closes."""
    node = limits_node
    key_id, key = _key(node, "audited", rate="1/minute")
    statuses = [node.invoke("lim-echo", {}, key=key).status_code for _ in range(13)]
    assert statuses == [200] + [429] * 12
    deadline = time.monotonic() + 120
    while True:
        records = _throttle_records(node, f"key:{key_id}")
        total = sum(r["detail"]["count"] for r in records)
        if total >= 12 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert total == 12, records
    assert len(records) < 12, records  # never one per refused request
    assert all(r["target"].startswith("lim-echo@") for r in records)


def test_a_caller_at_its_concurrency_waits_then_gets_503(limits_node: LiveNode) -> None:
    """Key C may run one call at once: of two calls made together one is served, the other
    waits the bounded second and gets 503 with Retry-After; key D is not held up."""
    node = limits_node
    _, c_key = _key(node, "one-at-a-time", concurrency=1)
    _, d_key = _key(node, "unhindered")
    answers: list[httpx.Response] = []

    def call() -> None:
        answers.append(node.invoke("lim-echo", {"sleep": 6}, key=c_key))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    assert node.invoke("lim-echo", {}, key=d_key).status_code == 200
    for t in threads:
        t.join(120)
    assert sorted(r.status_code for r in answers) == [200, 503], [r.text for r in answers]
    busy = next(r for r in answers if r.status_code == 503)
    assert int(busy.headers["retry-after"]) >= 1
    assert "concurrency" in busy.json()["detail"]
    assert node.invoke("lim-echo", {}, key=c_key).status_code == 200  # the slot came back


def test_a_failed_or_timed_out_call_gives_its_slot_back(limits_node: LiveNode) -> None:
    """With one slot, a call that raises (500) and one that times out (504) each leave the
    slot free: the next call is served at once, never refused for a slot still held."""
    node = limits_node
    _, key = _key(node, "fails", concurrency=1)
    assert node.invoke("lim-echo", {"fail": True}, key=key).status_code == 500
    assert node.invoke("lim-echo", {}, key=key).status_code == 200
    assert node.invoke("lim-short", {"sleep": 5}, key=key).status_code == 504
    assert node.invoke("lim-echo", {}, key=key).status_code == 200
