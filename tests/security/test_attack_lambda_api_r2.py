"""The Lambda Invoke API, second round: what the first round (test_attack_lambda_api.py) left,
with boto3's own client and signer and raw requests. Each attack is refused with a bare,
bounded answer, changes nothing and runs nothing."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from harness import LiveNode, fresh_source
from lambda_support import close_lambda_clients, lambda_client
from sec_support import assert_problem, audit_records

__all__ = ["close_lambda_clients"]  # the autouse fixture, used by name

ECHO = "lam2-echo"
PATH = "/2015-03-31/functions/{}/invocations"
REGION = "us-east-1"
#: The most a refusal's reason may hold, in the answer or its audit record.
REASON_BOUND = 1024


@pytest.fixture(scope="module")
def lam(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A function that echoes its event, and an invoker key to call it with."""
    root = tmp_path_factory.mktemp("lam2")
    (root / "donjon.yaml").write_text(
        f"name: {ECHO}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
    )
    (root / "main.py").write_text("def handler(event, context):\n    return {'got': event}\n")
    node.deploy(Path(root))
    with node.client() as c:
        r = c.post("/v1/keys", json={"name": "lam2-invoker", "role": "invoker"})
    assert r.status_code == 201, r.text
    key: dict[str, Any] = r.json()
    return key


def _lambda(node: LiveNode, key: dict[str, Any], **credentials: str) -> Any:
    """boto3's lambda client pointed at the node, trusting its CA, with no retries."""
    return lambda_client(node, key["id"], key["sigv4_secret"], REGION, **credentials)


def _invokes(node: LiveNode) -> int:
    """How many calls of ECHO the audit log holds."""
    with node.client() as c:
        r = c.get("/v1/audit", params={"n": 2000})
    assert r.status_code == 200, r.text
    return sum(
        1
        for rec in r.json()
        if rec["action"] == "function.invoke" and rec["target"].startswith(f"{ECHO}@")
    )


def test_session_token_is_refused(node: LiveNode, lam: dict[str, Any]) -> None:
    """A request carrying a session token (X-Amz-Security-Token) is a 401 that says session
    tokens are not accepted: Donjon issues none, so a token would be ignored, and a client
    handed temporary credentials must not take their expiry for a control."""
    assert _lambda(node, lam).invoke(FunctionName=ECHO)["StatusCode"] == 200
    before = _invokes(node)
    client = _lambda(node, lam, aws_session_token="FwoGZXIvYXdzE" + secrets.token_hex(16))
    with pytest.raises(ClientError) as caught:
        client.invoke(FunctionName=ECHO, Payload=b"{}")
    response: dict[str, Any] = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 401
    assert response["Error"]["Code"] == "UnrecognizedClientException"
    assert "session token" in response["Error"]["Message"]
    assert _invokes(node) == before  # nothing ran
    # Audited: from a new address, so that the denial is a record of its own (boto3's
    # above may fall in a window other files' denials from 127.0.0.1 opened).
    r = _unsigned_post(node, {"X-Amz-Security-Token": "FwoGZXIvYXdzE"})
    assert r.status_code == 401, r.text
    records = audit_records(node, r.headers["x-request-id"])
    assert [rec["action"] for rec in records] == ["auth.denied"], records
    assert "session token" in records[0]["detail"]["reason"]


def _unsigned_post(
    node: LiveNode, extra: dict[str, str], signed: str = "host;x-amz-date"
) -> httpx.Response:
    """POST, from a new client address, a request whose shape, date and scope pass (no
    secret needed) with `extra` headers, SignedHeaders `signed` and a signature by nobody."""
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {
        "X-Amz-Date": now,
        **extra,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={secrets.token_hex(8)}/{now[:8]}/"
        f"{REGION}/lambda/aws4_request, SignedHeaders={signed}, Signature={'0' * 64}",
    }
    with node.client("", source=fresh_source()) as c:
        return c.post(PATH.format(ECHO), content=b"{}", headers=headers)


def _unsigned_header_names() -> dict[str, str]:
    """Ninety `x-amz-*` headers of 500-character names, none of them signed."""
    return {f"x-amz-{i:02d}-" + "a" * 490: "1" for i in range(90)}


def _bogus_signed_names() -> str:
    """SignedHeaders naming 400 headers of 100 characters the request does not have."""
    names = ["host", "x-amz-date", *(f"z{i:03d}" + "z" * 96 for i in range(400))]
    return ";".join(sorted(names))


