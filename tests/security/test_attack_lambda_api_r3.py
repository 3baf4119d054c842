"""The Lambda Invoke API, third round: what test_attack_lambda_api.py and its second round
left, with boto3's own client and raw requests. Each attack is refused, or bounded, and
changes nothing it should not."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from async_support import wait_for
from harness import LiveNode
from lambda_support import close_lambda_clients, lambda_client
from sec_support import audit_records

__all__ = ["close_lambda_clients"]  # the autouse fixture, used by name

ECHO = "lam3-echo"
LEAKER = "lam3-leaker"
QUARANTINED = "lam3-quarantined"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def lam(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A function that echoes its event and the CloudEvents source it was delivered from,
    and an invoker key to call it with."""
    root = tmp_path_factory.mktemp("lam3")
    (root / "donjon.yaml").write_text(
        f"name: {ECHO}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
    )
    (root / "main.py").write_text(
        "def handler(event, context):\n"
        "    source = (context.cloudevent or {}).get('source')\n"
        "    return {'got': event, 'source': source}\n"
    )
    node.deploy(Path(root))
    key: dict[str, Any] = node.create_key("lam3-invoker", "invoker")
    return key


def _lambda(node: LiveNode, key: dict[str, Any]) -> Any:
    """boto3's lambda client pointed at the node, trusting its CA, with no retries."""
    return lambda_client(node, key["id"], key["sigv4_secret"], REGION)


def test_event_source_is_the_functions_path_not_the_callers_arn(
    node: LiveNode, lam: dict[str, Any]
) -> None:
    """An Event whose FunctionName is an ARN with a 3,000-character account holding a NUL is
    queued with the function's own path as its source: the caller's text went whole into
    the queue row (a 512-character column, which PostgreSQL enforces and whose text takes
    no NUL) and reached the function as the event's CloudEvents source."""
    arn = f"arn:aws:lambda:{REGION}:{'9' * 3000}\x00:function:{ECHO}"
    r = _lambda(node, lam).invoke(FunctionName=arn, InvocationType="Event", Payload=b'{"n": 1}')
    assert r["StatusCode"] == 202
    invocation_id = r["ResponseMetadata"]["HTTPHeaders"]["x-donjon-invocation-id"]
    done = wait_for(node, invocation_id, key=lam["key"])
    assert done["status"] == "succeeded", done
    assert done["result"] == {
        "got": {"n": 1},
        "source": f"/2015-03-31/functions/{ECHO}/invocations",
    }


def test_client_context_nested_too_deep_is_audited(node: LiveNode, lam: dict[str, Any]) -> None:
    """An X-Amz-Client-Context nested 200 deep is a 400 and an `input.refused` record, as
    an event nested too deep is: it was refused with no record, so nesting probes sent
    there left no trace where the same probe in the payload did."""
    deep = b'{"custom": {"x": ' + b"[" * 200 + b"]" * 200 + b"}}"
    with pytest.raises(ClientError) as caught:
        _lambda(node, lam).invoke(
            FunctionName=ECHO, Payload=b"{}", ClientContext=base64.b64encode(deep).decode()
        )
    response: dict[str, Any] = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "X-Amz-Client-Context" in response["Error"]["Message"]
    records = audit_records(node, response["ResponseMetadata"]["RequestId"])
    assert [(r["action"], r["actor"]) for r in records] == [
        ("input.refused", f"key:{lam['id']}")
    ], records


def test_log_tail_has_no_url_encoded_secret(
    node: LiveNode, lam: dict[str, Any], tmp_path: Path
) -> None:
    """A function that logs a URL or form holding its secret (`urlencode`, `quote`, as an
    HTTP library's debug log prints the URL it fetches) has it redacted in the log tail a
    log reader gets (X-Amz-Log-Result) and in its stored log: the value's percent-encoded
    forms went out in the clear, only the value, its repr and JSON forms were known."""
    value = "Zx9+q/Lm3=" + secrets.token_hex(6) + "&V w!"
    with node.client() as c:
        assert c.post("/v1/secrets/lam3-tok", json={"value": value}).status_code == 201
    (tmp_path / "donjon.yaml").write_text(
        f"name: {LEAKER}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
        "permissions: {secrets: [lam3-tok]}\n"
    )
    (tmp_path / "main.py").write_text(
        "import urllib.parse\n"
        "def handler(event, context):\n"
        "    v = context.secrets['lam3-tok']\n"
        "    print('GET /api?' + urllib.parse.urlencode({'key': v}))\n"
        "    print('GET /api/' + urllib.parse.quote(v, safe=''))\n"
        "    print('GET /' + urllib.parse.quote(v))\n"
        "    return {'ok': True}\n"
    )
    node.deploy(tmp_path)
    admin = node.create_key("lam3-admin", "admin")
    r = lambda_client(node, admin["id"], admin["sigv4_secret"], REGION).invoke(
        FunctionName=LEAKER, LogType="Tail"
    )
    assert r["StatusCode"] == 200 and "FunctionError" not in r
    tail = base64.b64decode(r["LogResult"]).decode()
    with node.client() as c:
        (entry,) = c.get(f"/v1/functions/{LEAKER}/logs").json()
    hidden = value.split("=")[1][:12]  # the random part, in every form
    for text in (tail, entry["output"]):
        assert hidden not in text, text
        assert text.count("[secret:lam3-tok]") == 3, text


def test_dry_run_of_a_quarantined_function_is_refused(
    node: LiveNode, lam: dict[str, Any], tmp_path: Path
) -> None:
    """DryRun of a quarantined function is the 503 every way into it answers: it said 204
    (the call would be taken) for a function the monitor or an admin had stopped."""
    (tmp_path / "donjon.yaml").write_text(
        f"name: {QUARANTINED}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
    )
    (tmp_path / "main.py").write_text("def handler(event, context):\n    return {}\n")
    node.deploy(tmp_path)
    client = _lambda(node, lam)
    assert client.invoke(FunctionName=QUARANTINED, InvocationType="DryRun")["StatusCode"] == 204
    with node.client() as c:
        r = c.post(f"/v1/functions/{QUARANTINED}/quarantine", json={"reason": "review"})
    assert r.status_code == 201, r.text
    for invocation in ("DryRun", "RequestResponse"):
        with pytest.raises(ClientError) as caught:
            client.invoke(FunctionName=QUARANTINED, InvocationType=invocation)
        response: dict[str, Any] = caught.value.response
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 503, (invocation, response)
        assert "quarantined" in response["Error"]["Message"], (invocation, response)
    with node.client() as c:
        assert c.post(f"/v1/functions/{QUARANTINED}/release").status_code == 200
    assert client.invoke(FunctionName=QUARANTINED, InvocationType="DryRun")["StatusCode"] == 204
