"""A real SQS poller run in the test's process against an endpoint on loopback (or a URL
the node must refuse), until a condition holds: what it recorded."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence

import pytest

from donjon.audit import AuditEvent
from donjon.egress.addresses import IPNetwork
from donjon.manifest.event_triggers import S3Spec
from donjon.triggers.envelope import Envelope
from donjon.triggers.sqs_source import SqsPoller

__all__ = ["SPEC", "run_poller"]

SPEC = S3Spec(source="sqs", secret="queue", prefix="", suffix="")  # noqa: S106 - a vault name


def run_poller(
    endpoint: str,
    done: Callable[[SqsPoller], bool],
    allow_networks: Sequence[IPNetwork] = (),
    timeout: float = 60.0,
) -> list[AuditEvent]:
    """Poll the queue at `endpoint` until `done(poller)` (AssertionError past `timeout`);
    the audit events it recorded. Nothing may be submitted."""
    records: list[AuditEvent] = []
    settings = json.dumps(
        {
            "queue_url": f"{endpoint.rstrip('/')}/123456789012/events",
            "region": "eu-west-1",
            "access_key_id": "AKIDEXAMPLE",
            "secret_access_key": "wJalrXUtnFEMIEXAMPLEKEY",
            "endpoint_url": endpoint,
        }
    )

    async def open_secret(name: str) -> str:
        return settings

    async def submit(envelope: Envelope) -> str:
        raise AssertionError("nothing may be submitted")

    async def record(event: AuditEvent) -> None:
        records.append(event)

    async def go() -> None:
        poller = SqsPoller(
            "resize", SPEC, open_secret, submit, record, allow_networks=allow_networks
        )
        task = asyncio.create_task(poller.run())
        deadline = time.monotonic() + timeout
        while not done(poller):
            if time.monotonic() > deadline:
                raise AssertionError(f"the poller did not get there in {timeout} s")
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    return records
