"""`context.invoke(name, event)`: one function calling another, through the gateway's checks.

The sandbox carries a handler's request to the host mid-call (sandbox/subcalls.py);
`FunctionCalls` answers it. In order:

1. the grant: the manifest `permissions.invoke` of the caller's running version, and of
   its version deployed now, names the callee, as deployed when the caller's deploy
   checked the grant (a callee removed and deployed again since, perhaps by another
   owner, is not granted); the caller is not quarantined (a redeploy that takes the
   grant away, and a quarantine, stop what its calls running now start, not only its
   next calls);
2. the depth: a chain of calls (A -> B -> A ...) goes at most `MAX_DEPTH` deep;
   a refusal at 1 or 2 is audited as `authz.denied` by actor `function:<caller>`;
3. the deadline: the callee gets what is left of its caller's time (less half a
   second, for the caller to act on the outcome), at most its own timeout, so it
   never outlives the call that made it;
4. then the callee runs as any call does (invoke.py): its rate limit, its input
   schema, its concurrency, its own secrets and redaction, and its audit record
   (`function.invoke`, actor `function:<caller>`, detail with the original
   request id, its own `call_id`, its caller's `caller_call_id` and
   `"trigger": "function"`).

What the caller's handler sees of a failure is a kind and one line (never the
callee's trace or error text, as for any caller): context.py raises it as
`InvokeDenied` or `InvokeError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from donjon import boundedjson
from donjon.audit import AuditEvent
from donjon.errors import Error
from donjon.gateway.errors import BadRequest, InvalidInput, PayloadTooLarge
from donjon.gateway.events import validate
from donjon.gateway.large_events import PAST_LOOP
from donjon.gateway.quota_check import subjects_of
from donjon.gateway.slots import ConcurrencyFull
from donjon.identity import Principal
from donjon.ratelimit import RateLimitError
from donjon.sandbox import (
    CallShed,
    FunctionTimeout,
    SandboxError,
    TooManyInvocations,
    answer_error,
    answer_ok,
)

if TYPE_CHECKING:
    from donjon.gateway.node import Node
    from donjon.lifecycle import Deployed

__all__ = [
    "MAX_DEPTH",
    "Chain",
    "ChainParts",
    "FunctionCalls",
    "RunCallee",
    "answer_call",
    "check_sent",
    "function_principal",
    "parse_event",
]

#: Calls below the request from outside, at most: A -> B -> C -> D -> E stops here.
MAX_DEPTH = 4
#: Less time than this left for the callee: no call is started.
_MIN_LEFT_S = 0.05
#: The callee's deadline is this much before its caller's: its end (a timeout
#: included) reaches the caller while the caller may still act on it.
_MARGIN_S = 0.5


@dataclass(frozen=True, slots=True)
class Chain:
    """Where a call stands in a chain of `context.invoke` calls."""

    #: The id of the request from outside that started the chain.
    request_id: str
    #: 0 for that request, 1 for a function it invoked, and so on.
    depth: int
    #: time.monotonic() by which every call of the chain below this one ends.
    deadline: float
    #: The own id of the call whose `context.invoke` makes the calls below this point
    #: (each callee's record names it, `caller_call_id`); the request's own at depth 0.
    made_by: str = ""
    #: Who made the request from outside (None: a schedule, a public trigger): every call
    #: of the chain spends its quotas too, so a function's fan-out is its caller's bill.
    payer: Principal | None = None


#: Runs `callee` for a caller: (node, callee, principal, event, the callee's own request
#: id, the chain it joins) -> its JSON result; raises the call's `Error`.
RunCallee = Callable[["Node", "Deployed", Principal, bytes, str, Chain], Awaitable[bytes]]


def function_principal(caller: str, payer: Principal | None = None) -> Principal:
    """Who a function is when it calls another: `function:<caller>`, with no role.

    Its rights are its manifest's grants, checked here, never the policy's roles. Its
    calls spend the quotas of `payer` (the chain's caller from outside) too.
    """
    charged = () if payer is None else tuple(subjects_of(payer, "")[1:])
    return Principal(id=caller, name=caller, role="", kind="function", charged_to=charged)


#: A `Chain`'s fields, in its order (`answer_call`: made into one only when it is needed).
ChainParts = tuple[str, int, float, str, Principal | None]


async def answer_call(
    node: Node,
    caller: Deployed,
    parts: ChainParts,
    run: RunCallee,
    new_id: Callable[[], str],
    name: str,
    event: bytes,
) -> tuple[bytes, bytes]:
    """`FunctionCalls(node, caller, Chain(*parts), run, new_id)(name, event)`: a call's
    `context.invoke` answered, bound with `functools.partial` (gateway/invoke.py) so the
    calls that make none (most) build neither (it holds nothing from one request to the
    next: each is answered the same by one made for it)."""
    return await FunctionCalls(node, caller, Chain(*parts), run, new_id)(name, event)


class FunctionCalls:
    """Answers the `context.invoke` requests of one call of `caller`."""

    __slots__ = ("_caller", "_chain", "_new_id", "_node", "_run")

    def __init__(
        self,
        node: Node,
        caller: Deployed,
        chain: Chain,
        run: RunCallee,
        new_id: Callable[[], str],
    ) -> None:
        self._node = node
        self._caller = caller
        self._chain = chain
        self._run = run
        self._new_id = new_id

    async def __call__(self, name: str, event: bytes) -> tuple[bytes, bytes]:
        caller = self._caller.name
        refused = self._refusal(name)
        if refused is not None:
            reason, statement = refused
            await self._deny(name, reason, statement)
            return answer_error("denied", f"{caller} may not invoke {name}: {reason}")
        depth = self._chain.depth + 1
        deadline = self._chain.deadline - _MARGIN_S
        left = deadline - time.monotonic()
        if left < _MIN_LEFT_S:
            return answer_error("timeout", f"no time left to invoke {name} before the deadline")
        callee = self._node.registry.get(name)
        if callee is None:
            return answer_error("not-found", f"no function named {name!r}")
        if not self._caller.grant_holds(callee):
            reason = (
                f"{name} was removed and deployed again since {caller} was deployed:"
                f" deploy {caller} again to grant the new {name}"
            )
            await self._deny(name, reason)
            return answer_error("denied", f"{caller} may not invoke {name}: {reason}")
        call_id = self._new_id()
        chain = Chain(
            self._chain.request_id, depth, deadline, self._chain.made_by, self._chain.payer
        )
        try:
            # A backstop: the callee's own timeout ends it first, this ends a wait for
            # its concurrency or its sandbox's start before the caller's deadline.
            async with asyncio.timeout(left + _MARGIN_S / 2):
                principal = function_principal(caller, self._chain.payer)
                body = await self._run(self._node, callee, principal, event, call_id, chain)
        except TimeoutError:
            return answer_error("timeout", f"{name} did not answer before the caller's deadline")
        except Error as e:
            return _failure(name, call_id, e)
        return answer_ok(body)

    def _refusal(self, name: str) -> tuple[str, str] | None:
        """Why the caller may not invoke `name` now, and what decided it; None if it may.

        The grant must be in the version running and in the version deployed now: a
        redeploy that takes a grant away (or a removal) holds for the calls already
        running, not only the next ones; a grant added since gives them nothing."""
        caller = self._caller.name
        if name not in self._caller.manifest.permissions.invoke:
            return f"permissions.invoke of {caller} does not grant {name}", "permissions.invoke"
        current = self._node.registry.get(caller)
        if current is None or name not in current.manifest.permissions.invoke:
            reason = f"the version of {caller} deployed now does not grant {name}"
            return reason, "permissions.invoke"
        if self._node.quarantines.get(caller) is not None:
            return f"{caller} is quarantined", "quarantine"
        depth = self._chain.depth + 1
        if depth > MAX_DEPTH:
            reason = f"the chain of calls would be {depth} deep, over the limit of {MAX_DEPTH}"
            return reason, "permissions.invoke"
        return None

    async def _deny(self, callee: str, reason: str, statement: str = "permissions.invoke") -> None:
        """Audit a refused call (aggregated per caller like any denial: a loop adds one record);
        `statement`: what decided it."""
        actor = f"function:{self._caller.name}"
        self._node.metrics.denied("authz.denied", reason)
        await self._node.denials.deny(
            AuditEvent(
                actor,
                "authz.denied",
                callee,
                "denied",
                {
                    "request_id": self._chain.request_id,
                    "reason": reason,
                    "permission": "function:invoke",
                    "statement": statement,
                    "trigger": "function",
                },
            ),
            actor,
        )


async def parse_event(
    node: Node, callee: Deployed, caller: Principal, event: bytes, request_id: str
) -> Any:
    """The event a function sent `callee`, parsed as a body from outside is: `BadRequest` if
    it is not JSON (finite when a schema checks it: the caller's frame need not come from
    jsonwire); nesting past the bound is also audited (`input.refused` by the caller)."""
    try:
        return boundedjson.loads(event, finite=callee.validator is not None)
    except boundedjson.JSONTooDeep as e:
        await _refuse_deep(node, callee, caller, e.message, request_id)
        raise BadRequest(e.message, hint=e.hint) from e
    except ValueError as e:
        raise BadRequest(_NOT_JSON) from e


async def check_sent(
    node: Node, callee: Deployed, caller: Principal, event: bytes, request_id: str
) -> None:
    """`parse_event` and `validate` of an event a function sent `callee`: on the loop up to
    `ON_LOOP_BYTES`, past it in the child (large_events.py), with the same refusals."""
    if not event[PAST_LOOP]:
        validate(await parse_event(node, callee, caller, event, request_id), callee)
        return
    refused = await node.large_events.refusal(caller.label, callee, event)
    if refused is None:
        return
    refused.raise_schema()
    if refused.kind == "deep":
        await _refuse_deep(node, callee, caller, refused.message, request_id)
        raise BadRequest(refused.message, hint=refused.hint)
    raise BadRequest(_NOT_JSON)


#: What the caller learns of an event that is not JSON (never the parser's words).
_NOT_JSON = "the event is not JSON"


async def _refuse_deep(
    node: Node, callee: Deployed, caller: Principal, reason: str, request_id: str
) -> None:
    """Audit an event nested too deep (`input.refused` by the caller, aggregated)."""
    node.metrics.denied("input.refused", reason)
    await node.denials.deny(
        AuditEvent(
            caller.label,
            "input.refused",
            callee.name,
            "denied",
            {"request_id": request_id, "reason": reason, "trigger": "function"},
        ),
        caller.label,
    )


def _failure(name: str, call_id: str, error: Error) -> tuple[bytes, bytes]:
    """What the caller learns of a call that gave no result: its kind and one line."""
    if isinstance(error, RateLimitError | TooManyInvocations | CallShed | ConcurrencyFull):
        return answer_error("throttled", f"{error.message} ({error.hint})")
    if isinstance(error, InvalidInput | BadRequest | PayloadTooLarge):
        return answer_error("invalid", error.message)
    if isinstance(error, FunctionTimeout):
        return answer_error("timeout", f"{name} timed out (request {call_id})")
    if isinstance(error, SandboxError):
        return answer_error(
            "error", f"{name} failed: {error.title}; see `donjon logs {name}` for request {call_id}"
        )
    return answer_error("error", f"{name} failed: {error.title} (request {call_id})")
