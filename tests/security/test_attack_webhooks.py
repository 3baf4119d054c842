"""Invariant 1 for webhooks: a delivery runs its function only if it is signed by the
trigger's secret, over the very body sent, within 5 minutes, once. Each test is a real
attack on a real node; the function must never run the attacker's event (checked with a
signed canary delivery that does run: had the attack been taken, it would have run too).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator

import httpx
import pytest

from harness import LiveNode, fresh_source
from sec_support import assert_problem
from triggers.webhook_signing import github_headers, new_whsec, standard_headers, stripe_headers
from webhook_support import HOOKS, audit, deliveries, deploy_hooks, wait_for_delivery
from webhook_support import post_hook as _post_hook

pytestmark = pytest.mark.slow

Keys = dict[str, str]
#: The attacks' own source address: their refusals count against it, not 127.0.0.1,
#: which the rest of the session's tests call from.
ATTACKER = fresh_source()


def post_hook(node: LiveNode, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return _post_hook(node, path, body, headers, ATTACKER)


@pytest.fixture(scope="module")
def keys(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return deploy_hooks(node, tmp_path_factory.mktemp("attack-hooks"), body_limit="16KiB")


def _attack_body(tag: str) -> bytes:
    return json.dumps({"type": "attack", "attack": tag, "amount": 1_000_000}).encode()


def _never_ran(node: LiveNode, keys: Keys, scheme: str, tag: str) -> None:
    """A signed canary runs; no delivery the function ran carries the attack's tag."""
    name, path, _ = HOOKS[scheme]
    canary = json.dumps({"id": f"evt_{secrets.token_hex(6)}", "type": "canary"}).encode()
    if scheme == "standard":
        headers = standard_headers(keys[scheme], canary)
    elif scheme == "github":
        headers = github_headers(keys[scheme], canary)
    else:
        headers = stripe_headers(keys[scheme], canary)
    r = post_hook(node, path, canary, headers)
    assert r.status_code == 202, r.text
    wait_for_delivery(node, name, r.json()["delivery_id"])
    assert not [d for d in deliveries(node, name) if tag in json.dumps(d["body"])]


def test_forged_signature(node: LiveNode, keys: Keys) -> None:
    """Deliveries signed with the attacker's own secret are refused 401 in every scheme."""
    tag = secrets.token_hex(6)
    body = _attack_body(tag)
    forged = {
        "standard": standard_headers(new_whsec(), body),
        "github": github_headers("attacker", body),
        "stripe": stripe_headers("whsec_attacker", body),
    }
    for scheme, headers in forged.items():
        assert_problem(post_hook(node, HOOKS[scheme][1], body, headers), 401)
    for scheme in forged:
        _never_ran(node, keys, scheme, tag)


def test_unsigned_delivery(node: LiveNode, keys: Keys) -> None:
    """A delivery with no signature header at all is refused 401."""
    tag = secrets.token_hex(6)
    body = _attack_body(tag)
    headers = {"webhook-id": "msg_x", "webhook-timestamp": str(int(time.time()))}
    assert_problem(post_hook(node, "/std", body, headers), 401)
    _never_ran(node, keys, "standard", tag)


def test_replayed_delivery(node: LiveNode, keys: Keys) -> None:
    """A captured, validly signed delivery sent again is refused 401; it ran once only."""
    body = json.dumps({"type": "payment", "replay": secrets.token_hex(6)}).encode()
    msg_id = f"msg_{secrets.token_hex(6)}"
    headers = standard_headers(keys["standard"], body, msg_id)
    assert post_hook(node, "/std", body, headers).status_code == 202
    wait_for_delivery(node, "hook-std", msg_id)
    for _ in range(3):
        assert_problem(post_hook(node, "/std", body, headers), 401)
    _never_ran(node, keys, "standard", "no-such-tag")
    assert [d["delivery_id"] for d in deliveries(node, "hook-std")].count(msg_id) == 1


def test_replay_under_a_fresh_github_delivery_id(node: LiveNode, keys: Keys) -> None:
    """GitHub does not sign X-GitHub-Delivery: a captured delivery sent again under a new
    id is still a replay (the signed body is what is remembered)."""
    body = json.dumps({"action": "opened", "n": secrets.token_hex(6)}).encode()
    first = github_headers(keys["github"], body, secrets.token_hex(8))
    assert post_hook(node, "/gh", body, first).status_code == 202
    again = {**first, "x-github-delivery": secrets.token_hex(8)}
    assert_problem(post_hook(node, "/gh", body, again), 401)
    wait_for_delivery(node, "hook-gh", first["x-github-delivery"])
    _never_ran(node, keys, "github", again["x-github-delivery"])
    assert again["x-github-delivery"] not in [d["delivery_id"] for d in deliveries(node, "hook-gh")]


