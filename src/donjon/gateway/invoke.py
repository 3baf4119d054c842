"""The hot path: POST /v1/functions/{name}/invoke, and the call every way in runs
(`_run`: the http triggers and schedules of trigger_routes.py, async deliveries, Lambda).

authenticate -> authorize -> read and validate input -> sandbox -> build the
response (response_policy) -> audit the real outcome (durable before the
response is sent) -> response.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from donjon.audit import AuditEvent
from donjon.audit.errors import AuditError
from donjon.audit.log import InvocationLog
from donjon.errors import Error
from donjon.gateway.access import (
    authenticate,
    authorize,
    check_still_live,
    client_address,
    credential_ended,
    parse_json,
)
from donjon.gateway.admission import actor_of, admit, busy_given_back
from donjon.gateway.async_invoke import respond_async, wants_async
from donjon.gateway.call_errors import error_response, reveals
from donjon.gateway.call_plan import CallPlan, function_meta, plan_for
from donjon.gateway.calllog import NOTE, call_log, printed
from donjon.gateway.errors import BadFunctionResponse, NotFound
from donjon.gateway.events import (
    body_limit,
    check_event_size,
    check_large,
    read_event,
    refuse_declared,
    validate,
)
from donjon.gateway.function_calls import Chain, ChainParts, answer_call, check_sent
from donjon.gateway.large_events import PAST_LOOP
from donjon.gateway.node import Node
from donjon.gateway.policy_audit import record_policy_events
from donjon.gateway.quota_check import reserve_compute, settle_compute
from donjon.gateway.response_policy import (
    RenderedResponse,
    function_json_response,
    refused_headers,
)
from donjon.gateway.slots import hold_slots
from donjon.identity import Action, Principal
from donjon.lifecycle import Deployed
from donjon.obs import bind_request_id, log_secrets, mint_request_id
from donjon.sandbox import CallResult, SandboxError
from donjon.sandbox.policy_events import PolicyEvent
from donjon.sandbox.pool import RunsOn, SandboxPool
from donjon.sandbox.replies import MAX_RESULT, check_result_size
from donjon.sandbox.subcalls import SubCall
from donjon.vault.redact import Redactor

__all__ = ["Render", "handle_invoke"]

#: A JSON string literal, as `json.dumps` writes it (ASCII, escaped).
_json_string: Callable[[str], str] = json.encoder.encode_basestring_ascii
#: The redactor of a call granted no secret: takes nothing out.
_NO_SECRETS = Redactor({})

log = logging.getLogger("donjon")

#: Builds the HTTP response from a call's result; raising is the call's outcome.
Render = Callable[[CallResult], RenderedResponse]


def _meta(
    deployed: Deployed,
    request_id: str,
    principal: Principal | None,
    secrets: dict[str, str],
    timeout_s: float,
    max_result: int = MAX_RESULT,
    fields: dict[str, object] | None = None,
    plan: CallPlan | None = None,
) -> bytes:
    """The call's context, sent over the control channel (never env, argv or files):
    `secrets` holds the values of exactly the secrets the manifest grants, `max_result`
    is the largest result the runtime may return (DONJON_MAX_RESPONSE_BYTES; sent only
    when lower than the runtime's own cap, which it is by default), `fields` the call's
    further context: an async delivery's CloudEvents 1.0 attributes (`cloudevent`:
    gateway/deliveries.py), a Lambda caller's `client_context` (lambda_api.py).

    The same JSON `json.dumps` writes for that dict, put together from its parts (its
    encoder's set-up cost more than the encoding of seven fields); a keyed call's `plan`
    (call_plan.py) holds the parts naming the function and the caller."""
    if plan is not None:
        function, label = plan.function_meta, plan.principal_meta
    else:
        function = function_meta(deployed)
        label = _json_string(principal.label) if principal else "null"
    cap = f', "max_result": {int(max_result)}' if max_result < MAX_RESULT else ""
    if fields:
        for name, value in fields.items():
            cap += f", {_json_string(name)}: {json.dumps(value)}"
    return (
        f'{{"request_id": {_json_string(request_id)}{function}'
        f', "deadline": {float(time.time() + timeout_s)!r}, "principal": {label}'
        f', "secrets": {json.dumps(secrets) if secrets else "{}"}'
        f"{cap}}}"
    ).encode()


async def _run(
    node: Node,
    deployed: Deployed,
    principal: Principal | None,
    event: bytes,
    request_id: str,
    trigger: str,
    render: Render,
    chain: Chain | None = None,
    on_log: Callable[[str], None] | None = None,
    client: str | None = None,
    fields: dict[str, object] | None = None,
    plan: CallPlan | None = None,
    attempt: int | None = None,
) -> Response:
    """`_call` holding the call's concurrency slots (gateway/slots.py): a call that finds a
    cap full for the bounded wait is refused (503) before it starts; the slots are given
    back however the call ends (answered, failed, timed out, disconnected, cancelled), its
    time charged to its compute quotas (quota_check.py). `plan`: call_plan.py."""
    # Again here: the writer may have died since the call's admission (its body read, its
    # slot waited for); a call refused now spent a rate token, but runs unrecorded never.
    node.audit.require_writer()
    held = await hold_slots(
        node, deployed, principal, request_id, trigger, plan.limits if plan is not None else None
    )
    try:  # within its compute quotas (a refusal is charged nothing), reserved while it runs
        # Its credential, again (its body and its slots took time); audited if it ended.
        if principal is not None and credential_ended(node, principal) is not None:
            await check_still_live(node, principal, deployed.name, request_id, trigger=trigger)
        quotas = bool(node.quotas.in_force)  # (whether any quota is set: no call)
        reserved = (
            await reserve_compute(node, deployed, principal, request_id, trigger)
            if quotas
            else None
        )
        started = time.perf_counter()
        actor = actor_of(principal, trigger)  # (once: the journal's and the record's)
        # Noted where the node's kill cannot take it, until its own record is durable
        # (a node killed meanwhile records it `interrupted` at its next start).
        journal = node.calls_in_flight  # (None: a node not started, with no pool to call in)
        note = (
            journal.begin(
                chain.request_id if chain is not None else request_id,
                plan.target if plan is not None else f"{deployed.name}@{deployed.record.version}",
                trigger,
                actor,
                started,
            )
            if journal is not None
            else -1
        )
        try:
            return await _call(
                node,
                deployed,
                principal,
                actor,
                event,
                request_id,
                trigger,
                render,
                chain,
                on_log,
                client,
                fields,
                plan,
                held.runs_on,
                attempt,
                started=started,
            )
        except AuditError:  # its record was not written: the note stays, for the next start
            note = -1
            raise
        finally:  # its wall time (to its processes' end), charged; its reservation given back
            if journal is not None and note >= 0:
                journal.end(note)
            # `_call` wrote its log entry (store/trim.py); (`record.name`: no property call)
            node.log_bound.note(deployed.record.name)
            if quotas or reserved is not None:
                charge = functools.partial(settle_compute, node, deployed, principal)
                await held.after(lambda: charge(time.perf_counter() - started, reserved))
    finally:  # (once its processes are gone, if they run on past its answer)
        if not held.end_now():  # (the node's own slots given back without a coroutine)
            await held.end()


async def _call(
    node: Node,
    deployed: Deployed,
    principal: Principal | None,
    actor: str,
    event: bytes,
    request_id: str,
    trigger: str,
    render: Render,
    chain: Chain | None = None,
    on_log: Callable[[str], None] | None = None,
    client: str | None = None,
    fields: dict[str, object] | None = None,
    plan: CallPlan | None = None,
    runs_on: RunsOn | None = None,
    attempt: int | None = None,
    *,
    started: float,
) -> Response:
    """Run the function and build its response; audit the real outcome (durably) whatever it is.

    The response is built before the record is written, so a result the gateway
    cannot send is audited as the failure it is, and returned only once durable.
    A call made by another function (`chain`) gets what is left of its caller's
    time, and its record names the request the chain started from.
    `actor`, the record's: `actor_of(principal, trigger)`, made once by `_run`.
    `on_log`, if given, receives the call's log as stored (redacted, bounded).
    `client`, the caller's address, is recorded (the monitor's first-seen sources).
    `attempt`, an async delivery's (1 first): a retry is the platform's doing, not its
    caller's (the monitor leaves it out of the caller's baselines: monitor/calls.py).
    `started`, the call's start (`time.perf_counter()`), read once by `_run`: the same
    instant its journal note, its duration and its compute charge are counted from.
    """
    if node.pool is None:
        raise SandboxError("the node is not serving")
    outcome = "interrupted"  # what the record says if anything unforeseen ends the call
    output = ""
    memory_kb: int | None = None
    detail = {} if chain is None and attempt is None else _detail(request_id, chain, attempt)
    policy_events: list[PolicyEvent] = []
    timeout_s, subcalls = _subcalls(node, deployed, request_id, chain, principal)
    # What the function prints and its errors are redacted of its secrets' values
    # before anything is stored or answered; its own result is its choice.
    redact = _NO_SECRETS
    granted: dict[str, str] = {}
    max_result = node.settings.requests.max_response_bytes
    try:
        # (a coroutine only for a function granted secrets: most are granted none)
        granted, redact = (
            await _open_secrets(node, deployed)
            if deployed.manifest.permissions.secrets
            else (granted, redact)
        )
        result = await _in_sandbox(
            node.pool,
            deployed,
            _meta(deployed, request_id, principal, granted, timeout_s, max_result, fields, plan),
            event,
            timeout_s,
            subcalls,
            request_id,
            runs_on,
            redact,
        )
        _note_reads(detail, result, granted, policy_events)
        check_result_size(result, max_result)
        # (`printed` called only when its search finds something; a redactor of no secret,
        # which returns its text as given, not called)
        out = result.output if redact is _NO_SECRETS else redact(result.output)
        output = printed(out) if NOTE in out else out
        memory_kb = result.memory_kb
        rendered = render(result)
        # (`refused_headers`' own test first: most responses have none refused)
        output += refused_headers(detail, rendered) if rendered.refused else ""
        outcome = "ok"
        return rendered.response
    except SandboxError as e:
        outcome, memory_kb = type(e).__name__, e.memory_kb
        _note_reads(detail, e, granted, policy_events)
        _redact_error(e, redact)
        output = call_log(printed(redact(e.output)), redact(e.trace), f"{e.title}: {e.message}")
        raise
    except BadFunctionResponse as e:
        outcome = type(e).__name__
        _redact_error(e, redact)
        output += f"{NOTE} {e.title}: {e.message}\n"
        raise
    except Exception as e:
        outcome = type(e).__name__
        raise
    finally:
        elapsed = time.perf_counter() - started
        node.metrics.invocation(deployed.record.name, outcome, elapsed)  # (no property call)
        # Every call leaves its entry (`donjon logs` prints START/END/REPORT for
        # each), its output bounded whatever the function printed (calllog.py).
        log = InvocationLog(
            deployed.record.name,
            deployed.record.version,
            request_id,
            outcome,
            call_log(output) if output else "",  # (`call_log`'s own answer for none)
            duration_ms=round(elapsed * 1000, 3),
            memory_kb=memory_kb,
        )
        if on_log is not None:
            on_log(log.output)
        await node.audit.record(
            AuditEvent(
                actor,
                "function.invoke",
                plan.target if plan is not None else f"{deployed.name}@{deployed.record.version}",
                outcome,
                {
                    "request_id": chain.request_id if chain else request_id,
                    "duration_ms": log.duration_ms,  # (rounded once)
                    "trigger": trigger,
                    "memory_mb": deployed.manifest.memory_mb,  # its cost: duration x memory
                    **({"client": client} if client is not None else {}),
                    **detail,
                },
            ),
            log,
        )
        if policy_events:
            await record_policy_events(
                node.audit, deployed, request_id, actor, policy_events, redact, chain
            )


async def _in_sandbox(
    pool: SandboxPool,
    deployed: Deployed,
    meta: bytes,
    event: bytes,
    timeout_s: float,
    subcalls: SubCall,
    request_id: str,
    runs_on: RunsOn | None,
    redact: Redactor,
) -> CallResult:
    """The call in the sandbox; meanwhile the server's lines lose its secrets' values too
    (obs/: nothing to bind for a function granted none, as most are)."""
    if redact is _NO_SECRETS:
        return await pool.invoke(
            deployed.config, meta, event, timeout_s, subcalls, request_id, runs_on
        )
    with log_secrets(redact):
        return await pool.invoke(
            deployed.config, meta, event, timeout_s, subcalls, request_id, runs_on
        )


def _detail(request_id: str, chain: Chain | None, attempt: int | None) -> dict[str, Any]:
    """The call record's own fields to begin with: a sub-call's ids, a delivery's attempt."""
    detail: dict[str, Any] = (
        {"call_id": request_id, "caller_call_id": chain.made_by} if chain is not None else {}
    )
    if attempt is not None:
        detail["attempt"] = attempt
    return detail


