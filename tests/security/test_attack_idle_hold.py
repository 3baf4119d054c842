"""A client holds connections open past every timeout: answered from its head, it sends the
rest of its body after the answer (gateway/connections.py).

Each connection counts against the caps on open connections (per client address and in
all), so connections held with no timer running would let a few addresses lock every
other client out once the total cap is full.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import LiveNode
from shed_support import Connection, bare_node


@pytest.fixture
def idle_node(tmp_path: Path) -> Iterator[LiveNode]:
    """A node whose idle connections close after 2 s."""
    with bare_node(tmp_path, {"DONJON_KEEPALIVE_TIMEOUT_S": "2"}) as live:
        yield live


def test_cannot_hold_a_connection_by_sending_the_body_after_the_answer(
    idle_node: LiveNode,
) -> None:
    """A request answered from its head (405 here; a 401 or an early shed's 503 alike)
    whose body's last bytes come after the answer: the connection is still closed once
    idle. Before, those bytes cancelled the idle timer the answer had armed and nothing
    armed another; anyone could hold connections open, past every timeout, until the
    caps on connections were full (found in review; open after 76 s here)."""
    conn = Connection(idle_node)
    try:
        head = f"POST /healthz HTTP/1.1\r\nhost: {conn.host}\r\ncontent-length: 10\r\n\r\n"
        conn.sock.sendall(head.encode() + b"12345")
        assert conn.response()[0] == 405
        conn.sock.sendall(b"67890")
        assert conn.closed()
    finally:
        conn.sock.close()
