"""The egress proxy's log lines carry the request id of the call a connection names."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from donjon.obs import bind_request_id, clear_log_context, configure_logging
from egress_support import API, OTHER, ProxyRig, raw_request, rig

pytestmark = pytest.mark.slow  # a real proxy and upstream servers on loopback


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging(json=True, stream=stream, level="info")
    try:
        yield stream
    finally:
        clear_log_context()
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[ProxyRig]:
    with rig(tmp_path) as r:
        yield r


def test_refused_connection_line_names_the_call_not_the_sandbox_opener(
    out: io.StringIO, proxy: ProxyRig
) -> None:
    """A sandbox's socket opened while one request was served logs a later call's refusal
    under that later call's request id (the task's inherited context is not trusted)."""
    bind_request_id("0pener0000000001")  # the request whose cold start opened the sandbox
    sandbox = proxy.open([f"{API}:443"])
    clear_log_context()
    port = proxy.relay(sandbox, proxy.begin(sandbox, "ca11ed0000000002"))
    answer = raw_request(
        port, f"CONNECT {OTHER}:443 HTTP/1.1\r\nHost: {OTHER}:443\r\n\r\n".encode()
    )
    assert answer.startswith(b"HTTP/1.1 403")
    [record] = proxy.records()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    egress = [line for line in lines if line["logger"] == "donjon.egress"]
    assert [line["event"] for line in egress] == [
        f"egress denied: {OTHER}:443 ({record['detail']['reason']})"
    ]
    assert egress[0]["request_id"] == record["detail"]["request_id"] == "ca11ed0000000002"
    assert "0pener0000000001" not in out.getvalue()