async def _open_secrets(node: Node, deployed: Deployed) -> tuple[dict[str, str], Redactor]:
    """The values of the secrets the function is granted, and their redactor."""
    grants = deployed.manifest.permissions.secrets
    if not grants:
        return {}, _NO_SECRETS
    granted = await node.vault.open_granted(grants)
    return granted, Redactor(granted)


def _subcalls(
    node: Node, deployed: Deployed, request_id: str, chain: Chain | None, caller: Principal | None
) -> tuple[float, SubCall]:
    """The call's timeout (never past its caller's deadline) and what answers its
    `context.invoke` requests (function_calls.py), which spend `caller`'s quotas too (the
    chain's caller from outside): its `FunctionCalls` and `Chain` made by each sub-call."""
    timeout_s = deployed.manifest.timeout_s
    if chain is not None:
        timeout_s = max(0.01, min(timeout_s, chain.deadline - time.monotonic()))
    parts: ChainParts = (
        chain.request_id if chain else request_id,
        chain.depth if chain else 0,
        time.monotonic() + timeout_s,
        request_id,  # the calls it makes name it as the call that made them
        chain.payer if chain else caller,
    )
    # (a sub-call's own id: mint_request_id; the logs keep the chain's, bound by the gateway)
    calls = functools.partial(answer_call, node, deployed, parts, _call_function, mint_request_id)
    return timeout_s, calls


