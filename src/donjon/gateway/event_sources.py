"""The node's storage and database event sources (triggers/sources.py), wired to the
node: the deployed functions from its registry, secrets from its vault, events to
its `submit` (each within the function's `limits.body` and matching its `input_schema`,
as every way in is), outages to its audit log.

A large SQS message (past `ON_LOOP_BYTES`: SQS sends at most 1 MiB, but a trigger's
endpoint may be any SQS-compatible server, whose answers are read up to 16 MiB) is parsed
and its events made in the large events' child (`make`), and a large event is checked
against the schema there (`check`, events.check_made), by the same functions as a small
one's on the loop: 5.9 MB held the loop 0.5-0.8 s, every other tenant's calls waiting.
Each event is checked against the schema once at its source (before, twice) and again at
its delivery, against the version that runs it (gateway/deliveries.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from donjon.gateway.events import body_limit, check_event_size, check_made
from donjon.gateway.large_events import PAST_LOOP
from donjon.gateway.node import Node
from donjon.lifecycle import Deployed
from donjon.manifest.event_triggers import S3Spec
from donjon.triggers.envelope import Envelope, Submit
from donjon.triggers.s3_events import pushed_envelopes
from donjon.triggers.source_errors import SourceError
from donjon.triggers.sources import EventSources

__all__ = ["node_sources"]


def node_sources(node: Node) -> EventSources:
    """The event sources of `node`, reconciled at each change of its registry."""

    async def open_secret(name: str) -> str:
        return (await node.vault.open_granted([name]))[name]

    def taker(envelope: Envelope) -> tuple[Deployed, Submit]:
        """The function deployed now and the node's submit, if it would take `envelope`
        for its size (else the Error saying why)."""
        deployed, take = node.registry.get(envelope.function), node.submit
        if take is None or deployed is None:
            raise SourceError(
                f"the node is not taking events for {envelope.function}",
                hint="it is starting or stopping, or the function was removed",
            )
        limit = body_limit(deployed, node.settings.requests.max_body_bytes)
        check_event_size(envelope.event, deployed, limit)  # PayloadTooLarge: not taken
        return deployed, take

    async def check(envelope: Envelope) -> None:
        """`taker`, then the function's input_schema (InvalidInput: not taken, as on every
        way in); past ON_LOOP_BYTES in the child, for the function's trigger."""
        deployed, _ = taker(envelope)
        caller = f"{envelope.trigger}:{envelope.function}"
        await check_made(node, caller, envelope.event, deployed)

    async def submit(envelope: Envelope) -> str:
        """One event of a source without a check of its own (PostgreSQL's): checked here,
        then the function looked up again (the registry may have changed meanwhile)."""
        await check(envelope)
        return await taker(envelope)[1](envelope)

    async def submit_all(taken: Sequence[Envelope]) -> list[str]:
        """The records of one message, all or none (QueueFull: none queued), each through
        `check` just before (the SQS poller's): the function deployed and the size are
        looked at again, not the schema (a deploy since is caught at the delivery)."""
        for envelope in taken:
            taker(envelope)
        take_all = node.submit_all
        if take_all is None:
            raise SourceError("the node is not taking events yet", hint="it is starting")
        return await take_all(taken)

    async def make(function: str, spec: S3Spec, body: str) -> list[Envelope] | tuple[str, str]:
        """`pushed_envelopes` of an SQS message's body: past ON_LOOP_BYTES, in the child."""
        if not body[PAST_LOOP]:
            return pushed_envelopes(function, spec, body)
        caller = f"s3:{function}"
        return await node.large_events.made(caller, pushed_envelopes, function, spec, body)

    sources = EventSources(
        lambda: ((d.name, d.manifest) for d in node.registry.all()),
        open_secret,
        submit,
        node.audit.record,
        check,
        submit_all,
        node.settings.egress.allow_networks,
        make,
    )
    node.registry.watch(sources.changed)
    return sources
