"""The Lambda Invoke API with boto3's own client and signer: the good path, then one forged,
stale, misdirected or stolen-and-altered request per test. Each is refused before anything
runs, with a 401 that names the SigV4 scheme, and audited."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import time
from pathlib import Path
from typing import Any
from unittest import mock

import botocore.auth
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from async_support import wait_for
from donjon.manifest.model import Manifest
from harness import LiveNode, fresh_source
from lambda_support import close_lambda_clients, lambda_client
from sec_support import assert_problem, audit_records

__all__ = ["close_lambda_clients"]  # the autouse fixture, used by name

ECHO = "lam-echo"
FAIL = "lam-fail"
PATH = "/2015-03-31/functions/{}/invocations"
REGION = "us-east-1"


def _function(root: Path, name: str, code: str, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n{extra}"
    )
    (root / "main.py").write_text(code)
    return root


@pytest.fixture(scope="module")
def lam(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two functions (one echoes, one fails naming its secret) and keys to call them with."""
    root = tmp_path_factory.mktemp("lam")
    token = "lam-secret-" + secrets.token_hex(8)
    with node.client() as c:
        assert c.post("/v1/secrets/lam-token", json={"value": token}).status_code == 201
    node.deploy(
        _function(
            root / "echo",
            ECHO,
            "def handler(event, context):\n"
            "    print('echo log line', event)\n"
            "    return {'got': event}\n",
        )
    )
    node.deploy(
        _function(
            root / "fail",
            FAIL,
            "def handler(event, context):\n"
            "    token = context.secrets['lam-token']\n"
            "    print('failing with', token)\n"
            "    raise ValueError(f'bad token {token} in /fn/conf/settings.ini')\n",
            "permissions: {secrets: [lam-token]}\n",
        )
    )
    return {
        "token": token,
        "admin": _key(node, "lam-admin", "admin"),
        "invoker": _key(node, "lam-invoker", "invoker"),
    }


def _key(node: LiveNode, name: str, role: str, **extra: Any) -> dict[str, Any]:
    with node.client() as c:
        r = c.post("/v1/keys", json={"name": name, "role": role, **extra})
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def _lambda(node: LiveNode, key_id: str, secret: str, region: str = REGION) -> Any:
    """boto3's lambda client pointed at the node, trusting its CA, with no retries."""
    return lambda_client(node, key_id, secret, region)


def _signed(
    node: LiveNode,
    key: dict[str, Any],
    body: bytes,
    *,
    name: str = ECHO,
    service: str = "lambda",
    when: dt.datetime | None = None,
) -> dict[str, str]:
    """Headers botocore's SigV4 signer gives a POST of `body` to `name`'s invocations."""
    request = AWSRequest(method="POST", url=node.url + PATH.format(name), data=body)
    signer = botocore.auth.SigV4Auth(Credentials(key["id"], key["sigv4_secret"]), service, REGION)
    if when is None:
        signer.add_auth(request)
    else:
        with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
            signer.add_auth(request)
    return dict(request.headers.items())


def _post(node: LiveNode, headers: dict[str, str], body: bytes, name: str = ECHO) -> httpx.Response:
    """POST as a new client address, so a refusal is an audit record of its own."""
    with node.client("", source=fresh_source()) as c:
        return c.post(PATH.format(name), content=body, headers=headers)


def _refused(node: LiveNode, r: httpx.Response, reason: str) -> None:
    """A bare 401 with the SigV4 challenge; audited with `reason`; the function never ran."""
    body = assert_problem(r, 401)
    assert r.headers["www-authenticate"].startswith("AWS4-HMAC-SHA256")
    assert r.headers["x-amzn-errortype"] == "UnrecognizedClientException"
    assert body["title"] == "Unauthorized" and body["request_id"] == r.headers["x-request-id"]
    records = audit_records(node, r.headers["x-request-id"])
    assert [rec["action"] for rec in records] == ["auth.denied"], records
    assert reason in records[0]["detail"]["reason"], records


