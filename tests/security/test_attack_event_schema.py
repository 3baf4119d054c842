"""Attacks on a function's `input_schema` as the event paths apply it (signed webhooks, the
async queue's deliveries, the invoke route), against a real node.

The attacker sends events: as a webhook's sender (it holds the signing secret, or the hook
is public), or as a caller with an invoker's key. The function's schema is what its author
relies on: the handler must never get an event the schema of the version it runs refuses,
and no event may hold the node's event loop while the schema is checked."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from async_support import wait_for
from harness import LiveNode, start_node
from triggers.webhook_signing import new_whsec, standard_headers
from webhook_support import deliveries

pytestmark = pytest.mark.slow

HANDLER = """\
import json
def handler(event, context):
    print("DELIVERY " + json.dumps({
        "delivery_id": event["delivery_id"], "event_type": event["event_type"],
        "body": event["body"], "trigger_headers": sorted(event["headers"]),
    }, sort_keys=True))
    return {"ok": True}
"""
#: Fails every call: the event goes to the dead-letter queue after its one attempt.
FAILING = """\
def handler(event, context):
    raise RuntimeError("not yet")
"""
#: The signing key of each node's hooks: every hook has a secret of its own (a hook secret
#: authenticates one path), all holding this value.
_KEYS: dict[str, str] = {}


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNode, str]]:
    live = start_node(tmp_path_factory.mktemp("evschema-node"))
    key = _KEYS[live.url] = new_whsec()
    try:
        yield live, key
    finally:
        live.stop()


def _deploy(
    live: LiveNode, root: Path, name: str, schema: dict[str, Any] | None, code: str = HANDLER
) -> None:
    fn = root / name
    fn.mkdir(exist_ok=True)
    (fn / "main.py").write_text(code)
    secret = f"{name}-key"
    with live.client() as c:
        made = c.post(f"/v1/secrets/{secret}", json={"value": _KEYS[live.url]})
        assert made.status_code in (201, 409), made.text  # 409: a redeploy's, made before
    manifest = {
        "name": name,
        "handler": "main.handler",
        "memory_mb": 64,
        "limits": {"rate": "600/minute", "body": "1MiB"},
        "retry": {"attempts": 1},
        "triggers": [{"webhook": {"path": f"/{name}", "scheme": "standard", "secret": secret}}],
    }
    if schema is not None:
        manifest["input_schema"] = schema
    (fn / "donjon.yaml").write_text(json.dumps(manifest))  # JSON is YAML
    live.deploy(fn)


def _send(live: LiveNode, key: str, path: str, body: bytes, timeout: float = 60) -> httpx.Response:
    headers = standard_headers(key, body, f"msg_{secrets.token_hex(6)}")
    with httpx.Client(base_url=live.url, verify=live.tls, timeout=timeout) as c:
        return c.post(f"/hooks{path}", content=body, headers=headers)


def _send_as(live: LiveNode, key: str, path: str, body: bytes, msg_id: str) -> httpx.Response:
    with httpx.Client(base_url=live.url, verify=live.tls, timeout=60) as c:
        return c.post(f"/hooks{path}", content=body, headers=standard_headers(key, body, msg_id))


def _send_asking_healthz(
    live: LiveNode,
    key: str,
    path: str,
    body: bytes,
    *,
    timeout: float,
    healthz_timeout: float,
    settle_s: float = 0.0,
) -> httpx.Response:
    """Send a delivery from a thread and, `settle_s` later (the body sent, being checked),
    ask /healthz, which must answer 200 within `healthz_timeout` (a node held by the
    schema check does not); the delivery's answer, which must come (not a timeout)."""
    answer: list[httpx.Response | BaseException] = []

    def attack() -> None:
        try:
            answer.append(_send(live, key, path, body, timeout=timeout))
        except BaseException as e:  # a timeout: the node held on the check
            answer.append(e)

    thread = threading.Thread(target=attack)
    thread.start()
    try:
        time.sleep(settle_s)
        with httpx.Client(base_url=live.url, verify=live.tls, timeout=healthz_timeout) as c:
            assert c.get("/healthz").status_code == 200
    finally:
        thread.join()
    got = answer[0]
    assert isinstance(got, httpx.Response), repr(got)
    return got


def _body_schema(body: dict[str, Any]) -> dict[str, Any]:
    """A webhook function's schema: the delivery's body (the event's `body`) is `body`."""
    return {"type": "object", "required": ["body"], "properties": {"body": body}}


