"""`X-Amz-Client-Context` through the Lambda Invoke API (gateway/lambda_api.py): boto3's
`ClientContext` reaches the handler as `context.client_context`, as in Lambda's Python
runtime; a malformed one is a 400 before anything runs; an async (`Event`) invocation
does not carry it, as in Lambda."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from async_support import wait_for
from donjon.gateway.errors import BadRequest
from donjon.gateway.lambda_api import MAX_CLIENT_CONTEXT, client_context
from harness import LiveNode

NAME = "lam-ctx"
PATH = f"/2015-03-31/functions/{NAME}/invocations"
HANDLER = """
def handler(event, context):
    print("ran", event.get("n"))
    cc = context.client_context
    if cc is None:
        return {"client_context": None}
    client = None
    if cc.client is not None:
        client = {
            name: getattr(cc.client, name)
            for name in ("installation_id", "app_title", "app_version_name",
                         "app_version_code", "app_package_name")
        }
    return {"client_context": {"client": client, "custom": cc.custom, "env": cc.env}}
"""
SENT = {
    "client": {"installation_id": "inst-1", "app_title": "Ledger", "app_version_code": "42"},
    "custom": {"tenant": "acme", "depth": {"a": [1, 2]}},
    "env": {"platform": "Android", "locale": "en_GB"},
}


def _b64(value: object) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


@pytest.fixture(scope="module")
def invoker(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The function deployed, and a key that may invoke it."""
    root: Path = tmp_path_factory.mktemp("lamctx")
    (root / "donjon.yaml").write_text(
        f"name: {NAME}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
    )
    (root / "main.py").write_text(HANDLER)
    node.deploy(root)
    with node.client() as c:
        r = c.post("/v1/keys", json={"name": "lam-ctx-invoker", "role": "admin"})
    assert r.status_code == 201, r.text
    key: dict[str, Any] = r.json()
    return key


@pytest.fixture
def lam(node: LiveNode, invoker: dict[str, Any]) -> Iterator[Any]:
    """boto3's lambda client for the node, closed after each test (with its connections)."""
    client = boto3.client(
        "lambda",
        endpoint_url=node.url,
        region_name="us-east-1",
        verify=node.cert,
        aws_access_key_id=invoker["id"],
        aws_secret_access_key=invoker["sigv4_secret"],
        config=Config(retries={"total_max_attempts": 1}, read_timeout=60, connect_timeout=10),
    )
    yield client
    client.close()


def _calls(node: LiveNode) -> int:
    """How many times the function has run (its log lines "ran ...")."""
    with node.client() as c:
        r = c.get(f"/v1/functions/{NAME}/logs", params={"n": 500})
    assert r.status_code == 200, r.text
    return r.text.count("ran ")


def test_the_client_context_reaches_the_handler(lam: Any) -> None:
    r = lam.invoke(FunctionName=NAME, Payload=b'{"n": 1}', ClientContext=_b64(SENT))
    assert r["StatusCode"] == 200 and "FunctionError" not in r, r
    got = json.loads(r["Payload"].read())["client_context"]
    assert got == {
        "client": {
            "installation_id": "inst-1",
            "app_title": "Ledger",
            "app_version_name": None,
            "app_version_code": "42",
            "app_package_name": None,
        },
        "custom": SENT["custom"],
        "env": SENT["env"],
    }
    # Members left out are None; so is the whole without the header.
    only = lam.invoke(FunctionName=NAME, Payload=b"{}", ClientContext=_b64({"custom": {}}))
    assert json.loads(only["Payload"].read())["client_context"] == {
        "client": None,
        "custom": {},
        "env": None,
    }
    plain = lam.invoke(FunctionName=NAME, Payload=b"{}")
    assert json.loads(plain["Payload"].read()) == {"client_context": None}


def _invoke_raw(
    node: LiveNode, key: dict[str, Any], header: str, invocation: str = "RequestResponse"
) -> httpx.Response:
    """A Lambda Invoke request carrying `header` as X-Amz-Client-Context, signed as botocore
    signs it (boto3 itself refuses nothing here; httpx closes its connection)."""
    body = b'{"n": 2}'
    headers = {"X-Amz-Client-Context": header, "X-Amz-Invocation-Type": invocation}
    request = AWSRequest(method="POST", url=node.url + PATH, data=body, headers=headers)
    credentials = Credentials(key["id"], key["sigv4_secret"])
    botocore.auth.SigV4Auth(credentials, "lambda", "us-east-1").add_auth(request)
    with node.client("") as c:
        return c.post(PATH, content=body, headers=dict(request.headers.items()))


@pytest.mark.parametrize(
    "header",
    [
        "not base64!",
        base64.b64encode(b"not json").decode(),
        _b64([1, 2]),  # not an object
        _b64({"custom": "a string"}),  # a member not an object
        _b64({"env": [1]}),
        _b64({"custom": {"x": 1}}).rstrip("=") + "A",  # bad padding
        base64.b64encode(b'{"custom": {"x": NaN}}').decode(),
        base64.b64encode(b'{"custom": ' + b"[" * 200 + b"]" * 200 + b"}").decode(),
        _b64({"custom": {"pad": "x" * MAX_CLIENT_CONTEXT}}),  # too long
    ],
)
def test_a_malformed_client_context_is_refused_before_the_call(
    node: LiveNode, invoker: dict[str, Any], header: str
) -> None:
    before = _calls(node)
    r = _invoke_raw(node, invoker, header)
    assert r.status_code == 400, r.text
    assert r.headers["x-amzn-errortype"] == "InvalidRequestContentException"
    assert "X-Amz-Client-Context" in r.json()["message"]
    assert _calls(node) == before  # nothing ran


def test_an_event_invocation_checks_it_and_does_not_carry_it(
    node: LiveNode, invoker: dict[str, Any], lam: Any
) -> None:
    """Lambda passes the client context to synchronous calls only; an Event invocation's
    header is still checked (a bad one is the same 400), and it is queued (202)."""
    r = lam.invoke(FunctionName=NAME, InvocationType="Event", ClientContext=_b64(SENT))
    r["Payload"].close()  # unread, it keeps its connection out of the pool the client closes
    assert r["StatusCode"] == 202
    invocation_id = r["ResponseMetadata"]["HTTPHeaders"]["x-donjon-invocation-id"]
    done = wait_for(node, invocation_id)
    assert done["status"] == "succeeded", done
    assert done["result"] == {"client_context": None}  # the delivery does not carry it
    assert _invoke_raw(node, invoker, "%%%", "Event").status_code == 400


def test_the_parser_keeps_only_the_three_members() -> None:
    assert client_context(None) is None
    assert client_context(_b64({"custom": {"a": 1}, "other": 5})) == {
        "client": None,
        "custom": {"a": 1},
        "env": None,
    }
    with pytest.raises(BadRequest):
        client_context(_b64(None))