def _boto_refused(call: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call()
    response: dict[str, Any] = caught.value.response
    return response


def test_boto3_invokes_a_function_as_lambda(node: LiveNode, lam: dict[str, Any]) -> None:
    """Payload in and out, the executed version, the log tail: as Lambda answers, and audited."""
    admin = lam["admin"]
    client = _lambda(node, admin["id"], admin["sigv4_secret"])
    r = client.invoke(FunctionName=ECHO, Payload=json.dumps({"n": 7}), LogType="Tail")
    assert r["StatusCode"] == 200 and "FunctionError" not in r
    assert json.loads(r["Payload"].read()) == {"got": {"n": 7}}
    assert r["ExecutedVersion"] == "1"
    assert "echo log line {'n': 7}" in base64.b64decode(r["LogResult"]).decode()
    request_id = r["ResponseMetadata"]["RequestId"]
    (record,) = audit_records(node, request_id)
    assert record["action"] == "function.invoke" and record["outcome"] == "ok"
    assert record["actor"] == f"key:{admin['id']}" and record["detail"]["trigger"] == "lambda"
    # The ARN form and $LATEST name the same function.
    arn = f"arn:aws:lambda:{REGION}:000000000000:function:{ECHO}"
    again = client.invoke(FunctionName=arn, Qualifier="$LATEST", Payload=b"{}")
    assert json.loads(again["Payload"].read()) == {"got": {}}


def test_wrong_signature_is_refused(node: LiveNode, lam: dict[str, Any]) -> None:
    """A request whose signature was altered (one hex digit) is a 401."""
    headers = _signed(node, lam["invoker"], b"{}")
    auth = headers["Authorization"]
    flipped = "0" if auth[-1] != "0" else "1"
    headers["Authorization"] = auth[:-1] + flipped
    _refused(node, _post(node, headers, b"{}"), "the signature does not match")


def test_wrong_secret_is_refused(node: LiveNode, lam: dict[str, Any]) -> None:
    """Signing with the bearer key (or any other string) as the secret is a 401."""
    invoker = lam["invoker"]
    for secret in (invoker["key"], "djs_" + secrets.token_urlsafe(32)):
        response = _boto_refused(
            lambda s=secret: _lambda(node, invoker["id"], s).invoke(FunctionName=ECHO)
        )
        assert response["Error"]["Code"] == "UnrecognizedClientException"
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 401


@pytest.mark.parametrize("minutes", [-20, 20], ids=["expired-date", "future-date"])
def test_date_beyond_15_minutes_is_refused(
    node: LiveNode, lam: dict[str, Any], minutes: int
) -> None:
    """A signature dated 20 minutes in the past (a stale capture) or future is a 401."""
    when = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
    headers = _signed(node, lam["invoker"], b"{}", when=when)
    r = _post(node, headers, b"{}")
    _refused(node, r, "X-Amz-Date")
    assert "X-Amz-Date" in r.json()["detail"]  # not a secret: the caller is told


def test_wrong_region_is_refused(node: LiveNode, lam: dict[str, Any]) -> None:
    """A signature scoped to another region than the node's is a 401 that says so."""
    invoker = lam["invoker"]
    client = _lambda(node, invoker["id"], invoker["sigv4_secret"], region="eu-west-1")
    response = _boto_refused(lambda: client.invoke(FunctionName=ECHO))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 401
    assert "region" in response["Error"]["Message"]


def test_wrong_service_is_refused(node: LiveNode, lam: dict[str, Any]) -> None:
    """A signature made for another service (s3) with the right secret is a 401."""
    headers = _signed(node, lam["invoker"], b"{}", service="s3")
    _refused(node, _post(node, headers, b"{}"), "service is not lambda")


def test_revoked_key_is_refused(node: LiveNode, lam: dict[str, Any]) -> None:
    """A key's SigV4 secret stops working on the next request after the key is revoked."""
    key = _key(node, "lam-revoked", "invoker")
    client = _lambda(node, key["id"], key["sigv4_secret"])
    assert client.invoke(FunctionName=ECHO)["StatusCode"] == 200
    with node.client() as c:
        assert c.delete(f"/v1/keys/{key['id']}").status_code == 204
    headers = _signed(node, key, b"{}")
    _refused(node, _post(node, headers, b"{}"), "revoked key")


def test_expired_key_is_refused(node: LiveNode, lam: dict[str, Any]) -> None:
    """A key past its expiry gets a 401 by SigV4 as by bearer."""
    key = _key(node, "lam-expiring", "invoker", expires_in_s=1)
    deadline = time.monotonic() + 60
    headers = _signed(node, key, b"{}")
    r = _post(node, headers, b"{}")
    while r.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)  # waiting for the key's expiry, a condition, re-checked
        headers = _signed(node, key, b"{}")
        r = _post(node, headers, b"{}")
    _refused(node, r, "expired key")


