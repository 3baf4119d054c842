"""Two `donjon serve` processes sharing one Redis count one daily quota together.

Each node has its own data dir and database (docs/limits.md, "Several nodes"); the quota
is set on both, as every node's admin sets what every node enforces, and the calls are
spread over both, as a load balancer spreads them. The count lives in Redis
(`donjon:quota:{day}:<subject>`), so N nodes must not give N times the quota.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import pytest

from harness import EXAMPLES, FUNCTIONS, LiveNode
from redis_support import RedisServer, two_nodes

pytestmark = pytest.mark.slow  # two nodes and a Redis

#: The function's daily invocations quota, over every node.
N = 4


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNode, LiveNode]]:
    redis = RedisServer(tmp_path_factory.mktemp("redis"))
    redis.start()
    try:
        with two_nodes(tmp_path_factory, {"DONJON_REDIS_URL": redis.url}, fresh=False) as pair:
            yield pair
    finally:
        redis.stop()


def test_two_nodes_allow_a_functions_daily_quota_once_in_all(
    nodes: tuple[LiveNode, LiveNode],
) -> None:
    """With the quota on both nodes, calls spread over both pass N times in all, not 2N."""
    for node in nodes:
        node.deploy(EXAMPLES / "hello")
        with node.client() as c:
            r = c.put("/v1/quotas/function:hello", json={"invocations": N})
            assert r.status_code == 201, r.text
    answers = [nodes[i % 2].invoke("hello", {"name": str(i)}).status_code for i in range(3 * N)]
    assert answers.count(200) == N, answers
    assert set(answers) == {200, 429}, answers


def test_two_nodes_pass_a_compute_quota_by_at_most_one_call_each(
    nodes: tuple[LiveNode, LiveNode],
) -> None:
    """Reservations are per node (docs/limits.md: each node reserves a running call's
    timeout for its own calls): eight calls at once over two nodes under one compute
    second run one per node at most, never eight."""
    for node in nodes:
        node.deploy(FUNCTIONS / "probe")
        with node.client() as c:
            r = c.put("/v1/quotas/function:probe", json={"compute_seconds": 1})
            assert r.status_code == 201, r.text
    event = {"op": "sleep", "s": 1.5}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        sent = [pool.submit(nodes[i % 2].invoke, "probe", event) for i in range(8)]
        answers = [f.result().status_code for f in sent]
    assert 1 <= answers.count(200) <= len(nodes), answers
    assert set(answers) <= {200, 429}, answers
    with nodes[0].client() as c:
        quotas = {q["subject"]: q for q in c.get("/v1/quotas").json()}
    used = quotas["function:probe"]["compute_seconds"]["used"]
    assert used <= 1 + len(nodes) * 2, used  # the quota, and one timeout (2 s) per node
