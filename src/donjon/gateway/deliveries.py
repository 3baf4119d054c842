"""One delivery of an async invocation (the queue's workers call it: triggers/queue/):
a call like any other, with every control: the event checked again against the
input_schema of the version that runs it (a deploy may have changed it since the event
was queued), the function's quarantine, limits, quotas and capacity (`admit`),
its slots, the sandbox, the audit record under the event's trigger kind. Its context
carries the event's CloudEvents 1.0 attributes, whose `id` stays the same on every
attempt (handlers dedupe on it).

The caller of an async invoke is the principal recorded with the event: its key's
limits apply to the delivery; a key revoked since is refused (401, not retried).

An event goes to the function it was queued for or to none: one queued for a version
older than the current owner's run (store/functions.py `since_version`) was for a
function removed since, and the name's new function (perhaps another owner's) must not
get its callers' events: 404, dead-lettered. A redrive is an admin's choice and goes
to the function deployed then.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Sequence

from donjon.audit import AuditEvent
from donjon.errors import Error
from donjon.gateway.access import decide, deny_caller, new_request_id
from donjon.gateway.admission import admit
from donjon.gateway.errors import Forbidden, NotFound, Unauthorized
from donjon.gateway.events import body_limit, check_made
from donjon.gateway.function_errors import FUNCTION_FAILURES, error_fields
from donjon.gateway.invoke import _run
from donjon.gateway.large_events import ON_LOOP_BYTES, LargeEventsBusy
from donjon.gateway.node import Node
from donjon.gateway.problems import retry_after_of, status_for
from donjon.gateway.quota_check import QuotaHeld
from donjon.gateway.response_policy import function_json_response
from donjon.identity import Action, Principal
from donjon.lifecycle import Deployed
from donjon.monitor.quarantine import FunctionQuarantined
from donjon.monitor.throttles import Throttled
from donjon.sandbox import SandboxUnavailable
from donjon.triggers.envelope import Envelope, Submit, SubmitAll
from donjon.triggers.queue import (
    AsyncInvocations,
    FunctionPolicy,
    Outcome,
    QueuedInvocation,
    QueueFull,
    QueueWorkers,
    RetryPolicy,
    SqlInvocationQueue,
)
from donjon.triggers.queue.destinations import destination_event
from donjon.vault.queueseal import QueueSealer

__all__ = ["cloudevent", "deliver", "open_invocations"]

log = logging.getLogger("donjon.queue")

#: The wait after an attempt its function's quarantine refused: a quarantine lasts until
#: a person releases it, so its backlog (up to limits.queued) must not be tried, and
#: audited, every second or two until max_age_s; once released, it runs within this.
QUARANTINED_RETRY_S = 60.0
#: The role a token's event queued before its roles were kept runs under (not decided).
_LEGACY_JWT_ROLE = "jwt"
#: (The same wait after an attempt refused because what is left of its compute quota is
#: reserved by running calls, `QuotaHeld`: tried again at that Retry-After, the call's
#: timeout, the backlog came round every few seconds, a record per event each time.)


def cloudevent(invocation: QueuedInvocation) -> dict[str, str]:
    """The CloudEvents 1.0 context attributes of `invocation` (the producer's delivery id
    as `id` when it has one, else the invocation's own)."""
    attributes = {
        "specversion": "1.0",
        "id": invocation.delivery_id or invocation.id,
        "source": invocation.source,
        "type": invocation.type,
        "time": dt.datetime.fromtimestamp(invocation.enqueued_at, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        # Donjon's extension attributes (lower-case alphanumerics, as the spec asks).
        "donjoninvocation": invocation.id,
        "donjonattempt": str(invocation.attempts),
    }
    if invocation.subject is not None:
        attributes["subject"] = invocation.subject
    return attributes


def _principal(node: Node, invocation: QueuedInvocation) -> Principal | None:
    """The caller recorded with the event, as it is now (None for events from a source)."""
    label = invocation.principal
    if label is None:
        return None
    kind, _, ident = label.partition(":")
    if kind == "key":
        principal = node.key_index.principal_of(ident)
        if principal is None or not node.key_index.is_live(ident):
            raise Unauthorized("the key that made this async invocation is revoked")
        return principal
    # A JWT's principal: its token is not kept; the delivery runs under the roles its token
    # granted (kept with the event), as far as its issuer still grants them, named as the
    # caller was, while its issuer is trusted (removing an issuer refuses its tokens'
    # queued events, as revoking a key does). Their limits and quotas apply: under a
    # stand-in role, `jwt`, a role's compute quota let its queued calls all run (hE-52).
    issuer = node.jwt.issuers.by_name(ident.partition(":")[0]) if kind == "jwt" else None
    if kind == "jwt" and issuer is None:
        raise Unauthorized("the issuer of the token that made this async invocation was removed")
    # The key that signed its token, withdrawn since (an IdP revoking a leaked key, as the
    # node last fetched its JWKS), or its kid given to another key: the token would be
    # refused now, and so is this. A call queued before the key's fingerprint was kept
    # is held to its kid alone.
    signed_by = invocation.signed_by
    if issuer is not None and signed_by is not None:
        key = issuer.keys.get(signed_by)
        if key is None or invocation.signed_key not in (None, key.fingerprint):
            raise Unauthorized(
                "the issuer no longer publishes the key that signed the token that made"
                " this async invocation"
            )
    roles = [r for r in invocation.roles if issuer is None or r in issuer.record.allowed_roles]
    if invocation.roles and not roles:
        raise Unauthorized(
            "the issuer of the token that made this async invocation no longer grants its roles"
        )
    if not roles:  # queued before roles were kept
        return Principal(id=ident, name=ident, role=_LEGACY_JWT_ROLE, kind=kind)
    return Principal(id=ident, name=ident, role=roles[0], kind=kind, more_roles=tuple(roles[1:]))


async def _check_allowed(
    node: Node, deployed: Deployed, principal: Principal | None, request_id: str, trigger: str
) -> None:
    """`Forbidden` (403: dead-lettered, not retried; audited `authz.denied`) unless the
    caller that queued the event may still invoke the function, as its sync call would be
    decided now: a role changed or removed since the enqueue, or a redrive to a function
    it may not invoke, runs nothing. A token's caller is decided under the roles kept
    with its event (before, it was not decided again: a role changed to deny the function
    still ran its tokens' backlog). Events from a source (no principal) are not decided
    again, nor (by the caller) a token's queued before its roles were kept."""
    if principal is None:
        return
    decision = decide(node, principal, Action.INVOKE, deployed.name)
    if decision.allowed:
        return
    reason = f"{Action.INVOKE.value} on {deployed.name} denied: {decision.statement}"
    detail = {
        "role": ",".join((principal.role, *principal.more_roles)),
        "statement": decision.statement,
        "permission": Action.INVOKE.value,
        "trigger": trigger,
    }
    await deny_caller(node, principal, "authz.denied", deployed.name, request_id, reason, detail)
    raise Forbidden("the caller that queued this invocation may no longer invoke the function")


async def _check_throttle(
    node: Node, deployed: Deployed, principal: Principal, request_id: str, trigger: str
) -> None:
    """The monitor's throttle of the caller that queued the event (monitor/throttles.py),
    at every attempt, as on its requests: a key throttled since its events were queued
    (a first_seen or cost finding) does not have its backlog run at full speed. Refused,
    `Throttled` (429: the attempt is given back, retried after its Retry-After), audited
    `throttle.denied` like a request's."""
    try:
        await node.throttles.check("principal", principal.label)
    except Throttled as e:
        await node.denials.deny(
            AuditEvent(
                principal.label,
                "throttle.denied",
                deployed.name,
                "denied",
                {"request_id": request_id, "reason": e.message, "trigger": trigger},
            ),
            principal.label,
        )
        raise


def _failure(error: Error, request_id: str | None, *, ran: bool) -> Outcome:
    if isinstance(error, FUNCTION_FAILURES):
        fields = error_fields(error)
        kind, message = fields["errorType"], fields["errorMessage"]
    elif isinstance(error, SandboxUnavailable):  # its message may name host paths
        kind, message = type(error).__name__, "the function's sandbox could not start"
    else:
        # The summary: an event its schema refuses now is sealed at rest, and the error
        # column is not (the refusal's message quotes the refused value).
        kind, message = type(error).__name__, error.summary()
    return Outcome(
        False,
        request_id,
        status=status_for(error),
        error_type=kind,
        error=message,
        ran=ran,
        # Every refusal's own Retry-After, as a sync caller is told it (problems.py): a
        # rate limit's or quota's, a full queue's, the audit writer's (30 s once its
        # restarts were given up, where the retry policy's backoff would try again every
        # second or so until the event's max_age_s), and a quarantine's.
        retry_after_s=(
            QUARANTINED_RETRY_S
            if isinstance(error, FunctionQuarantined | QuotaHeld)
            else retry_after_of(error)
        ),
    )


async def deliver(node: Node, invocation: QueuedInvocation) -> Outcome:
    """Run one attempt of `invocation`; its outcome (never raises)."""
    request_id = new_request_id()
    ran = False
    try:
        deployed = node.registry.get(invocation.function)
        if deployed is None:
            raise NotFound(f"no function named {invocation.function!r}")
        if invocation.version is not None and invocation.version < deployed.record.since_version:
            # Queued for a function since removed: the name is another deploy's now, perhaps
            # another owner's, whose code must not get that function's callers' events.
            # Not retried (404): dead-lettered, for an admin to redrive or purge.
            raise NotFound(
                f"the function {invocation.function!r} this was queued for (version"
                f" {invocation.version}) was removed; the name was deployed again since"
            )
        # The caller first, as on every request: a key revoked since is refused (401)
        # before its event is read.
        principal = _principal(node, invocation)
        # A token's event queued before its roles were kept runs under the stand-in role
        # (not decided): told by its missing roles, never by the role's name (a custom
        # role may be named `jwt`: its tokens' backlog ran after the role denied it).
        if principal is None or principal.kind != "jwt" or invocation.roles:
            await _check_allowed(node, deployed, principal, request_id, invocation.trigger)
        if principal is not None and node.throttles:
            await _check_throttle(node, deployed, principal, request_id, invocation.trigger)
        # Checked against the schema of the version that runs it (a deploy since its
        # enqueue, or before its redrive, may have added or tightened it): refused, it is
        # dead-lettered at once (422), before any limit is spent. Not its size: the event a
        # webhook or a pushed record makes may be larger than the body that was limited.
        # Past 64 KiB, in a child (large_events.py): the loop free for the other callers.
        caller = principal.label if principal is not None else f"queue:{deployed.name}"
        await check_made(node, caller, invocation.event, deployed)
        # A first attempt whose request's admission counted it already spends no rate
        # bucket or quota again; quarantine and capacity are checked at every attempt.
        first_admitted = invocation.admitted and invocation.attempts == 1
        await admit(
            node, deployed, principal, request_id, invocation.trigger, spend=not first_admitted
        )
        ran = True  # from here the sandbox may have started it
        response = await _run(
            node,
            deployed,
            principal,
            invocation.event,
            request_id,
            invocation.trigger,
            lambda result: function_json_response(result.body, request_id),
            fields={"cloudevent": cloudevent(invocation)},
            attempt=invocation.attempts,
        )
        return Outcome(True, request_id, result=bytes(response.body))
    except Error as e:
        # Slots full (503) is refused before the call starts: a throttle, like a 429.
        return _failure(e, request_id, ran=ran and status_for(e) not in (429, 503))
    except Exception as e:  # a defect: the attempt fails, the queue goes on
        log.exception("async invocation %s: delivery failed", invocation.id)
        return Outcome(
            False, request_id, status=500, error_type=type(e).__name__, error="internal error"
        )


def _policy(node: Node, name: str) -> FunctionPolicy | None:
    deployed = node.registry.get(name)
    if deployed is None:
        return None
    manifest = deployed.manifest
    retry = manifest.retry
    ends = {manifest.destinations.on_success, manifest.destinations.on_failure} - {None}
    return FunctionPolicy(
        RetryPolicy(retry.attempts, retry.backoff_s, retry.max_age_s),
        manifest.destinations.on_success,
        manifest.destinations.on_failure,
        manifest.limits.queued,
        deployed.record.version,
        since=deployed.record.since_version,
        body=body_limit(deployed, node.settings.requests.max_body_bytes),
        lapsed=frozenset(n for n in ends if n is not None and _lapsed(node, deployed, n)),
    )


def _lapsed(node: Node, deployed: Deployed, name: str) -> bool:
    """A destination deployed again since `deployed` named it (perhaps by another owner,
    who would get its callers' events); one not deployed is the enqueue's to refuse."""
    target = node.registry.get(name)
    return target is not None and not deployed.grant_holds(target)


async def _refused(node: Node, envelope: Envelope, error: QueueFull) -> None:
    """An enqueue refused by the function's `limits.queued`, its dead letters' bound or
    the node's ceiling: counted (`donjon_rate_limited_total{limit="queued"}`, `"dead"`,
    `"node_queued"`) and audited in aggregate like every limit's refusal
    (`invocation.refused`, one record per sender, function and window)."""
    node.metrics.rate_limited.labels(envelope.function, error.limit).inc()
    await node.denials.deny(
        AuditEvent(
            envelope.principal or envelope.trigger,
            "invocation.refused",
            envelope.function,
            "denied",
            {
                "reason": error.reason,
                "limit": error.limit,
                "bound": error.bound,
                "wanted": error.wanted,
                "trigger": envelope.trigger,
                "source": envelope.source[:300],
            },
        ),
        "-",
        scope=envelope.function,
    )


def _gated(node: Node, submit: Submit, submit_all: SubmitAll) -> tuple[Submit, SubmitAll]:
    """`submit` and `submit_all` refusing (503, `AuditUnavailable`) while no audit writer
    runs, before anything is queued: an event queued whose record then fails would be
    sent again by its source (a storage push, a queue's message seen again), and queued
    again each time (audit/remote.py, `require`)."""

    async def gated(envelope: Envelope) -> str:
        node.audit.require_writer()
        return await submit(envelope)

    async def gated_all(envelopes: Sequence[Envelope]) -> list[str]:
        node.audit.require_writer()
        return await submit_all(envelopes)

    return gated, gated_all


async def _destination_event(
    node: Node, invocation: QueuedInvocation, outcome: Outcome, limit: int | None
) -> bytes:
    """`destination_event`: on the loop when its two payloads together are within
    `ON_LOOP_BYTES`, else in the large events' child (two payloads of up to 256 KiB parsed
    and the record encoded, up to three times: 30-67 ms of the loop a record). A child too
    busy now: made here, as before (a record is not dropped for the node's load)."""
    if len(invocation.event) + len(outcome.result) <= ON_LOOP_BYTES:
        return destination_event(invocation, outcome, limit)
    caller = f"destination:{invocation.function}"
    try:
        return await node.large_events.made(caller, destination_event, invocation, outcome, limit)
    except LargeEventsBusy:
        return destination_event(invocation, outcome, limit)


def open_invocations(node: Node) -> QueueWorkers:
    """The node's async invocations on its own database: `node.invocations` and
    `node.submit` (every trigger's way in), and the workers that deliver them (started
    and stopped by the app, DONJON_QUEUE_*)."""
    service = AsyncInvocations(
        SqlInvocationQueue(  # sealed at rest
            node.engine,
            QueueSealer(node.master),
            max_dead=node.settings.queue.max_dead,
            max_pending=node.settings.queue.max_pending,
        ),
        node.audit,
        lambda name: _policy(node, name),
        node.changes,
    )
    service.on_full = functools.partial(_refused, node)
    node.invocations = service
    node.submit, node.submit_all = _gated(node, service.submit, service.submit_all)
    settings = node.settings
    return QueueWorkers(
        service,
        lambda invocation: deliver(node, invocation),
        node.audit,
        workers=settings.queue.workers,
        lease_s=settings.queue.lease_s,
        poll_s=settings.queue.poll_s,
        keep_s=settings.log_retention_days * 86400.0,
        keep_succeeded=settings.queue.keep_succeeded,
        refusals=lambda event: node.denials.deny(event, "-", scope=event.target),
        owners=lambda: {d.name: d.record.owner for d in node.registry.all()},
        make_record=functools.partial(_destination_event, node),
    )