def test_replayed_signature_with_changed_payload_is_refused(
    node: LiveNode, lam: dict[str, Any]
) -> None:
    """Captured headers replayed with another body fail: the payload's hash is signed."""
    original = b'{"amount": 1}'
    headers = _signed(node, lam["invoker"], original)
    assert _post(node, headers, original).json() == {"got": {"amount": 1}}
    _refused(node, _post(node, headers, b'{"amount": 1000}'), "the signature does not match")


def test_added_unsigned_log_type_is_refused(node: LiveNode, lam: dict[str, Any]) -> None:
    """An X-Amz-Log-Type header added to a captured request (not signed) is a 401."""
    headers = _signed(node, lam["invoker"], b"{}")
    headers["X-Amz-Log-Type"] = "Tail"
    _refused(node, _post(node, headers, b"{}"), "must be signed")


def test_anonymous_request_is_refused(node: LiveNode, lam: dict[str, Any]) -> None:
    """No Authorization header: the same bare 401 as every other route, and nothing runs."""
    r = _post(node, {}, b"{}")
    _refused(node, r, "missing credentials")
    assert r.json()["detail"] == "missing, invalid or revoked credentials"


def test_bearer_key_is_not_a_sigv4_credential(node: LiveNode, lam: dict[str, Any]) -> None:
    """The Lambda route takes SigV4 only: a valid bearer key there is a 401."""
    headers = {"Authorization": f"Bearer {lam['admin']['key']}"}
    _refused(node, _post(node, headers, b"{}"), "algorithm")


def test_key_limited_to_other_functions_is_forbidden(node: LiveNode, lam: dict[str, Any]) -> None:
    """The same policy decides: a key limited to lam-fail may not invoke lam-echo (403)."""
    key = _key(node, "lam-limited", "invoker", functions=[FAIL])
    client = _lambda(node, key["id"], key["sigv4_secret"])
    response = _boto_refused(lambda: client.invoke(FunctionName=ECHO))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert response["Error"]["Code"] == "AccessDeniedException"
    request_id = response["ResponseMetadata"]["RequestId"]
    assert [r["action"] for r in audit_records(node, request_id)] == ["authz.denied"]


def test_function_error_detail_only_for_log_readers(node: LiveNode, lam: dict[str, Any]) -> None:
    """A failed call: Unhandled for all; errorType/errorMessage (redacted, no path) and the log
    tail for a key that may read logs; the request id alone for a plain invoker."""
    admin, invoker = lam["admin"], lam["invoker"]
    r = _lambda(node, admin["id"], admin["sigv4_secret"]).invoke(
        FunctionName=FAIL, Payload=b"{}", LogType="Tail"
    )
    assert r["StatusCode"] == 200 and r["FunctionError"] == "Unhandled"
    body = json.loads(r["Payload"].read())
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"].startswith("bad token ") and "settings.ini" in body["errorMessage"]
    assert "/fn/" not in json.dumps(body) and "Traceback" not in json.dumps(body)
    tail = base64.b64decode(r["LogResult"]).decode()
    assert "failing with" in tail
    for text in (json.dumps(body), tail):
        assert lam["token"] not in text
    r = _lambda(node, invoker["id"], invoker["sigv4_secret"]).invoke(
        FunctionName=FAIL, Payload=b"{}", LogType="Tail"
    )
    assert r["FunctionError"] == "Unhandled" and "LogResult" not in r
    body = json.loads(r["Payload"].read())
    assert set(body) == {"errorMessage", "requestId"}
    assert "ValueError" not in json.dumps(body) and "token" not in json.dumps(body)
    assert body["requestId"] == r["ResponseMetadata"]["RequestId"]


