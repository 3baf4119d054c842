"""The serving process's started heap is set aside from the cyclic collector (heap.py)."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref
from collections.abc import Iterator

import pytest

from donjon.gateway.heap import freeze_started_heap, pause_collector


@pytest.fixture
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process's heap goes back to the collector


def _walked(obj: object) -> bool:
    """Whether the cyclic collector walks `obj` in its collections."""
    return any(o is obj for o in gc.get_objects())


def test_objects_alive_at_start_are_no_longer_walked(thawed: None) -> None:
    """Once frozen, what was alive is out of every collection; what comes after is in."""
    before = [object()]  # a container: tracked by the collector
    assert _walked(before)
    done = freeze_started_heap()
    after = [object()]
    assert not _walked(before)
    assert _walked(after)
    assert done.frozen == gc.get_freeze_count() > 0
    assert done.tracked < done.frozen


def test_garbage_cycles_before_the_freeze_are_collected_not_frozen(thawed: None) -> None:
    """The freeze collects first: a cycle already dropped is freed, not kept for good."""

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    freeze_started_heap()
    assert gc.get_freeze_count() > 0
    assert gone() is None


def test_the_collector_paused_for_the_start_runs_again_once_frozen(thawed: None) -> None:
    """`pause_collector` turns the cyclic collector off; `freeze_started_heap` turns it on
    (else cycles made after the start would never be freed)."""
    try:
        pause_collector()
        assert not gc.isenabled()
        freeze_started_heap()
        assert gc.isenabled()
    finally:
        gc.enable()


_SERVE = """
import asyncio, gc, socket, sys
from donjon.gateway.heap import pause_collector
pause_collector()  # as `donjon serve` does before its imports
import uvicorn
from donjon.gateway.server import _GatewayServer

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

async def main():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = _GatewayServer(uvicorn.Config(app, log_config=None, lifespan="on"))
    server.config.load()  # as uvicorn's own serve() does before its startup
    server.lifespan = server.config.lifespan_class(server.config)
    sentinel = [object()]
    before = gc.get_freeze_count()
    await server.startup(sockets=[sock])
    walked = any(o is sentinel for o in gc.get_objects())
    print(before, gc.get_freeze_count(), walked, gc.isenabled())
    await server.shutdown(sockets=[sock])

asyncio.run(main())
"""


def test_the_gateway_server_freezes_its_heap_once_started() -> None:
    """`donjon serve`'s server freezes what is alive once its startup is done, and its
    collector, paused for the start, runs again."""
    done = subprocess.run(
        [sys.executable, "-c", _SERVE], capture_output=True, text=True, timeout=60, check=True
    )
    before, after, walked, collecting = done.stdout.split()
    assert int(before) == 0
    assert int(after) > 0
    assert walked == "False"
    assert collecting == "True"  # paused for the start, running again once started