@pytest.mark.parametrize("attack", ["unsigned-x-amz-headers", "absent-signed-headers"])
def test_refusal_reason_is_bounded(node: LiveNode, lam: dict[str, Any], attack: str) -> None:
    """An unsigned request that names tens of KiB of header names (x-amz-* headers left
    unsigned, or SignedHeaders naming headers it lacks) is a 401 whose answer and audit
    record stay small: no key, no secret, and one request wrote a 42 KB audit record."""
    if attack == "unsigned-x-amz-headers":
        r = _unsigned_post(node, _unsigned_header_names())
    else:
        r = _unsigned_post(node, {}, signed=_bogus_signed_names())
    body = assert_problem(r, 401)
    assert len(r.content) < 4 * REASON_BOUND, len(r.content)  # detail and message
    assert "signed" in body["detail"]  # still says what is wrong
    records = audit_records(node, r.headers["x-request-id"])
    assert [rec["action"] for rec in records] == ["auth.denied"], records
    reason = records[0]["detail"]["reason"]
    assert "signed" in reason and len(reason) <= REASON_BOUND, len(reason)
    assert len(json.dumps(records[0])) < 2 * REASON_BOUND


def test_bounded_reason_still_names_the_header(node: LiveNode, lam: dict[str, Any]) -> None:
    """An X-Amz-Log-Type added to a request unsigned: the 401 still names that header."""
    r = _unsigned_post(node, {"X-Amz-Log-Type": "Tail"})
    body = assert_problem(r, 401)
    assert body["detail"].startswith("headers that must be signed are not: x-amz-log-type (")


def _version(node: LiveNode) -> str:
    """The version of ECHO serving now."""
    with node.client() as c:
        r = c.get(f"/v1/functions/{ECHO}")
    assert r.status_code == 200, r.text
    return str(r.json()["version"])


@pytest.mark.parametrize("how", ["qualifier", "name"])
def test_event_pinned_to_a_version_is_refused(
    node: LiveNode, lam: dict[str, Any], how: str
) -> None:
    """InvocationType Event pinned to a version (Qualifier=N, or FunctionName name:N) is a
    400 and nothing is queued: a queued event runs on the version serving when it is
    delivered, so a deploy meanwhile ran a caller's event pinned to version 2 on version 3."""
    version = _version(node)
    client = _lambda(node, lam)
    pinned = (
        {"FunctionName": ECHO, "Qualifier": version}
        if how == "qualifier"
        else {"FunctionName": f"{ECHO}:{version}"}
    )
    with pytest.raises(ClientError) as caught:
        client.invoke(InvocationType="Event", Payload=b'{"pinned": 1}', **pinned)
    response: dict[str, Any] = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == "InvalidRequestContentException"
    assert "$LATEST" in response["Error"]["Message"]
    assert audit_records(node, response["ResponseMetadata"]["RequestId"]) == []  # not queued
    # Unpinned ($LATEST, or no qualifier) is queued as before; a pinned sync call runs.
    for unpinned in ({"Qualifier": "$LATEST"}, {}):
        r = client.invoke(FunctionName=ECHO, InvocationType="Event", Payload=b"{}", **unpinned)
        assert r["StatusCode"] == 202
    assert client.invoke(InvocationType="RequestResponse", **pinned)["StatusCode"] == 200


def _auth_failures(node: LiveNode) -> dict[str, float]:
    """The node's `donjon_auth_failures_total`, by kind."""
    with node.client() as c:
        text = c.get("/metrics").text
    counts = {}
    for line in text.splitlines():
        if line.startswith("donjon_auth_failures_total{"):
            labels, _, value = line.rpartition(" ")
            counts[labels.split('"')[1]] = float(value)
    return counts


def test_unsigned_header_names_do_not_steer_the_failure_metric(
    node: LiveNode, lam: dict[str, Any]
) -> None:
    """An unsigned `X-Amz-Revoked-Key` header is counted as the invalid request it is: the
    header names a SigV4 refusal repeats are the sender's, and read as its kind they made
    anyone's requests count as revoked (or expired, ...) keys on the operators' dashboards."""
    before = _auth_failures(node)
    r = _unsigned_post(node, {"X-Amz-Revoked-Key": "1"})
    assert "x-amz-revoked-key" in assert_problem(r, 401)["detail"]
    after = _auth_failures(node)
    assert after["invalid"] == before["invalid"] + 1, (before, after)
    assert after["revoked"] == before["revoked"], (before, after)
