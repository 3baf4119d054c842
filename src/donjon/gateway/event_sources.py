"""The node's storage and database event sources (triggers/sources.py), wired to the
node: the deployed functions from its registry, secrets from its vault, events to
its `submit`, outages to its audit log."""

from __future__ import annotations

from donjon.gateway.node import Node
from donjon.triggers.envelope import Envelope
from donjon.triggers.source_errors import SourceError
from donjon.triggers.sources import EventSources

__all__ = ["node_sources"]


def node_sources(node: Node) -> EventSources:
    """The event sources of `node`, reconciled at each change of its registry."""

    async def open_secret(name: str) -> str:
        return (await node.vault.open_granted([name]))[name]

    async def submit(envelope: Envelope) -> str:
        if node.submit is None:
            raise SourceError("the node is not taking events", hint="it is starting or stopping")
        return await node.submit(envelope)

    sources = EventSources(
        lambda: ((d.name, d.manifest) for d in node.registry.all()),
        open_secret,
        submit,
        node.audit.record,
    )
    node.registry.watch(sources.changed)
    return sources
