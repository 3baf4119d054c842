"""The node's event sources follow the deployed functions: started, kept across a redeploy
that keeps the trigger, replaced when it changes, stopped when it goes (a real PostgreSQL);
and the backoff and outage reports they share."""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from donjon.audit import AuditEvent
from donjon.manifest import Manifest, parse_manifest
from donjon.triggers.envelope import Envelope
from donjon.triggers.source_health import Backoff, SourceHealth
from donjon.triggers.sources import EventSources
from postgres_support import PostgresServer, postgres_server

#: The loopback servers these tests stand up are internal addresses: opened to the sources
#: as an admin opens an internal network (triggers/source_address.py).
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)

__all__ = ["postgres_server"]  # the fixture, used by name below


def _manifest(channel: str | None, extra: str = "") -> Manifest:
    triggers = (
        f"triggers:\n  - postgres:\n      dsn: db\n      channel: {channel}\n"
        "  - s3:\n      source: push\n      path: /up\n      secret: tok\n"
        if channel
        else ""
    )
    return parse_manifest(f"name: fn\nhandler: main.handler\n{extra}{triggers}")


def _channels(server: PostgresServer) -> list[str]:
    with server.connect() as conn:
        rows = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE query LIKE 'LISTEN %%'"
        ).fetchall()
    return sorted(str(r[0]).split()[1].strip('"') for r in rows)


async def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.slow
def test_sources_follow_deploys_redeploys_and_removals(postgres_server: PostgresServer) -> None:
    """A deployed postgres trigger gets a listener (a push trigger none: the gateway takes
    those); a redeploy that keeps it keeps the same listener; a new channel replaces it;
    removing the function stops it."""
    deployed: dict[str, Manifest] = {"fn": _manifest("orders")}

    async def open_secret(name: str) -> str:
        return postgres_server.dsn()

    async def submit(envelope: Envelope) -> str:
        return "id"

    async def record(event: AuditEvent) -> None:
        return None

    async def go() -> None:
        sources = EventSources(deployed.items, open_secret, submit, record, allow_networks=LOOPBACK)
        await sources.start()
        try:
            await _until(lambda: _channels(postgres_server) == ["orders"], "LISTEN orders")
            (first,) = sources.sources().values()

            deployed["fn"] = _manifest("orders", "memory_mb: 64\n")  # a new version, same trigger
            sources.changed()
            await asyncio.sleep(0.3)
            assert list(sources.sources().values()) == [first]

            deployed["fn"] = _manifest("refunds")
            sources.changed()
            await _until(lambda: _channels(postgres_server) == ["refunds"], "LISTEN refunds")
            assert list(sources.sources().values()) != [first]

            del deployed["fn"]
            sources.changed()
            await _until(lambda: _channels(postgres_server) == [], "no LISTEN")
            assert sources.sources() == {}
        finally:
            await sources.stop()

    asyncio.run(go())


def test_backoff_doubles_to_its_cap_with_jitter_and_resets() -> None:
    """Each delay is between half and all of first*2**n, never past the cap; reset starts over."""
    backoff = Backoff(first=1.0, cap=8.0)
    delays = [backoff.next() for _ in range(8)]
    for n, delay in enumerate(delays):
        full = min(8.0, 2.0**n)
        assert full / 2 <= delay <= full
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.0


def test_an_outage_is_reported_once_and_its_end_once() -> None:
    """Failures after the first are not recorded again; the success that ends the outage is
    recorded with the attempts it took; a success with no outage records nothing."""
    records: list[AuditEvent] = []

    async def record(event: AuditEvent) -> None:
        records.append(event)

    async def go() -> None:
        health = SourceHealth(record, "fn", "s3", "sqs https://q")
        await health.succeeded()
        for _ in range(5):
            await health.failed("refused")
        assert health.down
        await health.succeeded()
        await health.succeeded()

    asyncio.run(go())
    assert [(r.action, r.outcome) for r in records] == [
        ("trigger.source.unavailable", "error"),
        ("trigger.source.available", "ok"),
    ]
    assert records[0].detail == {"trigger": "s3", "source": "sqs https://q", "reason": "refused"}
    assert records[1].detail["attempts"] == 5


def test_the_postgres_client_is_loaded_off_the_event_loop() -> None:
    """The first postgres trigger a node starts imports its client (psycopg, 50-150 ms)
    in a worker thread: on a serving node, a deploy must not stall every call in flight
    (and the loop-lag shedding that watches them) for that import."""
    probe = """\
import asyncio, sys, threading
from donjon.manifest import parse_manifest
from donjon.triggers.sources import EventSources

on_loop = []

class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "donjon.triggers.postgres_source":
            on_loop.append(threading.current_thread() is threading.main_thread())
        return None

sys.meta_path.insert(0, Spy())
manifest = parse_manifest(
    "name: fn\\nhandler: main.handler\\n"
    "triggers:\\n  - postgres: {dsn: db, channel: orders}\\n"
)

async def open_secret(name):
    await asyncio.sleep(3600)  # never connects: only the import is looked at

async def submit(envelope):
    return "id"

async def record(event):
    return None

async def go():
    sources = EventSources(lambda: [("fn", manifest)], open_secret, submit, record)
    await sources.reconcile()
    assert len(sources.sources()) == 1
    await sources.stop()

asyncio.run(go())
print(on_loop)
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[False]"]
