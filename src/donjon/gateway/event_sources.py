"""The node's storage and database event sources (triggers/sources.py), wired to the
node: the deployed functions from its registry, secrets from its vault, events to
its `submit` (each within the function's `limits.body` and matching its `input_schema`,
as every way in is), outages to its audit log."""

from __future__ import annotations

from collections.abc import Sequence

from donjon.gateway.events import body_limit, check_event_size, validate_made
from donjon.gateway.node import Node
from donjon.triggers.envelope import Envelope, Submit
from donjon.triggers.source_errors import SourceError
from donjon.triggers.sources import EventSources

__all__ = ["node_sources"]


def node_sources(node: Node) -> EventSources:
    """The event sources of `node`, reconciled at each change of its registry."""

    async def open_secret(name: str) -> str:
        return (await node.vault.open_granted([name]))[name]

    def taker(envelope: Envelope) -> Submit:
        """The node's submit, if it would take `envelope` (else the Error saying why)."""
        deployed, take = node.registry.get(envelope.function), node.submit
        if take is None or deployed is None:
            raise SourceError(
                f"the node is not taking events for {envelope.function}",
                hint="it is starting or stopping, or the function was removed",
            )
        limit = body_limit(deployed, node.settings.requests.max_body_bytes)
        check_event_size(envelope.event, deployed, limit)  # PayloadTooLarge: not taken
        validate_made(envelope.event, deployed)  # InvalidInput: not taken, as on every way in
        return take

    def check(envelope: Envelope) -> None:
        taker(envelope)

    async def submit(envelope: Envelope) -> str:
        # Checked again: the registry may have changed since a source's own check.
        return await taker(envelope)(envelope)

    async def submit_all(taken: Sequence[Envelope]) -> list[str]:
        """The records of one message, all or none (QueueFull: none queued)."""
        for envelope in taken:
            taker(envelope)
        take_all = node.submit_all
        if take_all is None:
            raise SourceError("the node is not taking events yet", hint="it is starting")
        return await take_all(taken)

    sources = EventSources(
        lambda: ((d.name, d.manifest) for d in node.registry.all()),
        open_secret,
        submit,
        node.audit.record,
        check,
        submit_all,
        node.settings.egress.allow_networks,
    )
    node.registry.watch(sources.changed)
    return sources