def test_nan_and_infinity_do_not_pass_a_numeric_bound(
    hooked: tuple[LiveNode, str], tmp_path: Path
) -> None:
    """`{"amount": NaN}` is no JSON (RFC 8259), yet Python's parser takes it, and NaN fails no
    `minimum`/`maximum` comparison: a signed delivery whose amount is NaN, or a number too
    large for a float (1e999, Infinity to the handler), is refused (422) for a schema bound
    to 0..100 and never runs; the invoke route refuses it too. 50 is taken."""
    live, key = hooked
    bounded = {"type": "number", "minimum": 0, "maximum": 100}
    amount = {"type": "object", "required": ["amount"], "properties": {"amount": bounded}}
    _deploy(live, tmp_path, "nan-hook", _body_schema(amount))
    for text in ("NaN", "Infinity", "-Infinity", "1e999"):
        r = _send(live, key, "/nan-hook", b'{"amount": %s}' % text.encode())
        assert r.status_code == 422, (text, r.status_code, r.text)
    with live.client() as c:
        r = c.post("/v1/functions/nan-hook/invoke", content=b'{"body": {"amount": NaN}}')
    assert r.status_code in (400, 422), r.text
    r = _send(live, key, "/nan-hook", b'{"amount": 50}')
    assert r.status_code == 202, r.text
    assert wait_for(live, r.json()["id"])["status"] == "succeeded"
    assert [d["body"] for d in deliveries(live, "nan-hook")] == [{"amount": 50}]


def test_unique_items_over_mixed_values_does_not_stall_the_node(
    hooked: tuple[LiveNode, str], tmp_path: Path
) -> None:
    """A schema saying `tags` are unique numbers: jsonschema compares items pairwise when
    they do not sort (numbers and one string), on the node's event loop. A delivery of
    ~100 KB of such tags must be answered (422: the string is no number) without holding
    the node: /healthz answers while it is checked, and the delivery's answer comes."""
    live, key = hooked
    tags = {"type": "array", "items": {"type": "number"}, "uniqueItems": True}
    schema = {"type": "object", "properties": {"tags": tags}}
    _deploy(live, tmp_path, "uniq-hook", _body_schema(schema))
    body = json.dumps({"tags": [i + 0.5 for i in range(12000)] + ["x"]}).encode()
    got = _send_asking_healthz(live, key, "/uniq-hook", body, timeout=30, healthz_timeout=15)
    assert got.status_code == 422, got.text
    assert "/body/tags" in got.json()["detail"]


def test_unevaluated_properties_over_many_keys_does_not_stall_the_node(
    hooked: tuple[LiveNode, str], tmp_path: Path
) -> None:
    """`unevaluatedProperties: false` with `additionalProperties: {type: integer}`: jsonschema
    looks each key up in a list of the keys evaluated, quadratic in the keys. A delivery of
    75,000 keys (~960 KB, under a limits.body of 1 MiB) is answered, not held until the
    client gives up."""
    live, key = hooked
    schema: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "integer"}}
    schema["unevaluatedProperties"] = False
    _deploy(live, tmp_path, "uneval-hook", _body_schema(schema))
    body = json.dumps({f"k{i}": 0 for i in range(75000)}).encode()
    r = _send(live, key, "/uneval-hook", body, timeout=30)
    assert r.status_code == 202, r.text


def test_a_huge_integer_against_a_fractional_multiple_of_is_no_server_error(
    hooked: tuple[LiveNode, str], tmp_path: Path
) -> None:
    """`multipleOf: 0.5` and an integer of 400 digits: jsonschema divides it as a float and
    raises OverflowError. The delivery must get an answer about its event (any integer is a
    multiple of 0.5: taken), not a 500."""
    live, key = hooked
    schema = {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 0.5}}}
    _deploy(live, tmp_path, "multiple-hook", _body_schema(schema))
    r = _send(live, key, "/multiple-hook", b'{"n": 1' + b"0" * 400 + b"}")
    assert r.status_code == 202, r.text
    r = _send(live, key, "/multiple-hook", b'{"n": 1.25}')
    assert r.status_code == 422, r.text