def test_dry_run_checks_without_running(node: LiveNode, lam: dict[str, Any]) -> None:
    """DryRun: 204 for a caller who may invoke, and no call is made or audited."""
    invoker = lam["invoker"]
    r = _lambda(node, invoker["id"], invoker["sigv4_secret"]).invoke(
        FunctionName=ECHO, InvocationType="DryRun"
    )
    assert r["StatusCode"] == 204
    assert audit_records(node, r["ResponseMetadata"]["RequestId"]) == []


def test_event_invocation_is_queued_and_runs(node: LiveNode, lam: dict[str, Any]) -> None:
    """InvocationType Event: 202 once the event is queued (durably); it then runs, as Lambda."""
    invoker = lam["invoker"]
    client = _lambda(node, invoker["id"], invoker["sigv4_secret"])
    r = client.invoke(FunctionName=ECHO, InvocationType="Event", Payload=b'{"async": 1}')
    assert r["StatusCode"] == 202
    headers = r["ResponseMetadata"]["HTTPHeaders"]
    invocation_id = headers["x-donjon-invocation-id"]
    done = wait_for(node, invocation_id)
    assert done["status"] == "succeeded"
    assert done["attempts"] == 1


def test_lambda_call_records_the_callers_address(node: LiveNode, lam: dict[str, Any]) -> None:
    """A Lambda API call's record names its caller's address, as an invoke's does: the
    monitor's first-seen sources see a stolen SigV4 secret used from a new network."""
    source = fresh_source()
    headers = _signed(node, lam["invoker"], b"{}")
    with node.client("", source=source) as c:
        r = c.post(PATH.format(ECHO), content=b"{}", headers=headers)
    assert r.status_code == 200, r.text
    (record,) = audit_records(node, r.headers["x-amzn-requestid"])
    assert record["action"] == "function.invoke" and record["detail"]["trigger"] == "lambda"
    assert record["detail"].get("client") == source, record


def test_event_call_is_on_record_under_its_request(node: LiveNode, lam: dict[str, Any]) -> None:
    """An Event call's request id (the 202's) names its `invocation.enqueue` record, which
    holds the caller's address: a call queued with a stolen secret is traced to its source."""
    source = fresh_source()
    signer = botocore.auth.SigV4Auth(
        Credentials(lam["invoker"]["id"], lam["invoker"]["sigv4_secret"]), "lambda", REGION
    )
    request = AWSRequest(
        method="POST",
        url=node.url + PATH.format(ECHO),
        data=b"{}",
        headers={"X-Amz-Invocation-Type": "Event"},
    )
    signer.add_auth(request)
    with node.client("", source=source) as c:
        r = c.post(PATH.format(ECHO), content=b"{}", headers=dict(request.headers.items()))
    assert r.status_code == 202, r.text
    records = audit_records(node, r.headers["x-amzn-requestid"])
    assert [rec["action"] for rec in records] == ["invocation.enqueue"], records
    assert records[0]["detail"]["invocation_id"] == r.headers["x-donjon-invocation-id"]
    assert records[0]["detail"].get("client") == source, records


def test_unsigned_body_is_bounded_by_the_largest_function_limit(
    node: LiveNode, lam: dict[str, Any]
) -> None:
    """A request that passes the checks needing no secret (shape, date, scope) but is signed
    by nobody is read no further than the largest event any deployed function takes (not
    the node's 6 MiB): 413, refused before its key is looked at."""
    with node.client() as c:
        listed = c.get("/v1/functions").json()
    largest = max(Manifest.model_validate(f["manifest"]).limits.body_bytes for f in listed)
    assert largest < 6 * 1024 * 1024, "a function takes the node's maximum: nothing to bound"
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {
        "Authorization": f"AWS4-HMAC-SHA256 Credential={secrets.token_hex(8)}/{now[:8]}/"
        f"{REGION}/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature={'0' * 64}",
        "X-Amz-Date": now,
    }
    r = _post(node, headers, b"x" * (largest + 1))
    assert r.status_code == 413, r.text
    assert r.headers["x-amzn-errortype"] == "RequestTooLargeException"
    assert audit_records(node, r.headers["x-request-id"]) == []  # no key was looked at
    # A body any function takes is still read, and the forged signature then refused.
    _refused(node, _post(node, headers, b"x" * largest), "sigv4: invalid credentials")
