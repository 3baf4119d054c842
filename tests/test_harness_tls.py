"""The harness's client TLS context: a connection its peer resets before the handshake
leaves no socket open (CPython's SSLSocket leaked it: python/cpython#113280)."""

from __future__ import annotations

import errno
import gc
import socket
import ssl
import struct
import time
import warnings

import pytest

from harness import client_tls


def _reset(sock: socket.socket) -> None:
    """Wait until `sock`'s peer has reset it: no longer connected (10 s at most)."""
    deadline = time.monotonic() + 10
    while _connected(sock):
        assert time.monotonic() < deadline, "the reset never came"
        time.sleep(0.01)


def _connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError as e:
        if e.errno == errno.ENOTCONN:
            return False
        raise
    return True


def test_a_connection_reset_before_the_handshake_is_closed() -> None:
    """A server that accepts and resets at once, as a node exiting while it is polled:
    the wrap raises ConnectionResetError, and no ResourceWarning follows. Before, the
    SSLSocket kept the descriptor until garbage collection warned about it."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        accepted.close()  # an RST, not a FIN
        _reset(client)  # before the wrap looks
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(ConnectionResetError):
                client_tls().wrap_socket(client, server_hostname="node")
            gc.collect()
        client.close()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


def test_any_context_of_the_test_process_closes_a_reset_connection() -> None:
    """Not only the harness's context: one made as httpx, urllib3 or boto3 make theirs."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        accepted.close()
        _reset(client)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(ConnectionResetError):
                ssl.create_default_context().wrap_socket(client, server_hostname="node")
            gc.collect()
        client.close()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


def test_an_unclosed_tls_socket_says_which_test_made_it() -> None:
    """The ResourceWarning of a socket left open names the test and the line that made it,
    not only the test whose garbage collection found it."""
    ours, theirs = socket.socketpair()
    made = ssl.create_default_context().wrap_socket(
        ours, server_hostname="node", do_handshake_on_connect=False
    )
    try:
        said = repr(made)
    finally:
        made.close()
        theirs.close()
    assert "test_harness_tls.py::test_an_unclosed_tls_socket_says_which_test_made_it" in said
    assert "at test_harness_tls.py:" in said, said