async def _call_function(
    node: Node, callee: Deployed, caller: Principal, event: bytes, request_id: str, chain: Chain
) -> bytes:
    """One `context.invoke` (function_calls.py): the callee's checks, call and record."""
    check_event_size(event, callee, body_limit(callee, node.settings.requests.max_body_bytes))
    await admit(node, callee, caller, chain.request_id, "function")
    await check_sent(node, callee, caller, event, chain.request_id)  # past 64 KiB: a child's
    response = await _run(
        node,
        callee,
        caller,
        event,
        request_id,
        "function",
        lambda result: function_json_response(result.body, request_id),
        chain,
    )
    return bytes(response.body)


def _note_reads(
    detail: dict[str, Any],
    call: CallResult | SandboxError,
    granted: dict[str, str],
    policy_events: list[PolicyEvent],
) -> None:
    """Which granted secrets the call read, for `donjon permissions unused` (omitted if none),
    and what it did that its runtime policies watch (into `policy_events`).

    The worker reports the names and is trusted for nothing: only granted names are kept."""
    if call.policy_events:
        policy_events.extend(call.policy_events)
    if call.secrets_read and (read := [name for name in call.secrets_read if name in granted]):
        detail["secrets_read"] = read


def _redact_error(error: Error, redact: Redactor) -> None:
    """The error's message (and `str(error)`) without the function's secret values; so its
    `errorType` and `errorMessage` too, both taken from the function's error line before
    (an exception class named by a value put it in errorType, in clear)."""
    if redact:
        error.message = redact(error.message)
        error.args = (error.message,)
        if isinstance(error, SandboxError):
            error.error_type = redact(error.error_type)
            if error.error_message is not None:
                error.error_message = redact(error.error_message)


