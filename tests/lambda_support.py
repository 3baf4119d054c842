"""boto3's lambda client pointed at a live node, closed after each test.

A client left open keeps its TLS connection until the collector finds it, and the
ResourceWarning that raises then fails whichever test is running (the suite turns
warnings into errors): `lambda_client` registers each client, `close_lambda_clients`
(an autouse fixture in the files that use it) closes them after each test, and the
Invoke answers' Payloads: a payload left unread holds its connection out of the client's
pool, so closing the client did not close it (ci61b: a TLS socket made at an unread
`invoke` of test_attack_lambda_api_r2.py failed another file's set-up).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from harness import LiveNode

__all__ = ["close_lambda_clients", "lambda_client"]

_OPEN: list[Any] = []
#: The Invoke answers' streaming Payloads since the last test ended.
_PAYLOADS: list[Any] = []


def _keep_payload(parsed: dict[str, Any], **_: Any) -> None:
    """botocore's after-call event: note an answer's streaming Payload, to close it."""
    if "Payload" in parsed:
        _PAYLOADS.append(parsed["Payload"])


def lambda_client(node: LiveNode, key_id: str, secret: str, region: str, **credentials: str) -> Any:
    """boto3's lambda client pointed at `node`, trusting its CA, with no retries."""
    client = boto3.client(
        "lambda",
        endpoint_url=node.url,
        region_name=region,
        verify=node.cert,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}, read_timeout=60, connect_timeout=10),
        **credentials,
    )
    client.meta.events.register("after-call.lambda.Invoke", _keep_payload)
    _OPEN.append(client)
    return client


@pytest.fixture(autouse=True)
def close_lambda_clients() -> Iterator[None]:
    """Close the clients a test made, and their answers' payloads, once it ends."""
    yield
    while _PAYLOADS:
        _PAYLOADS.pop().close()
    while _OPEN:
        _OPEN.pop().close()
