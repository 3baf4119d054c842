"""The audit records of runtime policies: `policy.alert` and `policy.block`.

One per call and policy, written after the call's `function.invoke` record,
with what was seen (sandbox/policy_events.py says who saw it and how far it
is trusted). The monitor reads them; `donjon audit tail` shows them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from donjon.audit import AuditEvent, AuditLog
from donjon.lifecycle import Deployed
from donjon.sandbox.policy_events import PolicyEvent
from donjon.vault.redact import Redactor

if TYPE_CHECKING:
    from donjon.gateway.function_calls import Chain

__all__ = ["policy_record", "record_policy_events"]


def policy_record(
    deployed: Deployed,
    request_id: str,
    caller: str,
    event: PolicyEvent,
    redact: Redactor,
    chain: Chain | None = None,
) -> AuditEvent:
    """The record of `event`, seen in call `request_id` of `deployed` made by `caller`.

    A call another function made (context.invoke: `chain`) names, as its own record does,
    the request from outside that started the chain as `request_id` and itself as
    `call_id`, so that what a chain did is found under one id (`donjon audit timeline`)."""
    name, version = deployed.name, deployed.record.version
    ids = {"request_id": request_id}
    if chain is not None:
        ids = {"request_id": chain.request_id, "call_id": request_id}
    return AuditEvent(
        f"function:{name}",
        f"policy.{event.action}",
        f"{name}@{version}",
        "alert" if event.action == "alert" else "blocked",
        {
            "function": name,
            "version": version,
            **ids,
            "caller": caller,
            "policy": event.policy,
            "seen": redact(event.seen),
        },
    )


async def record_policy_events(
    audit: AuditLog,
    deployed: Deployed,
    request_id: str,
    caller: str,
    events: Iterable[PolicyEvent],
    redact: Redactor,
    chain: Chain | None = None,
) -> None:
    """Write the records of a call's policy events, durably, one after another (`chain`: as
    for `policy_record`)."""
    for event in events:
        await audit.record(policy_record(deployed, request_id, caller, event, redact, chain))