def test_a_redriven_event_is_checked_against_the_schema_it_now_runs_under(
    hooked: tuple[LiveNode, str], tmp_path: Path
) -> None:
    """An event queued while the function had no schema (its first version failed it: dead
    letter) is redriven after a version whose schema refuses it is deployed (the fix the
    operator deploys against that input): it must not reach the new handler; it is dead
    again with InvalidInput, and an event the schema takes still runs."""
    live, key = hooked
    _deploy(live, tmp_path, "redrive-hook", None, code=FAILING)
    r = _send(live, key, "/redrive-hook", b'{"cmd": "rm -rf /"}')
    assert r.status_code == 202, r.text
    evil = r.json()["id"]
    assert wait_for(live, evil)["status"] == "dead"
    schema = {"type": "object", "required": ["cmd"], "properties": {"cmd": {"enum": ["ls"]}}}
    _deploy(live, tmp_path, "redrive-hook", _body_schema(schema))
    with live.client() as c:
        assert c.post(f"/v1/dlq/{evil}/redrive").status_code == 200
    ended = wait_for(live, evil)
    assert ended["status"] == "dead", ended
    assert ended["error"]["type"] == "InvalidInput", ended
    r = _send(live, key, "/redrive-hook", b'{"cmd": "ls"}')
    assert r.status_code == 202, r.text
    assert wait_for(live, r.json()["id"])["status"] == "succeeded"
    assert [d["body"] for d in deliveries(live, "redrive-hook")] == [{"cmd": "ls"}]


def test_a_refused_delivery_leaks_nothing_to_the_audit_log_and_its_detail_is_bounded(
    hooked: tuple[LiveNode, str], tmp_path: Path
) -> None:
    """A delivery the schema refuses shows the sender what it sent (the 422 names the
    field); the audit log keeps none of the event's values, and the problem detail is
    bounded however large the refused value or the name of the failing field (what the
    node logs of a refused SQS or NOTIFY event: test_attack_log_leaks.py)."""
    live, key = hooked
    _deploy(live, tmp_path, "leak-hook", {"type": "array"})
    marker = "MARKER-" + secrets.token_hex(4)
    r = _send(live, key, "/leak-hook", json.dumps({"v": marker * 4000}).encode())
    assert r.status_code == 422, r.text
    assert len(r.json()["detail"]) < 1200
    integers = {"additionalProperties": {"type": "integer"}}
    _deploy(live, tmp_path, "leak-key-hook", _body_schema(integers))
    r = _send(live, key, "/leak-key-hook", json.dumps({marker * 8000: "one"}).encode())
    assert r.status_code == 422, r.text
    assert len(r.json()["detail"]) < 1200  # the failing field's pointer is bounded too
    with live.client() as c:
        records = c.get("/v1/audit", params={"n": 500}).text
    assert marker not in records


def test_a_refused_resend_gives_back_no_claim_it_did_not_take(
    hooked: tuple[LiveNode, str], tmp_path: Path
) -> None:
    """The 422 gives a delivery's replay claim back: an attacker who captured an accepted
    delivery resends its id with a body the schema refuses, hoping the refusal frees the
    id. The resend is a replay (401) before the schema is asked, and the captured delivery
    sent again verbatim is still a replay: it ran once."""
    live, key = hooked
    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
    _deploy(live, tmp_path, "claim-hook", _body_schema(schema))
    msg_id = f"msg_{secrets.token_hex(6)}"
    good = b'{"n": 1}'
    r = _send_as(live, key, "/claim-hook", good, msg_id)
    assert r.status_code == 202, r.text
    assert wait_for(live, r.json()["id"])["status"] == "succeeded"
    r = _send_as(live, key, "/claim-hook", b'{"n": "x"}', msg_id)
    assert r.status_code == 401, r.text
    r = _send_as(live, key, "/claim-hook", good, msg_id)
    assert r.status_code == 401, r.text
    assert [d["body"] for d in deliveries(live, "claim-hook")] == [{"n": 1}]


@pytest.mark.parametrize(
    "tags",
    [
        {"type": "array", "items": {"type": "integer"}},
        {"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "string"}]},
    ],
    ids=["items", "anyOf"],
)
def test_a_megabyte_of_wrong_items_does_not_stall_the_node(
    hooked: tuple[LiveNode, str], tmp_path: Path, tags: dict[str, Any]
) -> None:
    """Every item of a ~1 MB array is wrong (200,000 strings where the schema says integers;
    a plain `items`, and the same inside `anyOf`, which gathers its branches' errors). The
    check collected every error (a ValidationError each, ~640 MB, 6 s on the node's event
    loop) to name the first: it now stops after a few, and /healthz answers meanwhile. How
    many errors a refusal makes is counted in tests/gateway/test_events.py and
    tests/manifest/test_schema_keywords.py (no test here asserts a time)."""
    live, key = hooked
    name = f"wrong-{tags.get('type', 'anyof')}-hook"
    _deploy(live, tmp_path, name, _body_schema({"type": "object", "properties": {"tags": tags}}))
    body = json.dumps({"tags": ["a"] * 200_000}).encode()
    got = _send_asking_healthz(
        live, key, f"/{name}", body, timeout=60, healthz_timeout=30, settle_s=0.3
    )
    assert got.status_code == 422, got.text
    assert "/body/tags" in got.json()["detail"]
