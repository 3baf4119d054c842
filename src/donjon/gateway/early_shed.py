"""Shedding an invoke call from its request head alone, before the ASGI app runs.

Under overload most calls are refused: their function's queue is full, or they
would wait past its queue-time budget (sandbox/backlog.py). Refused at `admit`
(gateway/admission.py), each one still costs Starlette's request, the credential
check, the policy and the rate buckets: about half of what a served call costs the
event loop, so past about twice the sustainable rate the refusals alone take the
whole loop and every call, accepted or not, waits in the sockets behind them
(docs/performance.md, "Shedding from the request head").

Here the protocol (connections.py) asks, as soon as a head is parsed, whether a
`POST /v1/functions/{name}/invoke` would be shed if it were admitted now: the same
question `admit` asks the pool (`SandboxPool.check_capacity`), with the same
answer. If so, and only if the head's `Authorization: Bearer` is an API key the
node's key index verifies (`KeyIndex.check`: a keyed hash and a dict lookup) whose
principal the policy allows to invoke that function (`access.decide`, as the invoke
route's `authorize`), it writes a ready-made 503 with Retry-After (the expected
wait, at least 1 s, as at `admit`); no ASGI cycle, task or Starlette object is made.
The refusal is counted (`donjon_rate_limited_total{limit="overload"}`) and audited
as `node.shed` (reason `overload`) with the principal, per principal, client address
and window, by one writer task (audit/denials.py).

Deny by default (DESIGN.md invariant 1): any other head (no credential, a JWT, a
SigV4 signature, an unknown, revoked or expired key, a principal without the grant)
goes to the app untouched and gets the answer it gets without this shed (401/403,
or a shed at `admit` once authenticated), so nothing about a function is told to a
caller who has not authenticated. The heads let through in one turn of the loop reach
`admit` together in the next, so each counts as waiting ahead of the heads after it;
but before a call is shed, only those whose key may invoke the function and is not
known to be over a limit of its own (limited_callers.py) count: the others get their
401, 403 or 429 from the app and never queue, and must not shed the calls of a caller
who may invoke. While the monitor throttles anything
(monitor/throttles.py), every head goes to the app too: a throttle answers 429
before the capacity is asked. A call not shed here goes through every check as
before, and may still be shed at `admit` (calls admitted together). Other ways in
(http triggers, the Lambda API) are shed at `admit`.

While the event loop lags under an overload, a share of the calls the pool would
take is shed here too, the share set by PIE's controller on the loop's lag
(lag_shed.py), of the functions whose calls the pool refused at their own bounds
lately (not at the node's bound alone): same rule, same 503 (Retry-After 1), audited
with reason `loop-lag`.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
import time
from collections.abc import Callable

from donjon.audit import AuditEvent
from donjon.audit.denials import DenialLog
from donjon.gateway.access import decide
from donjon.gateway.lag_shed import LagShed
from donjon.gateway.node import Node
from donjon.identity import Action, Principal, looks_like_jwt
from donjon.obs import REQUEST_ID_LENGTH, mint_request_id
from donjon.obs.metrics import Metrics
from donjon.sandbox import CallShed, InstanceConfig, SandboxPool

__all__ = ["EarlyShed", "bearer_token", "early_shed_for"]

log = logging.getLogger("donjon")

#: The invoke route's path, as the request line carries it (a query string may follow).
_INVOKE = re.compile(rb"/v1/functions/([a-z][a-z0-9-]{0,62})/invoke(?:\?|$)")
#: Denials queued for the audit writer at most; past it the oldest are dropped (and logged).
MAX_QUEUED = 65536
_DETAIL = "overloaded: the node is shedding calls to this function; retry after Retry-After"
_LAG_DETAIL = "overloaded: the node runs late and sheds a share of calls; retry after Retry-After"
#: A head let through (EarlyShed._on_way): whether its call will queue, or its fields
#: while that was not asked.
_Head = bool | list[tuple[bytes, bytes]]


def _shed_parts(detail: str) -> tuple[bytes, bytes, bytes]:
    """The 503's bytes around its two variable parts (the Retry-After seconds, then the
    request id, twice), for `detail`: the head up to `retry-after: `, the rest of the
    head up to the id's header value, and the body's two halves around the id."""
    marker = "0" * REQUEST_ID_LENGTH  # every request id has this many: a fixed length
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": detail,
            "request_id": marker,
        }
    ).encode()
    # The id is the document's last value: its last occurrence, whatever `detail` holds.
    before, _, after = body.rpartition(marker.encode())
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\n"
        "retry-after: "
    ).encode()
    return head, before, after


#: The early shed's two answers, made once (`shed_response` fills in what varies).
_PARTS = {detail: _shed_parts(detail) for detail in (_DETAIL, _LAG_DETAIL)}


def shed_response(retry_after_s: int, keep_alive: bool, detail: str = _DETAIL) -> bytes:
    """A 503 problem document (RFC 9457) with Retry-After and a fresh request id.

    Made from parts built once per detail (`_shed_parts`): under an overload this runs
    for most requests the node reads, and the same bytes through `json.dumps` each
    time cost a tenth of a refusal (docs/performance.md, "the fourteenth round")."""
    parts = _PARTS.get(detail) or _shed_parts(detail)
    head, before, after = parts
    request_id = mint_request_id().encode()
    return b"".join(
        (
            head,
            b"%d" % retry_after_s,
            b"\r\nx-request-id: ",
            request_id,
            b"\r\ncache-control: no-store\r\n",
            b"\r\n" if keep_alive else b"connection: close\r\n\r\n",
            before,
            request_id,
            after,
        )
    )


class _OnWay:
    """The heads of one function let through and not yet at `admit`, oldest first.

    Each is whether its call will queue (its key may invoke the function, and is not
    recorded over a limit of its own: limited_callers.py), or its fields while that was
    not asked: a head the app refuses (401, 403, or 429 to a key known to be over its
    limit) never reaches the queue, so only the others count before a call is shed,
    and each head is asked once, oldest first, only then (`invokers`). A call the pool
    takes pays no key check here.
    """

    __slots__ = ("_asked", "_invokers", "_name", "_table", "_unasked", "count")

    def __init__(self, table: dict[str, _OnWay], name: str) -> None:
        #: The early shed's heads on their way by function, where this is `name`'s
        #: while any head is on its way (`pop` takes it out with the last).
        self._table, self._name = table, name
        #: Heads asked (or known), each whether it will queue: older than every unasked.
        self._asked: collections.deque[bool] = collections.deque()
        #: Heads not asked yet, each its fields (or what is known, behind an unasked one).
        self._unasked: collections.deque[_Head] = collections.deque()
        #: How many of `_asked` will queue.
        self._invokers = 0
        #: Every head on its way, invoker or not: `len(_asked) + len(_unasked)`, kept as
        #: they change (an attribute: the early shed reads it for every head).
        self.count = 0

    def add(self, head: _Head) -> None:
        """One more head, the newest."""
        self.count += 1
        if type(head) is bool and not self._unasked:  # (`isinstance`: bool has no subclass)
            self._asked.append(head)
            self._invokers += head
        else:
            self._unasked.append(head)

    def pop(self) -> bool:
        """The oldest head is about to reach `admit`: out of the count. Whether none is
        left, and then this is out of the early shed's table too (the protocol schedules
        this just before it makes the head's task: `EarlyShed.answer`)."""
        self.count -= 1
        if self._asked:
            self._invokers -= self._asked.popleft()
        else:
            self._unasked.popleft()
        if self.count:
            return False
        del self._table[self._name]
        return True

    def invokers(self, queues: Callable[[list[tuple[bytes, bytes]]], bool]) -> int:
        """How many heads on their way will queue, asking `queues` of each not yet asked."""
        unasked, asked = self._unasked, self._asked
        while unasked:
            head = unasked.popleft()
            known = head if isinstance(head, bool) else queues(head)
            asked.append(known)
            self._invokers += known
        return self._invokers


