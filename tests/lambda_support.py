"""boto3's lambda client pointed at a live node, closed after each test.

A client left open keeps its TLS connection until the collector finds it, and the
ResourceWarning that raises then fails whichever test is running (the suite turns
warnings into errors): `lambda_client` registers each client, `close_lambda_clients`
(an autouse fixture in the files that use it) closes them after each test.
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
    _OPEN.append(client)
    return client


@pytest.fixture(autouse=True)
def close_lambda_clients() -> Iterator[None]:
    """Close the clients a test made once it ends."""
    yield
    while _OPEN:
        _OPEN.pop().close()
