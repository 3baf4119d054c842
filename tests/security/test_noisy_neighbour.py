"""A noisy neighbour: one principal flooding a function cannot starve another's calls.

Before issue 15 the only rate limit was the function's own bucket, shared by every
caller: a flood from one key spent it, and every other caller of that function got
429 until the flood stopped. Now each principal has buckets of its own (set per key:
`donjon key create ... --rate --burst`), taken before the function's shared bucket,
so the flooder's refused calls never spend the tokens others need.

The flooder's key is allowed FLOOD_RATE; it floods `shared` from FLOOD_CONNECTIONS
connections at once, bounded in count (FLOOD_MAX) and time (FLOOD_S). Once it is
being refused (its first 429), the victim, another key from another address, calls
`shared` and `other` VICTIM_CALLS times each, while the flood goes on. The test
asserts statuses and counts only, never timings.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from harness import LiveNode, fresh_source, run_cli, start_node

#: The functions' shared bucket: enough for the victim and the flooder's own allowance.
FUNCTION_RATE = "120/minute"
#: The flooder's own limit (its key's), far below what it sends.
FLOOD_RATE, FLOOD_PER_S, FLOOD_BURST = "2/second", 2, 2
FLOOD_CONNECTIONS = 32
#: The flood's bounds: it stops at this many answers, or this many seconds, whichever first.
FLOOD_MAX, FLOOD_S = 6000, 180.0
VICTIM_CALLS = 20
HANDLER = "def handler(event, context):\n    return {'ok': True}\n"
MANIFEST = """\
name: {name}
handler: main.handler
memory_mb: 64
timeout_s: 30
isolation: warm
limits: {{rate: "{rate}", concurrency: 8}}
"""


def _function(root: Path, name: str) -> Path:
    d = root / name
    d.mkdir(mode=0o755)
    (d / "main.py").write_text(HANDLER)
    (d / "donjon.yaml").write_text(MANIFEST.format(name=name, rate=FUNCTION_RATE))
    return d


@pytest.fixture
def shared_node(tmp_path: Path) -> Iterator[LiveNode]:
    """A node of its own serving `shared` and `other`; the loop's lag sheds nothing (the
    machine's load must not decide what the limits decide)."""
    tmp_path.chmod(0o755)
    live = start_node(tmp_path / "data", {"DONJON_MAX_LOOP_LAG_S": "0"})
    try:
        for name in ("shared", "other"):
            live.deploy(_function(tmp_path, name))
        yield live
    finally:
        live.stop()


def _key(node: LiveNode, name: str, functions: str, *limits: str) -> str:
    created = run_cli(
        node.env(),
        "key", "create", name, "--role", "invoker", "--functions", functions, *limits, "--json",
    )  # fmt: skip
    key: str = json.loads(created.stdout)["key"]
    return key


@dataclass
class Answers:
    statuses: list[int] = field(default_factory=list)
    retry_after: list[str | None] = field(default_factory=list)


def _client(node: LiveNode, key: str, connections: int) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(
        verify=node.tls,
        local_address=fresh_source(),
        limits=httpx.Limits(max_connections=connections),
    )
    return httpx.AsyncClient(
        base_url=node.url,
        transport=transport,
        headers={"authorization": f"Bearer {key}"},
        timeout=120,
    )


async def _noisy(node: LiveNode, flooder: str, victim: str) -> tuple[Answers, dict[str, Answers]]:
    """The flood, and the victim's calls once the flooder is refused: (flood, victim's)."""
    flood = Answers()
    refused = asyncio.Event()
    victim_done = asyncio.Event()
    deadline = time.monotonic() + FLOOD_S

    async def flood_worker(client: httpx.AsyncClient) -> None:
        while not victim_done.is_set() and len(flood.statuses) < FLOOD_MAX:
            if time.monotonic() > deadline:
                refused.set()  # the victim runs all the same: its assertions say what happened
                return
            r = await client.post("/v1/functions/shared/invoke", content=b"{}")
            flood.statuses.append(r.status_code)
            if r.status_code == 429:
                flood.retry_after.append(r.headers.get("retry-after"))
                refused.set()
        refused.set()

    victims = {"shared": Answers(), "other": Answers()}

    async def victim_calls(client: httpx.AsyncClient) -> None:
        await refused.wait()
        try:
            for _ in range(VICTIM_CALLS):
                for name, answers in victims.items():
                    r = await client.post(f"/v1/functions/{name}/invoke", content=b"{}")
                    answers.statuses.append(r.status_code)
        finally:
            victim_done.set()

    async with (
        _client(node, flooder, FLOOD_CONNECTIONS) as fc,
        _client(node, victim, 1) as vc,
    ):
        await asyncio.gather(
            victim_calls(vc), *(flood_worker(fc) for _ in range(FLOOD_CONNECTIONS))
        )
    return flood, victims


def test_a_flooding_principal_does_not_starve_another(shared_node: LiveNode) -> None:
    """A key flooding `shared` far past its own rate gets 429s; meanwhile another key's
    calls to `shared` and to `other` are served (at least 99%)."""
    node = shared_node
    flooder = _key(node, "flooder", "shared", "--rate", FLOOD_RATE, "--burst", str(FLOOD_BURST))
    victim = _key(node, "victim", "shared,other")
    started = time.monotonic()
    flood, victims = asyncio.run(_noisy(node, flooder, victim))
    elapsed = time.monotonic() - started
    for name, answers in victims.items():
        served = answers.statuses.count(200)
        assert len(answers.statuses) == VICTIM_CALLS, name
        assert served >= 0.99 * VICTIM_CALLS, f"victim's {name}: {answers.statuses}"
    # The flooder was refused by its own limit: 429 with Retry-After, and never served
    # more than its bucket holds plus what it refilled while the test ran.
    assert set(flood.statuses) <= {200, 429}, sorted(set(flood.statuses))
    assert flood.retry_after, "the flooder was never refused"
    assert all(v is not None and int(v) >= 1 for v in flood.retry_after)
    assert flood.statuses.count(200) <= FLOOD_BURST + FLOOD_PER_S * elapsed + 1
    assert flood.statuses.count(429) > flood.statuses.count(200)
