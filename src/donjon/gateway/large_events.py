"""Where a large event of a call is parsed and checked: in a child process, a few at a time.

Every call's event is parsed at the gateway (it must be JSON; finite when the function's
input_schema checks it) and checked against that schema (gateway/events.py). For an
event of 6 MiB that was about 0.4 s of the event loop's time at every call (boundedjson's
depth scan and json's parser: C code holding the GIL throughout): a tenant calling its
own function with large events stalled every other tenant's calls. So an event past
`ON_LOOP_BYTES` is parsed and checked in a child process (gateway/child_work.py) by the
very code that checks a small one on the loop, and the answers are the same
(events.check_large): 400 for a body that is not JSON or nests too deep (the latter
audited, as on the loop), 422 naming the first field the schema refuses. The child gets
the body and the schema and answers the refusal, if any: nothing parsed comes back (the
function's runtime parses the event itself). `LargeEvents` bounds the work: one at a
time, seven more waiting, four of those one caller's, the rest refused at once (503,
Retry-After). An event up to the bound is checked on the loop as before. The same
child checks a large `context.invoke` event (function_calls.py) and one the node made
(events.check_made: a queued event at its delivery, a webhook's, a pushed record's; and
a push's records together past the bound, each under it: events.check_all_made),
encodes an http trigger's event of a large body (`event_json`, trigger_routes.py), reads
a large webhook delivery and makes its event (hooks.py) and makes a large pushed
notification's events (hooks_s3.py): `made`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from donjon import boundedjson
from donjon.gateway.child_work import ChildWork
from donjon.gateway.errors import InvalidInput
from donjon.gateway.schema_refusal import refuse_invalid
from donjon.manifest.input_validator import InputValidator, input_validator
from donjon.own_threads import ThreadsBusy

if TYPE_CHECKING:
    from donjon.lifecycle import Deployed

__all__ = [
    "ON_LOOP_BYTES",
    "PAST_LOOP",
    "LargeEvents",
    "LargeEventsBusy",
    "Refusal",
    "event_json",
    "first_refusal",
    "refusal",
]

P = ParamSpec("P")
T = TypeVar("T")

#: Events up to this size are parsed and checked on the loop (gateway/invoke.py).
ON_LOOP_BYTES = 64 * 1024
#: `event[PAST_LOOP]` is empty unless `event` is past `ON_LOOP_BYTES`: a test of its size
#: that calls nothing (and copies at most a byte).
PAST_LOOP = slice(ON_LOOP_BYTES, ON_LOOP_BYTES + 1)


@dataclass(frozen=True)
class Refusal:
    """Why an event is refused, as the child says it: `kind` is "deep" (nested too deep),
    "json" (not JSON) or "schema" (the schema refuses it: `field` and `rule` say where)."""

    kind: str
    message: str
    hint: str = ""
    field: str | None = None
    rule: str = ""

    def raise_schema(self) -> None:
        """The schema's `InvalidInput` (422) as the loop raises it, if the schema refused."""
        if self.kind == "schema":
            raise InvalidInput(self.message, hint=self.hint, field=self.field, rule=self.rule)


@functools.lru_cache(maxsize=32)
def _validator(schema: str) -> InputValidator:
    """The validator of `schema` (JSON), made once a child (as the registry makes it)."""
    return input_validator(json.loads(schema))


def refusal(event: bytes, schema: str | None, name: str) -> Refusal | None:
    """Why `event` is refused for function `name` whose input_schema is `schema` (JSON;
    None: it declares none), or None: what `parse_json` and `validate` decide."""
    try:
        parsed = boundedjson.loads(event, finite=schema is not None)
    except boundedjson.JSONTooDeep as e:
        return Refusal("deep", e.message, e.hint)
    except ValueError as e:
        return Refusal("json", str(e))
    if schema is None:
        return None
    validator = _validator(schema)
    if validator.quick is not None and validator.quick(parsed):
        return None
    try:
        refuse_invalid(parsed, validator, name)
    except InvalidInput as e:
        return Refusal("schema", e.message, e.hint, e.field, e.rule)
    return None


def first_refusal(events: list[bytes], schema: str | None, name: str) -> Refusal | None:
    """`refusal` of each of `events` in order (one message's records): the first's."""
    for event in events:
        refused = refusal(event, schema, name)
        if refused is not None:
            return refused
    return None


def event_json(event: dict[str, Any]) -> bytes:
    """The JSON of an event the gateway made (an http trigger's): json's defaults, ASCII."""
    return json.dumps(event).encode()


class LargeEventsBusy(ThreadsBusy):
    """As many large events as this node checks at once are being checked or wait."""


class LargeEvents(ChildWork):
    """At most `slots` large events checked at once and `waiting` more queued, half of
    those places one caller's."""

    noun = "checks of large events"

    def __init__(self, slots: int = 1, waiting: int = 7, retry_after_s: float = 2.0) -> None:
        super().__init__(slots, waiting, retry_after_s, "donjon-large-events")

    def _busy(self, message: str) -> LargeEventsBusy:
        return LargeEventsBusy(message, retry_after_s=self.retry_after_s)

    async def refusal(self, caller: str, deployed: Deployed, event: bytes) -> Refusal | None:
        """`refusal` of `event` for `deployed`, in the child, for `caller`."""
        schema = deployed.manifest.input_schema
        # Its keys in their order: errors at one path are named in the schema's order.
        shown = None if schema is None else json.dumps(schema)
        return await self.run(caller, self.in_child, refusal, event, shown, deployed.name)

    async def first_refusal(
        self, caller: str, deployed: Deployed, events: list[bytes]
    ) -> Refusal | None:
        """`first_refusal` of `events` for `deployed`, in the child, for `caller`."""
        schema = deployed.manifest.input_schema
        shown = None if schema is None else json.dumps(schema)
        return await self.run(caller, self.in_child, first_refusal, events, shown, deployed.name)

    async def encoded(self, caller: str, event: dict[str, Any]) -> bytes:
        """`event_json(event)` (an event holding a large body), in the child, for `caller`."""
        return await self.run(caller, self.in_child, event_json, event)

    async def made(self, caller: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` (a module's pure function of a large body: a webhook's
        reading and event, a pushed notification's envelopes), in the child, for `caller`."""
        work = functools.partial(fn, *args, **kwargs)  # picklable: `fn` is a module's
        return await self.run(caller, self.in_child, work)
