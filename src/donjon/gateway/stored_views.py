"""Where a view of large stored data is made: an async invocation's in a child process, a
function's logs on a thread, a few at a time.

`GET /v1/invocations/{id}` answers a succeeded invocation's result (up to 6 MiB) and
`GET /v1/dlq/{id}` a dead one's event, both stored as the bytes the function (or the
caller) sent. The view parses them (an unparsable one is shown as null) and renders the
whole answer again. Done on the event loop, that took about 0.4 s of loop time a read of
a 6 MiB result, 2 s on a loaded host: a tenant re-reading its own result in a loop
stalled every other tenant's calls. Done on a thread it would be no better: json's
parser and encoder hold the GIL for a whole document, and the loop waits for the GIL.

So a view whose stored JSON is past `ON_LOOP_BYTES` is made in a child process (its own
interpreter and GIL) by the very code that makes a small one on the loop, `rendered`:
the answer's bytes are the same either way. A list of stored text (a function's logs: 500
entries of 16 KiB) parses nothing: it is rendered on a thread of these an entry at a time
(`respond_list`, schemas.rendered_list), the loop taking the GIL between entries. So is
a list of functions whose stored manifests (up to 64 KiB each, hundreds an owner) are
large: each is parsed and rendered in turn there (gateway/admin.py).
`StoredViews` bounds that work as the audit reads are bounded (gateway/child_work.py): one
at a time, three more waiting, two of those places one caller's, the rest refused at once
(503, Retry-After). Who may read is decided before any of this runs (gateway/admin.py,
async_invoke.py, dlq_api.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pydantic import BaseModel
from starlette.responses import Response

from donjon.gateway.child_work import ChildWork
from donjon.gateway.queue_views import InvocationView, dead_view, invocation_view
from donjon.gateway.schemas import render, rendered_list
from donjon.own_threads import ThreadsBusy
from donjon.triggers.queue import QueuedInvocation

__all__ = ["ON_LOOP_BYTES", "StoredViews", "StoredViewsBusy", "rendered"]

#: Stored JSON up to this size (the event and result together) is parsed on the loop:
#: about a millisecond of work, less than a trip to the child would take.
ON_LOOP_BYTES = 64 * 1024


def rendered(invocation: QueuedInvocation, *, reveal: bool, dead: bool) -> bytes:
    """The JSON body answering `invocation`: its dead-letter view (`dead`) or its view,
    its error's message only with `reveal`."""
    if dead:
        return bytes(render(dead_view(invocation)).body)
    view = InvocationView(**invocation_view(invocation, reveal=reveal))
    return bytes(render(view).body)


def _stored_size(invocation: QueuedInvocation, *, dead: bool) -> int:
    """The bytes of stored JSON a view of `invocation` parses."""
    return len(invocation.result or b"") + (len(invocation.event) if dead else 0)


class StoredViewsBusy(ThreadsBusy):
    """As many large views as this node makes at once are being made or wait."""


class StoredViews(ChildWork):
    """At most `slots` large views made at once (an invocation's by a thread waiting on
    the child process) and `waiting` more queued, half of those places one caller's."""

    noun = "reads of large invocation results, logs and function lists"

    def __init__(self, slots: int = 1, waiting: int = 3, retry_after_s: float = 2.0) -> None:
        super().__init__(slots, waiting, retry_after_s, "donjon-stored-views")

    def _busy(self, message: str) -> StoredViewsBusy:
        return StoredViewsBusy(message, retry_after_s=self.retry_after_s)

    async def respond(
        self, caller: str, invocation: QueuedInvocation, *, reveal: bool, dead: bool = False
    ) -> Response:
        """The 200 answering `invocation` for `caller` (already allowed to see it)."""
        if _stored_size(invocation, dead=dead) <= ON_LOOP_BYTES:
            body = rendered(invocation, reveal=reveal, dead=dead)
        else:
            body = await self.run(caller, self._in_child, invocation, reveal, dead)
        return Response(body, media_type="application/json")

    async def respond_list(self, caller: str, items: Sequence[BaseModel], size: int) -> Response:
        """The 200 answering `items` (`size` bytes of stored text among them) for `caller`:
        made on a thread of these, an item at a time, past `ON_LOOP_BYTES`."""
        if size <= ON_LOOP_BYTES:
            return render(list(items))
        body = await self.run(caller, rendered_list, items)
        return Response(body, media_type="application/json")

    def _in_child(self, invocation: QueuedInvocation, reveal: bool, dead: bool) -> bytes:
        """`rendered` in the child process (child_work.py)."""
        # Not the event when it is not shown: the child gets only what it renders.
        sent = invocation if dead else replace(invocation, event=b"")
        return self.in_child(rendered, sent, reveal=reveal, dead=dead)
