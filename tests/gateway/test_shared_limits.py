"""Two `donjon serve` processes sharing one Redis (DONJON_REDIS_URL) share their limits.

Each node has a data dir of its own: a data dir is one node's (its audit writer
holds the log's Merkle tree in memory and is the log's only writer; its sandbox
staging and cgroups are named from the data dir), so two nodes on one SQLite
file would fork the audit chain. What the nodes share here is Redis alone; the
function is deployed to both under the same name, as a load balancer's peers
would have it. The tests run in file order: the outage test kills Redis last.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import FUNCTIONS, LiveNode, donjon_env, free_port, run_cli
from redis_support import RedisServer, two_nodes

#: The function's limit: N calls a minute over every node.
N = 5


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def nodes(
    redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveNode, LiveNode]]:
    # The second with keys of its own: each node's admin is its own caller (a per-caller
    # bucket must not pass for the shared one).
    with two_nodes(tmp_path_factory, {"DONJON_REDIS_URL": redis.url}) as pair:
        yield pair


def _function(root: Path, name: str, rate: str) -> Path:
    """The `limited` test function under another name and rate."""
    target = root / name
    shutil.copytree(FUNCTIONS / "limited", target)
    manifest = (target / "donjon.yaml").read_text()
    manifest = manifest.replace("name: limited", f"name: {name}")
    manifest = manifest.replace('rate: "3/hour"', f'rate: "{rate}"')
    (target / "donjon.yaml").write_text(manifest)
    return target


def _audit(node: LiveNode, action: str) -> list[dict[str, Any]]:
    with node.client() as c:
        records: list[dict[str, Any]] = c.get("/v1/audit", params={"n": 2000}).json()
    return [r for r in records if r["action"] == action]


def _alerts(node: LiveNode, kind: str) -> list[dict[str, Any]]:
    with node.client() as c:
        r = c.get("/v1/alerts", params={"kind": kind, "n": 1000})
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()
    return found


def test_two_nodes_allow_a_functions_rate_once_in_all(
    nodes: tuple[LiveNode, LiveNode], tmp_path: Path
) -> None:
    """limits.rate N/minute, 2N calls alternating between two nodes: N pass in all, not 2N;
    the second node refuses after serving fewer than N itself (the bucket is shared)."""
    a, b = nodes
    fn = _function(tmp_path, "shared-rate", f"{N}/minute")
    a.deploy(fn)
    b.deploy(fn)
    started = time.monotonic()
    statuses: list[tuple[str, int]] = []
    for i in range(2 * N):
        node, label = (a, "a") if i % 2 == 0 else (b, "b")
        statuses.append((label, node.invoke("shared-rate", {}).status_code))
    elapsed = time.monotonic() - started
    assert {s for _, s in statuses} <= {200, 429}, statuses
    allowed = sum(s == 200 for _, s in statuses)
    # Tokens refill at N a minute: on a slow machine a call may get a refilled one.
    refilled = math.floor(elapsed * N / 60)
    assert N <= allowed <= N + refilled, (statuses, elapsed)
    assert allowed < 2 * N or refilled >= N, statuses
    served_by_b = [s for label, s in statuses if label == "b"]
    assert 429 in served_by_b and served_by_b.count(200) < N, statuses


def test_doctor_says_which_limits_backend_answers(
    nodes: tuple[LiveNode, LiveNode], redis: RedisServer, tmp_path: Path
) -> None:
    """`donjon doctor` names the backend: memory without DONJON_REDIS_URL, Redis with it
    (its password masked), and whether it answers."""
    a, _ = nodes
    env = donjon_env(a.data_dir)
    memory = json.loads(run_cli(env, "doctor", "--output", "json", check=False).stdout)
    assert memory["limits"]["backend"] == "memory"
    secret_url = redis.url.replace("redis://", "redis://:hunter2@")
    done = run_cli(
        {**env, "DONJON_REDIS_URL": secret_url}, "doctor", "--output", "json", check=False
    )
    shown = json.loads(done.stdout)["limits"]
    assert shown["backend"] == "redis"
    assert "hunter2" not in done.stdout + done.stderr
    assert shown["url"].startswith("redis://***@127.0.0.1:")
    plain = run_cli({**env, "DONJON_REDIS_URL": redis.url}, "doctor", check=False)
    assert "limits backend:" in plain.stdout and "redis (answers)" in plain.stdout
    gone = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    down = json.loads(
        run_cli({**env, "DONJON_REDIS_URL": gone}, "doctor", "--output", "json", check=False).stdout
    )["limits"]
    assert (down["backend"], down["answers"]) == ("redis", False)


def test_an_outage_is_alerted_once_limits_go_per_node_and_come_back(
    nodes: tuple[LiveNode, LiveNode], redis: RedisServer, tmp_path: Path
) -> None:
    """Kill Redis under a serving node: its rate limit holds per node (its own bucket), one
    limits.unavailable alert is raised however many calls, and once Redis is back the node
    shares again by itself (a limits.available record)."""
    a, _ = nodes
    fn = _function(tmp_path, "outage-rate", "3/hour")
    a.deploy(fn)
    assert a.invoke("outage-rate", {}).status_code == 200  # a shared token spent
    redis.kill()
    statuses = [a.invoke("outage-rate", {}).status_code for _ in range(5)]
    # The node's own bucket of 3/hour, fresh: three more, then 429 (never unlimited).
    assert statuses == [200, 200, 200, 429, 429]
    deadline = time.monotonic() + 60
    while not _alerts(a, "limits.unavailable"):
        assert time.monotonic() < deadline, "no limits.unavailable alert"
        time.sleep(0.2)
    (alert,) = _alerts(a, "limits.unavailable")
    assert alert["subject"] == "node:limits" and alert["severity"] == "high"
    assert len(_audit(a, "limits.unavailable")) == 1
    redis.start()
    deadline = time.monotonic() + 60
    while not _audit(a, "limits.available"):
        assert time.monotonic() < deadline, "the node never used Redis again"
        a.invoke("outage-rate", {})
        time.sleep(0.3)
    # The store may have been found again by another of the call's asks (its slots) while
    # its rate bucket was taken in memory (ci57a, under load): the next call shares it.
    a.invoke("outage-rate", {})
    with redis.client() as c:
        assert c.exists('donjon:rate:[null,"outage-rate",null]') == 1
