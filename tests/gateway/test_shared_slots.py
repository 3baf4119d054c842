"""Two `donjon serve` processes sharing one Redis hold a function's concurrency cap together.

A function's `limits.concurrency` is each node's own sandbox-pool cap on one node; with
DONJON_REDIS_URL it is also one set of leased slots in Redis (gateway/slots.py), so calls
raced over two nodes must not run two caps' worth at once. The nodes wait briefly for a
slot (DONJON_MAX_QUEUE_WAIT_S), far less than a call lasts, so a call that finds the cap
full is refused (503) rather than run after the others.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from donjon.gateway.slots import LEASE_MARGIN_S
from harness import LiveNode
from redis_support import RedisServer, two_nodes

pytestmark = pytest.mark.slow  # two nodes and a Redis

#: The function's cap over every node.
CAP = 2


@pytest.fixture(scope="module")
def nodes(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveNode, LiveNode, RedisServer]]:
    redis = RedisServer(tmp_path_factory.mktemp("redis"))
    redis.start()
    try:
        env = {"DONJON_REDIS_URL": redis.url, "DONJON_MAX_QUEUE_WAIT_S": "0.2"}
        with two_nodes(tmp_path_factory, env) as (a, b):
            yield a, b, redis
    finally:
        redis.stop()


def _capped(root: Path) -> Path:
    """`capped`: sleeps as long as its event says, CAP calls at once at most."""
    target = root / "capped"
    target.mkdir()
    (target / "donjon.yaml").write_text(
        "name: capped\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 8\n"
        f"limits: {{concurrency: {CAP}}}\n"
    )
    (target / "main.py").write_text(
        "import time\n\n\ndef handler(event, context):\n"
        "    time.sleep(min(float(event.get('s', 0)), 6))\n    return {'slept': True}\n"
    )
    return target


def test_calls_raced_over_two_nodes_hold_one_concurrency_cap(
    nodes: tuple[LiveNode, LiveNode, RedisServer], tmp_path: Path
) -> None:
    """4*CAP long calls sent at once over both nodes: at most CAP run (the rest 503, the
    function's cap), not CAP per node; every slot is given back after."""
    a, b, redis = nodes
    fn = _capped(tmp_path)
    a.deploy(fn)
    b.deploy(fn)
    event = {"s": 4}
    with concurrent.futures.ThreadPoolExecutor(4 * CAP) as pool:
        sent = [pool.submit((a, b)[i % 2].invoke, "capped", event) for i in range(4 * CAP)]
        answers = [f.result() for f in sent]
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 503}, [r.text for r in answers]
    assert 1 <= codes.count(200) <= CAP, codes
    refused = [r.json()["detail"] for r in answers if r.status_code == 503]
    assert all("function's concurrency limit" in d for d in refused), refused
    with redis.client() as c:  # given back as each call ends (just after its answer)
        for _ in range(600):
            if c.zcard('donjon:slots:[null,"capped",null,"concurrency"]') == 0:
                break
            time.sleep(0.05)
        assert c.zcard('donjon:slots:[null,"capped",null,"concurrency"]') == 0


def test_a_node_killed_holding_a_slot_frees_it_by_its_lease(
    nodes: tuple[LiveNode, LiveNode, RedisServer],
) -> None:
    """SIGKILL a node while its call holds a shared slot: the slot is not held forever,
    its lease ends at the call's timeout plus LEASE_MARGIN_S, and so does its key."""
    _, b, redis = nodes
    key = 'donjon:slots:[null,"capped",null,"concurrency"]'
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(b.invoke, "capped", {"s": 6})
        with redis.client() as c:
            for _ in range(600):
                if c.zcard(key) == 1:
                    break
                time.sleep(0.05)
            assert c.zcard(key) == 1
            b.proc.kill()
            b.proc.wait(30)
            with pytest.raises(httpx.HTTPError):
                running.result()
            seconds, micros = c.time()
            now_ms = seconds * 1000 + micros // 1000
            ((_, lease_end),) = c.zrange(key, 0, -1, withscores=True)
            most = (8 + LEASE_MARGIN_S) * 1000
            assert now_ms < lease_end <= now_ms + most
            assert 0 < int(c.pttl(key)) <= most
