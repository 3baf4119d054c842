"""The Lambda Invoke API, second round: what the first round (test_attack_lambda_api.py) left,
with boto3's own client and signer and raw requests. Each attack is refused with a bare,
bounded answer, changes nothing and runs nothing."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from harness import LiveNode
from sec_support import audit_records

ECHO = "lam2-echo"
PATH = "/2015-03-31/functions/{}/invocations"
REGION = "us-east-1"


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
    return boto3.client(
        "lambda",
        endpoint_url=node.url,
        region_name=REGION,
        verify=node.cert,
        aws_access_key_id=key["id"],
        aws_secret_access_key=key["sigv4_secret"],
        config=Config(retries={"total_max_attempts": 1}, read_timeout=60, connect_timeout=10),
        **credentials,
    )


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
    request_id = response["ResponseMetadata"]["RequestId"]
    records = audit_records(node, request_id)
    assert [rec["action"] for rec in records] == ["auth.denied"], records
    assert "session token" in records[0]["detail"]["reason"]
    assert _invokes(node) == before  # nothing ran
