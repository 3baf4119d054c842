"""Attack: an SQS trigger's `endpoint_url` that the node's address check and botocore
read as two different hosts.

A trigger's settings come from a secret a developer writes, and the node dials the
endpoint itself, so its host is held to the egress address rules (source_address.py)
before every receive. The check read the URL with `urllib.parse.urlsplit`; botocore
sends it through urllib3, whose parser ends the authority at a backslash where
urlsplit does not. `http://127.0.0.1:PORT\\@93.184.216.34/` was checked as the public
93.184.216.34 and dialled as 127.0.0.1:PORT: the node's own loopback services, or any
internal address, for whoever may write a secret. Such URLs are refused now, before
anything is dialled, and the outage record says why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from donjon.audit import AuditEvent
from donjon.triggers.source_address import SourceAddressRefused, check_url
from poller_support import run_poller
from sec_support import Listener

PUBLIC = "93.184.216.34"  # a globally routable literal: the check needs no DNS


@pytest.fixture
def listener() -> Iterator[Listener]:
    service = Listener()
    try:
        yield service
    finally:
        service.close()


def _poll(endpoint: str, listener: Listener) -> list[AuditEvent]:
    """Run a real poller with `endpoint` until it reached the listener or failed once."""
    return run_poller(endpoint, lambda poller: bool(listener.accepted or poller.health.failures))


def test_a_backslash_in_the_endpoint_cannot_send_the_poller_to_loopback(
    listener: Listener,
) -> None:
    """`http://127.0.0.1:PORT\\@PUBLIC/`: never dialled; one outage record names the refusal."""
    records = _poll(f"http://127.0.0.1:{listener.port}\\@{PUBLIC}/", listener)
    assert listener.accepted == 0
    [outage] = [r for r in records if r.action == "trigger.source.unavailable"]
    assert "endpoint_url" in outage.detail["reason"], outage.detail


@pytest.mark.parametrize(
    "url",
    [
        f"http://127.0.0.1:9324\\@{PUBLIC}/",
        f"https://10.0.0.1\\@{PUBLIC}:443/queue",
        f"http://{PUBLIC}\\@127.0.0.1/",
        f"http://user:pw@{PUBLIC}/",
        f"http://{PUBLIC}/path\\x",
        f"ftp://{PUBLIC}/",
    ],
)
def test_an_endpoint_read_two_ways_is_refused(url: str) -> None:
    """User information, a backslash anywhere, or a scheme other than http(s): refused."""
    with pytest.raises(SourceAddressRefused, match="endpoint"):
        asyncio.run(check_url(url, (), "the endpoint_url in secret queue"))


@pytest.mark.parametrize(
    "url", [f"http://{PUBLIC}:9324/", f"https://{PUBLIC}", "https://[2606:2800:220:1::]:443/q"]
)
def test_a_plain_endpoint_still_passes(url: str) -> None:
    """A host and port, with or without a path: checked as before."""
    asyncio.run(check_url(url, (), "the endpoint_url in secret queue"))