@pytest.mark.parametrize("skew", [-3600, 3600])
def test_timestamp_skew(node: LiveNode, keys: Keys, skew: int) -> None:
    """Deliveries correctly signed an hour ago (or an hour ahead) are refused 401."""
    tag = secrets.token_hex(6)
    body = _attack_body(tag)
    stale = standard_headers(keys["standard"], body, ts=time.time() + skew)
    assert_problem(post_hook(node, "/std", body, stale), 401)
    stripe_body = json.dumps({"id": f"evt_{tag}", "type": "attack", "attack": tag}).encode()
    old = stripe_headers(keys["stripe"], stripe_body, ts=time.time() + skew)
    assert_problem(post_hook(node, "/stripe", stripe_body, old), 401)
    _never_ran(node, keys, "standard", tag)
    _never_ran(node, keys, "stripe", tag)


def test_body_swap(node: LiveNode, keys: Keys) -> None:
    """Valid signature headers of one delivery on another body are refused 401."""
    tag = secrets.token_hex(6)
    genuine = b'{"type": "refund", "amount": 1}'
    swapped = _attack_body(tag)
    for scheme, sign in (
        ("standard", standard_headers),
        ("github", github_headers),
        ("stripe", stripe_headers),
    ):
        headers = sign(keys[scheme], genuine)
        assert_problem(post_hook(node, HOOKS[scheme][1], swapped, headers), 401)
        _never_ran(node, keys, scheme, tag)


def test_header_injection(node: LiveNode, keys: Keys) -> None:
    """Headers an attacker adds to a signed delivery (credentials, forwarded identities, a
    second signature) never reach the function's event; a forged signature placed
    before the real one in the list does not help a forged body."""
    body = json.dumps({"type": "note", "n": secrets.token_hex(6)}).encode()
    msg_id = f"msg_{secrets.token_hex(6)}"
    headers = {
        **standard_headers(keys["standard"], body, msg_id),
        "authorization": "Bearer dj_stolen",
        "x-forwarded-for": "10.0.0.1",
        "x-donjon-principal": "key:admin",
    }
    assert post_hook(node, "/std", body, headers).status_code == 202
    seen = wait_for_delivery(node, "hook-std", msg_id)
    assert set(seen["trigger_headers"]) <= {
        "content-type",
        "user-agent",
        "webhook-id",
        "webhook-timestamp",
    }
    tag = secrets.token_hex(6)
    forged_body = _attack_body(tag)
    forged = standard_headers(new_whsec(), forged_body)
    genuine = standard_headers(keys["standard"], body)
    forged["webhook-signature"] += " " + genuine["webhook-signature"]
    assert_problem(post_hook(node, "/std", forged_body, forged), 401)
    _never_ran(node, keys, "standard", tag)


def test_oversized_body(node: LiveNode, keys: Keys) -> None:
    """A body past the function's limits.body is refused 413, declared or streamed,
    before its signature is even checked."""
    tag = secrets.token_hex(6)
    big = json.dumps({"attack": tag, "pad": "x" * 64 * 1024}).encode()
    assert_problem(post_hook(node, "/std", big, standard_headers(keys["standard"], big)), 413)

    def chunks() -> Iterator[bytes]:
        yield big[: len(big) // 2]
        yield big[len(big) // 2 :]

    with httpx.Client(base_url=node.url, verify=node.tls, timeout=30) as c:
        r = c.post("/hooks/std", content=chunks(), headers=standard_headers(keys["standard"], big))
    assert_problem(r, 413)
    _never_ran(node, keys, "standard", tag)


def test_unknown_hook_path(node: LiveNode, keys: Keys) -> None:
    """Probing paths no webhook serves gets 404, and reaches no function."""
    body = _attack_body("probe")
    for path in ("/nope", "/" + "a" * 600, "/std/extra", "/STD"):
        r = post_hook(node, path, body, standard_headers(keys["standard"], body))
        assert_problem(r, 404)
    _never_ran(node, keys, "standard", "probe")


def test_burst_of_bad_signatures_is_audited_in_aggregate_and_alerted(
    node: LiveNode, keys: Keys
) -> None:
    """Thirty forged deliveries from one source leave a bounded trail (one record at once,
    the rest counted into an aggregate) and raise the credential stuffing alert."""
    source = fresh_source()
    body = _attack_body(secrets.token_hex(6))
    with httpx.Client(
        base_url=node.url,
        verify=node.tls,
        timeout=30,
        transport=httpx.HTTPTransport(verify=node.tls, local_address=source),
    ) as c:
        for _ in range(30):
            r = c.post("/hooks/gh", content=body, headers=github_headers("attacker", body))
            assert r.status_code == 401
    denied = [
        r
        for r in audit(node, 3000)
        if r["action"] == "auth.denied" and r["detail"].get("client") == source
    ]
    assert len(denied) <= 2 and denied[0]["detail"]["reason"] == "webhook github: signature"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with node.client() as c:
            alerts = c.get("/v1/alerts").json()
        if any(a["kind"] == "auth.credential_stuffing" and source in a["subject"] for a in alerts):
            return
        time.sleep(0.5)
    raise AssertionError(f"no credential stuffing alert for {source}")
