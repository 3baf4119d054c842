"""`donjon key create/rotate --sigv4`: the printed SigV4 secret signs boto3's Lambda calls."""

from __future__ import annotations

import json

import boto3
from botocore.config import Config

from harness import LiveNode, run_cli


def _invoke(node: LiveNode, key_id: str, secret: str) -> int:
    client = boto3.client(
        "lambda",
        endpoint_url=node.url,
        region_name="us-east-1",
        verify=node.cert,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}),
    )
    try:
        answer = client.invoke(FunctionName="probe", Payload=b'{"op": "echo"}')
        answer["Payload"].close()  # unread, it keeps its connection out of the client's pool
        status: int = answer["StatusCode"]
    except client.exceptions.ClientError as e:
        status = e.response["ResponseMetadata"]["HTTPStatusCode"]
    finally:  # (its TLS socket, left to the garbage collector, failed a later test)
        client.close()
    return status


def test_sigv4_secret_is_printed_once_and_signs(node: LiveNode) -> None:
    """--sigv4 adds the secret (JSON, text); it signs; a rotation replaces it after the overlap."""
    env = node.env()
    created = json.loads(
        run_cli(env, "key", "create", "cli-sigv4", "--role", "invoker", "--sigv4", "--json").stdout
    )
    assert set(created) == {"id", "key", "sigv4_secret"}
    assert created["sigv4_secret"].startswith("djs_")
    assert _invoke(node, created["id"], created["sigv4_secret"]) == 200
    text = run_cli(env, "key", "rotate", created["id"], "--overlap", "0s", "--sigv4").stdout
    lines = text.strip().splitlines()
    assert lines[-1].startswith(f"dj_{created['id']}_")
    sigv4_line = next(line for line in lines if "aws_secret_access_key=" in line)
    assert f"aws_access_key_id={created['id']}" in sigv4_line
    rotated = sigv4_line.split("aws_secret_access_key=")[1].strip()
    assert rotated != created["sigv4_secret"]
    assert _invoke(node, created["id"], rotated) == 200
    assert _invoke(node, created["id"], created["sigv4_secret"]) == 401
    plain = json.loads(
        run_cli(env, "key", "create", "cli-plain", "--role", "invoker", "--json").stdout
    )
    assert set(plain) == {"id", "key"}  # shown only when asked for
