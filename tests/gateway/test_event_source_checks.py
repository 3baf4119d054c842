"""The node's checks of an event source's records (gateway/event_sources.py), as the SQS
poller calls them: `check` each record of a message, then `submit_all` them. Each record is
checked against the function's input_schema once (before: twice, parsed each time on
the loop); `submit_all` still refuses a record for a function no longer deployed or past
its body limit, and `submit` (the PostgreSQL listener's) still checks the schema."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Sequence
from types import SimpleNamespace
from typing import Any, TypeVar, cast

import pytest

import donjon.gateway.events
from donjon.errors import Error
from donjon.gateway.errors import InvalidInput, PayloadTooLarge
from donjon.gateway.event_sources import node_sources
from donjon.manifest.input_validator import input_validator
from donjon.triggers.envelope import Envelope

SCHEMA = {"type": "object", "required": ["Records"]}
T = TypeVar("T")


def _run(awaitable: Awaitable[T]) -> T:
    async def wait() -> T:
        return await awaitable

    return asyncio.run(wait())


class _Node:
    """What `node_sources` reads of a node: one function `f` (body limit 1 KiB, SCHEMA),
    and a queue that keeps what it is given."""

    def __init__(self) -> None:
        self.deployed: object | None = SimpleNamespace(
            name="f",
            validator=input_validator(SCHEMA),
            manifest=SimpleNamespace(limits=SimpleNamespace(body_bytes=1024)),
        )
        self.queued: list[Envelope] = []
        self.registry = SimpleNamespace(get=self._get, all=list, watch=lambda changed: None)
        self.settings = SimpleNamespace(
            requests=SimpleNamespace(max_body_bytes=1 << 20),
            egress=SimpleNamespace(allow_networks=()),
        )
        self.audit = SimpleNamespace(record=None)
        self.submit = self._submit
        self.submit_all = self._submit_all

    def _get(self, name: str) -> object | None:
        return self.deployed if name == "f" else None

    async def _submit(self, envelope: Envelope) -> str:
        self.queued.append(envelope)
        return "one"

    async def _submit_all(self, envelopes: Sequence[Envelope]) -> list[str]:
        self.queued.extend(envelopes)
        return [f"id-{i}" for i in range(len(envelopes))]


@pytest.fixture
def validated(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The events the schema is checked against, as they are checked."""
    seen: list[object] = []
    real = donjon.gateway.events.validate

    def counted(event: Any, deployed: Any) -> None:
        seen.append(event)
        real(event, deployed)

    monkeypatch.setattr(donjon.gateway.events, "validate", counted)
    return seen


def _record(event: object) -> Envelope:
    return Envelope("f", json.dumps(event).encode(), "s3", "s3://b", "t")


def test_a_message_s_records_are_checked_once_each(validated: list[object]) -> None:
    """`check` then `submit_all` of three records: the schema checks each once, and all
    three are queued."""
    node = _Node()
    sources = node_sources(cast(Any, node))
    taken = [_record({"Records": [i]}) for i in range(3)]

    check, submit_all = sources._check, sources._submit_all
    assert check is not None and submit_all is not None

    async def take() -> list[str]:  # as the SQS poller does
        for envelope in taken:
            await check(envelope)
        return await submit_all(taken)

    assert asyncio.run(take()) == ["id-0", "id-1", "id-2"]
    assert validated == [{"Records": [i]} for i in range(3)]
    assert node.queued == taken


def test_the_checks_still_refuse(validated: list[object]) -> None:
    """`check` refuses a record the schema refuses; `submit_all` one over the body limit or
    for a function removed since; `submit` (no check before it) one the schema refuses."""
    node = _Node()
    sources = node_sources(cast(Any, node))
    check, submit_all, submit = sources._check, sources._submit_all, sources._submit
    assert check is not None and submit_all is not None
    with pytest.raises(InvalidInput):
        _run(check(_record({"other": 1})))
    with pytest.raises(PayloadTooLarge):
        _run(submit_all([_record({"Records": ["x" * 2000]})]))
    with pytest.raises(InvalidInput):
        _run(submit(_record({"other": 1})))
    node.deployed = None
    with pytest.raises(Error, match="not taking events for f"):
        _run(submit_all([_record({"Records": []})]))
    assert node.queued == []
    assert validated == [{"other": 1}, {"other": 1}]