class EarlyShed:
    """Asks the pool, from a request's method and URL, whether an invoke call would be
    shed now; if so, counts it, queues its denial and gives the answer's bytes."""

    def __init__(
        self, node: Node, denials: DenialLog, metrics: Metrics, lag: LagShed | None = None
    ) -> None:
        self.node = node
        #: The deployed functions by name (`node.registry`'s, one mapping for the node's
        #: life), held here: every invoke call's head looks its name up.
        self.deployed = node.registry.by_name
        #: Sheds a share of the calls the pool takes while the loop lags (None: none).
        self.lag = lag
        self.denials = denials
        self.metrics = metrics
        #: Calls shed here since start (read by the tests and the bench).
        self.shed = 0
        #: Heads let through per function whose task has not had its first step, in
        #: order (`_OnWay`): the heads parsed in one turn of the loop all reach `admit`
        #: in the next, so the pool cannot see them yet, yet they will queue there. A
        #: call past `admit` is not counted: one waiting for its caller's own slots
        #: (gateway/slots.py) must not make another caller's calls look queued.
        self._on_way: dict[str, _OnWay] = {}
        #: Denials waiting for the writer task: bounded, so a flood faster than the
        #: audit log cannot grow memory (the metric still counts every refusal).
        self._queued: collections.deque[tuple[str, str, str, str]] = collections.deque(
            maxlen=MAX_QUEUED
        )
        self._writer: asyncio.Task[None] | None = None
        self._dropped = 0
        self._warned_at = -10.0

    def answer(
        self,
        method: bytes,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        client: str,
        keep_alive: Callable[[], bool],
    ) -> tuple[Callable[[], object] | None, bytes | None]:
        """For this head (`headers` as parsed, names in lower case): the 503 to write, or
        None to let it through. `keep_alive` says whether the connection stays open after
        a 503 (its `connection` field): asked only for a 503, once. A call let through to
        a deployed function is counted as on its way until the first of the pair (else
        None) is called: the protocol schedules it just before it makes the call's task,
        whose first step runs `admit` unless something before it has to wait, in which
        case `admit` sheds it."""
        pool = self.node.pool
        # (`throttles.in_force`: the throttles' truth without a call, as `authenticate`'s)
        if pool is None or method != b"POST" or self.node.throttles.in_force:
            return None, None
        match = _INVOKE.match(url)
        if match is None:
            return None, None
        name = match[1].decode("ascii")  # (`match.group(1)`, without its call)
        deployed = self.deployed.get(name)
        if deployed is None:
            return None, None
        on_way = self._on_way.get(name)
        head: _Head = headers
        try:
            pool.check_in_flight(deployed.config, on_way.count if on_way else 0)
        except CallShed as shed:
            # Only now the credentials: a call the pool takes pays nothing more here.
            principal = self._invoker(headers, name)
            head = self._will_queue(principal, name)
            if principal is not None:
                # No local name holds the refusal: with its traceback, which holds this
                # frame, it would make a reference cycle each refusal (docs/performance.md,
                # "the fifteenth round").
                answer = self._overloaded(
                    self._recount(pool, deployed.config, on_way, shed),
                    pool,
                    deployed.config,
                    principal,
                    client,
                    keep_alive,
                    counts=head,
                )
                if answer is not None:
                    return None, answer
                if self.lag is not None and self.lag.sheds(name):
                    return None, self._lagging(name, principal, client, keep_alive)
        else:
            if self.lag is not None and self.lag.sheds(name):
                principal = self._invoker(headers, name)
                if principal is not None:
                    return None, self._lagging(name, principal, client, keep_alive)
                head = False
        if on_way is None:
            on_way = self._on_way[name] = _OnWay(self._on_way, name)
        on_way.add(head)
        return on_way.pop, None

    def _lagging(
        self, name: str, principal: Principal, client: str, keep_alive: Callable[[], bool]
    ) -> bytes:
        """The 503 for `principal`'s call shed while the loop lags (lag_shed.py), counted
        and queued for the audit."""
        self._refused(name, principal, client, "loop-lag")
        return shed_response(1, keep_alive(), _LAG_DETAIL)

    def _overloaded(
        self,
        refusal: CallShed | None,
        pool: SandboxPool,
        config: InstanceConfig,
        principal: Principal,
        client: str,
        keep_alive: Callable[[], bool],
        *,
        counts: bool,
    ) -> bytes | None:
        """The 503 for `principal`'s call the pool refuses with `refusal`, counted and
        queued for the audit (None: it is not refused). `counts`: the caller is not known
        to be over a limit of its own (its call would queue), so the refusal says the
        function's queue is full, and arms the lag shed for it; unless the node's bound
        alone refused it (`node_only`: other functions' calls filled the node), which
        says nothing of this function's queue."""
        if refusal is None:
            return None
        name = config.function
        pool.refused_at_head(config, refusal, counts=counts)
        if self.lag is not None and counts and not refusal.node_only:
            self.lag.overflowed(name)
        self._refused(name, principal, client, "overload")
        return shed_response(max(1, round(refusal.retry_after_s)), keep_alive())

    def _recount(
        self,
        pool: SandboxPool,
        config: InstanceConfig,
        on_way: _OnWay | None,
        shed: CallShed,
    ) -> CallShed | None:
        """The refusal of an invoker's call that the pool shed counting every head on its
        way: asked again counting only those that will queue, if some will not (None if
        then it may wait). Heads without a credential the app accepts, or of a key over
        a limit of its own, get 401, 403 or 429 there and never queue: counted, they
        would shed the calls of the callers who may invoke."""
        if on_way is None:
            return shed
        invokers = on_way.invokers(lambda headers: self._queues(headers, config.function))
        if invokers == on_way.count:
            return shed
        try:
            pool.check_in_flight(config, invokers)
        except CallShed as again:
            return again
        return None

    def _queues(self, headers: list[tuple[bytes, bytes]], name: str) -> bool:
        """Whether the head's call will queue for `name` (`_will_queue`)."""
        return self._will_queue(self._invoker(headers, name), name)

    def _will_queue(self, principal: Principal | None, name: str) -> bool:
        """Whether a call of `name` by `principal` (`_invoker`'s) will queue: its key may
        invoke it, and no rate bucket or quota of its own refuses it now
        (limited_callers.py; else 429)."""
        return principal is not None and not self.node.limited.limited(principal.label, name)

    def _invoker(self, headers: list[tuple[bytes, bytes]], name: str) -> Principal | None:
        """The principal of the head's bearer API key if the key index verifies it and
        the policy lets it invoke `name`; None for anything else (the app answers it)."""
        token = bearer_token(headers)
        if not token or looks_like_jwt(token):
            return None
        principal, _ = self.node.key_index.check(token)
        if principal is None or not decide(self.node, principal, Action.INVOKE, name).allowed:
            return None
        return principal

    def _refused(self, name: str, principal: Principal, client: str, reason: str) -> None:
        self.shed += 1
        self.metrics.shed(name)
        if len(self._queued) == MAX_QUEUED:  # the oldest goes: logged every 10 s at most
            self._dropped += 1
            now = time.monotonic()
            if now - self._warned_at >= 10.0:
                log.warning("audit of shed calls behind: %d denial(s) not audited", self._dropped)
                self._dropped, self._warned_at = 0, now
        self._queued.append((name, principal.label, client, reason))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        """Audit the queued refusals: one task for all, one record per client and window."""
        try:
            while self._queued:
                name, actor, client, reason = self._queued.popleft()
                event = AuditEvent(
                    actor,
                    "node.shed",
                    f"/v1/functions/{name}/invoke",
                    "denied",
                    {"reason": reason, "method": "POST", "client": client},
                )
                try:
                    await self.denials.deny(event, client)
                except Exception:  # the audit log failing is logged there; keep shedding
                    log.exception("auditing a shed call failed")
        finally:
            self._writer = None


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str:
    """The token of the first `Authorization` header if its scheme is Bearer, else ""
    (read as the app reads it: access.py)."""
    for field, value in headers:
        if field == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


def early_shed_for(node: Node, lag: LagShed | None = None) -> EarlyShed:
    """The node's early shed, auditing through its denial log and counting in its metrics,
    with `lag` shedding a share while the loop lags."""
    return EarlyShed(node, node.denials, node.metrics, lag)