async def handle_invoke(request: Request) -> Response:
    scope = request.scope  # (what `request.app` and `request.path_params` read, no call)
    node: Node = scope["app"].state.node
    request_id = mint_request_id()  # `new_request_id`'s two steps, without its own call
    bind_request_id(request_id)
    name = scope["path_params"]["name"]
    caller: tuple[Principal, Deployed] | None = None  # known once both are
    try:
        principal = await authenticate(node, request, request_id)
        deployed = node.deployments.registry.by_name.get(name)  # (no property, no method)
        # A keyed caller's checks on this version, resolved once (call_plan.py); a refusal,
        # a JWT's principal or a missing function is decided (and audited) as it comes.
        plan = plan_for(node, principal, deployed) if deployed is not None else None
        if plan is None or not plan.allowed:
            await authorize(node, request, principal, Action.INVOKE, request_id, name)
        if deployed is None:
            raise NotFound(f"no function named {name!r}")
        caller = (principal, deployed)
        limit = (
            plan.body_limit
            if plan is not None
            else body_limit(deployed, node.settings.requests.max_body_bytes)
        )
        refuse_declared(request, deployed, limit)  # before the call spends any of its limits
        limits = plan.limits if plan is not None else None
        await admit(node, deployed, principal, request_id, "invoke", limits=limits)
        body = await read_event(request, deployed, limit, declared_checked=True) or b"{}"
        # Past ON_LOOP_BYTES (a slice: no call), checked in a child; its 503 gives admit's back.
        if body[PAST_LOOP]:
            checked = check_large(node, request, principal.label, deployed, body, request_id)
            await busy_given_back(checked, node, deployed, principal, "invoke")
        else:
            parsed = await parse_json(
                node,
                request,
                principal.label,
                body,
                request_id,
                finite=deployed.validator is not None,
            )
            validate(parsed, deployed)
        if wants_async(request):  # checked as a sync call is; queued, answered 202 at once
            return await respond_async(node, deployed, principal, body, request, request_id)
        return await _run(
            node,
            deployed,
            principal,
            body,
            request_id,
            "invoke",
            lambda result: function_json_response(result.body, request_id),
            client=client_address(request),
            plan=plan,
        )
    except Error as e:
        return error_response(e, request_id, reveal=reveals(node, caller, e))
