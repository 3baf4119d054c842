"""The node's event sources: a poller per SQS-fed s3 trigger, a listener per postgres
trigger, for the functions deployed now.

`EventSources` starts them with the node and stops them with it, and reconciles
whenever the registry changes (a deploy, a new version, a removal): a trigger
that is new gets its source, one that is gone has its source stopped, and one
unchanged across a redeploy keeps its source running (nothing missed meanwhile).
A source's secret is opened by the node at each (re)connection; the function
never sees it. Pushed storage events (``source: push``) have no source here:
the gateway receives them (gateway/hooks_s3.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol

from donjon.egress.addresses import IPNetwork
from donjon.manifest import Manifest
from donjon.manifest.event_triggers import PostgresSpec, S3Spec
from donjon.triggers.envelope import Check, Submit, SubmitAll
from donjon.triggers.source_health import Record, SourceHealth
from donjon.triggers.sqs_source import MakeEnvelopes, SqsPoller

__all__ = ["EventSources", "Source", "SourceKey"]

log = logging.getLogger("donjon.sources")

#: One trigger of one function: (function name, trigger spec).
SourceKey = tuple[str, S3Spec | PostgresSpec]
Listing = Callable[[], Iterable[tuple[str, Manifest]]]
OpenSecret = Callable[[str], Awaitable[str]]


class Source(Protocol):
    """What reads one trigger's events until cancelled."""

    health: SourceHealth

    async def run(self) -> None: ...


class EventSources:
    """Runs a source for each storage (SQS) and database trigger of the deployed functions."""

    def __init__(
        self,
        listing: Listing,
        open_secret: OpenSecret,
        submit: Submit,
        record: Record,
        check: Check | None = None,
        submit_all: SubmitAll | None = None,
        allow_networks: Sequence[IPNetwork] = (),
        make: MakeEnvelopes | None = None,
    ) -> None:
        self._listing = listing
        #: How an SQS message's records become envelopes (None: on the loop, as made).
        self._make = make
        #: Internal networks the sources may dial (source_address.py).
        self._allow_networks = tuple(allow_networks)
        self._open_secret = open_secret
        self._submit = submit
        self._check = check
        self._submit_all = submit_all
        self._record = record
        self._running: dict[SourceKey, tuple[Source, asyncio.Task[None]]] = {}
        self._changed = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    def wanted(self) -> set[SourceKey]:
        """The triggers that need a source now."""
        keys: set[SourceKey] = set()
        for name, manifest in self._listing():
            keys.update((name, s) for s in manifest.storage_events if s.source == "sqs")
            keys.update((name, p) for p in manifest.database_events)
        return keys

    def sources(self) -> dict[SourceKey, Source]:
        """The sources running now, by trigger."""
        return {key: source for key, (source, _) in self._running.items()}

    async def start(self) -> None:
        """Start the deployed functions' sources, then follow the registry's changes."""
        await self.reconcile()
        self._watcher = asyncio.get_running_loop().create_task(self._follow(), name="sources")

    def changed(self) -> None:
        """The registry changed (called on the loop by the registry): reconcile soon."""
        self._changed.set()

    async def reconcile(self) -> None:
        """Stop the sources of triggers that are gone; start those of triggers that are new."""
        wanted = self.wanted()
        for key in [k for k in self._running if k not in wanted]:
            await self._stop(key)
        new = wanted - self._running.keys()
        if any(isinstance(spec, PostgresSpec) for _, spec in new):
            # psycopg (50-150 ms to import) is loaded by the first postgres trigger, in a
            # worker thread: a deploy on a serving node must not stall the loop for it. A
            # failed import is raised again, and logged per trigger, by `_start` below.
            with contextlib.suppress(Exception):
                await asyncio.to_thread(importlib.import_module, "donjon.triggers.postgres_source")
        for key in sorted(new, key=_order):
            try:
                self._start(key)
            except Exception:  # one trigger that cannot start must not stop the others
                log.exception("%s: its event source could not start", key[0])

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        for key in list(self._running):
            await self._stop(key)

    async def _follow(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            try:
                await self.reconcile()
            except Exception:  # the next change tries again; running sources go on
                log.exception("event sources: reconciling with the registry failed")

    def _start(self, key: SourceKey) -> None:
        name, spec = key
        source: Source
        if isinstance(spec, S3Spec):
            source = SqsPoller(
                name,
                spec,
                self._open_secret,
                self._submit,
                self._record,
                self._check,
                self._submit_all,
                self._allow_networks,
                self._make,
            )
        else:
            # Imported here: psycopg costs a node's start about 0.15 s and 20 MiB, and
            # most nodes have no postgres trigger (`reconcile` loaded it off the loop).
            from donjon.triggers.postgres_source import PostgresListener

            source = PostgresListener(
                name, spec, self._open_secret, self._submit, self._record, self._allow_networks
            )
        task = asyncio.get_running_loop().create_task(
            source.run(), name=f"source {name} {source.health.trigger}"
        )
        self._running[key] = (source, task)
        log.info(
            "%s trigger of %s: started (%s)", source.health.trigger, name, source.health.source
        )

    async def _stop(self, key: SourceKey) -> None:
        source, task = self._running.pop(key)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("%s trigger of %s: stopped", source.health.trigger, key[0])


def _order(key: SourceKey) -> tuple[str, str]:
    return key[0], key[1].model_dump_json()
