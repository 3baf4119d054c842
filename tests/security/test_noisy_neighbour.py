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

The second attack stays within its rate but keeps a slow function busy from many
connections: the key's own concurrency (`--concurrency`, below the function's)
leaves the function's other slots to everyone else. Without it (the default
per-principal cap, 64, is above the function's 4) the victim's 20 calls all got
503 (the function's backlog full of the flooder's calls).
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
    #: The bucket each 429 names (RateLimit-Policy's identifier).
    policies: set[str] = field(default_factory=set)


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


async def _noisy(
    node: LiveNode,
    flooder: str,
    victim: str,
    target: str = "shared",
    victim_targets: tuple[str, ...] = ("shared", "other"),
    started: int = FLOOD_MAX,
) -> tuple[Answers, dict[str, Answers]]:
    """The flood of `target`, and the victim's calls once the flood is at full pressure
    (its first refusal, or `started` answers): (flood, the victim's by function)."""
    flood = Answers()
    pressing = asyncio.Event()
    victim_done = asyncio.Event()
    deadline = time.monotonic() + FLOOD_S

    async def flood_worker(client: httpx.AsyncClient) -> None:
        while not victim_done.is_set() and len(flood.statuses) < FLOOD_MAX:
            if time.monotonic() > deadline:
                break  # the victim runs all the same: its assertions say what happened
            r = await client.post(f"/v1/functions/{target}/invoke", content=b"{}")
            flood.statuses.append(r.status_code)
            if r.status_code == 429:
                flood.retry_after.append(r.headers.get("retry-after"))
                flood.policies.add(r.headers.get("ratelimit-policy", "").partition(";")[0])
            if r.status_code != 200 or len(flood.statuses) >= started:
                pressing.set()
        pressing.set()

    victims = {name: Answers() for name in victim_targets}

    async def victim_calls(client: httpx.AsyncClient) -> None:
        await pressing.wait()
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
    # The flooder was refused by its own buckets (never by the function's shared one): 429
    # with Retry-After, and never served more than its bucket holds plus what it refilled.
    assert set(flood.statuses) <= {200, 429}, sorted(set(flood.statuses))
    assert flood.retry_after, "the flooder was never refused"
    assert all(v is not None and int(v) >= 1 for v in flood.retry_after)
    assert flood.policies <= {'"principal"', '"principal-function"'}, flood.policies
    assert flood.statuses.count(200) <= FLOOD_BURST + FLOOD_PER_S * elapsed + 1
    assert flood.statuses.count(429) > flood.statuses.count(200)


SLOW_HANDLER = "import time\ndef handler(event, context):\n    time.sleep(0.3)\n    return {}\n"
SLOW_MANIFEST = """\
name: slow
handler: main.handler
memory_mb: 64
timeout_s: 30
isolation: warm
limits: {concurrency: 4}
"""
#: The flooder's own concurrency, below the slow function's 4.
FLOOD_CONCURRENCY = 2


@pytest.fixture
def slow_node(tmp_path: Path) -> Iterator[LiveNode]:
    """A node of its own serving `slow` (0.3 s a call, 4 at once); no shedding for lag."""
    tmp_path.chmod(0o755)
    live = start_node(tmp_path / "data", {"DONJON_MAX_LOOP_LAG_S": "0"})
    d = tmp_path / "slow"
    d.mkdir(mode=0o755)
    (d / "main.py").write_text(SLOW_HANDLER)
    (d / "donjon.yaml").write_text(SLOW_MANIFEST)
    try:
        live.deploy(d)
        yield live
    finally:
        live.stop()


def test_a_principal_holding_a_slow_function_leaves_it_to_another(slow_node: LiveNode) -> None:
    """A key keeping a slow function busy from many connections holds at most its own
    concurrency of its slots; another key's calls to it are served (at least 99%)."""
    node = slow_node
    flooder = _key(
        node, "holder", "slow", "--rate", "50/second", "--concurrency", str(FLOOD_CONCURRENCY)
    )
    victim = _key(node, "victim", "slow")
    flood, victims = asyncio.run(_noisy(node, flooder, victim, "slow", ("slow",), started=20))
    answers = victims["slow"].statuses
    assert len(answers) == VICTIM_CALLS
    assert answers.count(200) >= 0.99 * VICTIM_CALLS, answers
    # The flood was served too, within its own slots (a call past them waits, bounded,
    # or is refused with 503 or 429): never a failure of the function.
    assert flood.statuses.count(200) >= 20
    assert set(flood.statuses) <= {200, 429, 503}, sorted(set(flood.statuses))
