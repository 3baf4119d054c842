"""The serving process's heap, set aside from the cyclic garbage collector once started.

CPython's collector stops the whole process while it walks the generation it
collects; a full (generation 2) collection walks every container object alive,
and the gateway is one event loop, so every call in flight waits for it. Once a
node has started, that heap is mostly what never dies: modules, classes, the
settings, the app and its routes, the functions deployed before the start. Measured
(2026-12-03, docs/performance.md, "How cost grows, again"): about 150,000 objects
alive from the start, 158,000-168,000 walked by each full collection under load,
which stopped the loop for 95 to 363 ms (a shared machine, load 4-6): the warm path's
p99 tail at 32 connections.

Before that, while the node is being started, `pause_collector` turns the collector
off: the imports and the start make some 150,000 objects that will live as long as the
process, and the collections they set off (about 260 during the gateway's imports,
150 ms at load 1) find almost nothing to free (1,700 objects). It is turned on again
by `freeze_started_heap`.

`freeze_started_heap` collects once, then moves every object then alive to the
collector's permanent generation (`gc.freeze`, the interpreter's own remedy for a
long-lived heap): later collections walk only what was made after the start, the
calls' and the deploys' objects, and stop the loop for as long as those take.
Nothing else changes: reference counting frees frozen objects as before; only a
reference cycle among objects made before the start and dropped afterwards (an
object of a function deployed before the start and replaced since) is kept until
the process ends, bounded by the heap frozen here.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass

__all__ = ["FrozenHeap", "freeze_started_heap", "pause_collector"]

log = logging.getLogger("donjon")


@dataclass(frozen=True)
class FrozenHeap:
    """What `freeze_started_heap` did: objects set aside, and those the collector
    still walks."""

    frozen: int
    tracked: int


def pause_collector() -> None:
    """Turn the cyclic collector off until `freeze_started_heap` (call it before the
    server's imports; a start that fails ends the process with it off)."""
    gc.disable()


def freeze_started_heap() -> FrozenHeap:
    """Collect once, then freeze what is alive and turn the collector on (call it once
    the node has started)."""
    gc.collect()
    gc.freeze()
    gc.enable()
    done = FrozenHeap(frozen=gc.get_freeze_count(), tracked=len(gc.get_objects()))
    log.debug("heap: %d objects frozen at start; the collector walks %d", done.frozen, done.tracked)
    return done
