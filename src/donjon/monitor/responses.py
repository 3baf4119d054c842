"""Automatic responses: what the node does about a finding of a detector in `block` mode.

The monitor raises the alert (an `alert.raised` record) and then calls
`Responder.respond(finding, alert_seq)`. What is done depends on the
finding's kind, by DONJON_MONITOR_RESPONSES (`kind=action,...`) over the
defaults below:

- `throttle`: a temporary, tighter rate limit on the subject (a principal, a
  source address, or a function), expiring (monitor/throttles.py);
- `revoke`: the subject's API key is revoked (the path `donjon key revoke`
  takes); never a default, since only a new key undoes it;
- `quarantine`: the function stops serving (503) until released
  (monitor/quarantine.py);
- `none`: the alert only.

Each response is an audit record naming the alert it answers (`alert_seq`):
`response.throttle`, `response.revoke`, `response.quarantine`, with outcome
`ok`, `unchanged` (already in force), `skipped` (the action does not fit the
subject, said in `detail.reason`) or `failed`. A response never raises into
the monitor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from donjon.audit.changes import AuditedChanges
from donjon.audit.errors import RecordPending
from donjon.audit.log import AuditEvent, AuditLog
from donjon.config import MonitorSettings
from donjon.errors import Error
from donjon.monitor.findings import Finding
from donjon.monitor.quarantine import Quarantines
from donjon.monitor.rules import KILLED_OUTCOMES
from donjon.monitor.throttles import Throttle, Throttles

__all__ = [
    "ACTIONS",
    "DEFAULT_RESPONSES",
    "KNOWN_KINDS",
    "Responder",
    "ResponseAction",
    "ResponseConfigError",
    "ResponsePolicy",
    "parse_responses",
]

log = logging.getLogger("donjon.monitor")

ResponseAction = Literal["throttle", "revoke", "quarantine", "none"]
ACTIONS: tuple[ResponseAction, ...] = get_args(ResponseAction)
ACTOR = "system:monitor"

#: The finding kinds the detectors raise, and what each may be about.
KNOWN_KINDS: dict[str, frozenset[str]] = {
    "auth.credential_stuffing": frozenset({"source", "principal", "node"}),
    "egress.refused": frozenset({"function"}),
    "sandbox.violation": frozenset({"function"}),
    "deploy.scan_skipped": frozenset({"function"}),
    "dependency.vulnerable": frozenset({"function"}),
    "baseline.call_rate": frozenset({"function", "principal"}),
    "baseline.error_rate": frozenset({"function", "principal"}),
    "baseline.duration": frozenset({"function", "principal"}),
    "baseline.cost": frozenset({"function", "principal"}),
    "first_seen.function": frozenset({"principal"}),
    "first_seen.source": frozenset({"principal"}),
}

#: What a detector in `block` mode does by default. Reversible where the finding is a
#: guess (throttle); the function stops where it did what it must not (quarantine);
#: a key is never revoked unless configured.
DEFAULT_RESPONSES: dict[str, ResponseAction] = {
    "auth.credential_stuffing": "throttle",
    "egress.refused": "quarantine",
    "sandbox.violation": "quarantine",
    "deploy.scan_skipped": "quarantine",
    # A published advisory is no sign of an attack: say so, stop nothing unless configured.
    "dependency.vulnerable": "none",
    # A principal's burst is its own doing: throttled. A function's is any caller's
    # (anonymous ones of a public trigger too): none (`_CALLER_MOVED`, below).
    "baseline.call_rate": "throttle",
    # Moved by someone other than their subject, so the alert only: any caller moves a
    # function's error share, durations and cost with events of its own (events the
    # handler refuses, slow ones), and a function's owner moves its callers' (a broken
    # deploy, a handler that fails or stalls one key's calls, a memory limit raised): a
    # throttle would hold every other caller of the function, or the caller on every
    # function, its own included. A function's spend is bounded by its own limits
    # (rate, concurrency, timeout, memory) and the quotas.
    "baseline.error_rate": "none",
    "baseline.duration": "none",
    "baseline.cost": "none",
    "first_seen.function": "throttle",
    "first_seen.source": "throttle",
}
#: Kinds any caller moves when they are about a function: no response unless configured
#: (16 anonymous calls in one minute of a public trigger that usually takes 5 held it to
#: 10 a minute for an hour, for every caller).
_CALLER_MOVED: frozenset[str] = frozenset({"baseline.call_rate"})
#: A kind not listed (a newer detector's): by what it is about.
_BY_SUBJECT: dict[str, ResponseAction] = {
    "principal": "throttle",
    "source": "throttle",
    "function": "throttle",
    "node": "none",
}
_FITS: dict[ResponseAction, frozenset[str]] = {
    "throttle": frozenset({"principal", "source", "function"}),
    "revoke": frozenset({"principal"}),
    "quarantine": frozenset({"function"}),
    "none": frozenset({"principal", "source", "function", "node"}),
}
_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_USAGE = "DONJON_MONITOR_RESPONSES is `kind=throttle|revoke|quarantine|none,...`"


class ResponseConfigError(Error):
    """DONJON_MONITOR_RESPONSES (or the throttle's settings) is malformed."""

    title = "Configuration error"


def parse_responses(text: str) -> dict[str, ResponseAction]:
    """`kind=action,...` checked whole (`check_responses`); a repeated kind is an error."""
    pairs: dict[str, str] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        kind, sep, action = (p.strip() for p in entry.partition("="))
        if not sep or not kind or not action:
            raise ResponseConfigError(f"{entry[:80]!r} is not kind=action", hint=_USAGE)
        if kind in pairs:
            raise ResponseConfigError(f"{kind} is given twice", hint=_USAGE)
        pairs[kind] = action
    return check_responses(pairs)


def check_responses(pairs: Mapping[str, str]) -> dict[str, ResponseAction]:
    """Each configured kind and action checked: an unknown kind or action, or an action
    that cannot apply to what the kind is about, is an error naming it."""
    out: dict[str, ResponseAction] = {}
    for kind, action in pairs.items():
        if kind not in KNOWN_KINDS:
            raise ResponseConfigError(
                f"DONJON_MONITOR_RESPONSES: unknown finding kind {kind[:80]!r}",
                hint=f"the kinds are: {', '.join(sorted(KNOWN_KINDS))}",
            )
        if action not in ACTIONS:
            raise ResponseConfigError(
                f"DONJON_MONITOR_RESPONSES: unknown response {action[:40]!r} for {kind}",
                hint=_USAGE,
            )
        chosen: ResponseAction = action  # one of ACTIONS: checked just above
        if not KNOWN_KINDS[kind] & _FITS[chosen]:
            raise ResponseConfigError(
                f"DONJON_MONITOR_RESPONSES: {kind} findings are about a "
                f"{'/'.join(sorted(KNOWN_KINDS[kind]))}: {chosen} cannot answer them",
                hint="revoke answers findings about a principal, quarantine about a function",
            )
        out[kind] = chosen
    return out


@dataclass(frozen=True)
class ResponsePolicy:
    """What each finding kind gets, and the throttle's rate and length."""

    configured: Mapping[str, ResponseAction] = field(default_factory=dict)
    throttle_count: int = 10
    throttle_period_s: float = 60.0
    throttle_s: float = 3600.0

    @classmethod
    def from_settings(cls, settings: MonitorSettings) -> ResponsePolicy:
        """The policy DONJON_MONITOR_RESPONSES and _THROTTLE(_S) describe; `ResponseConfigError`."""
        count, _, period = settings.throttle.partition("/")
        if not (count.isascii() and count.isdigit()) or int(count) < 1 or period not in _PERIODS:
            raise ResponseConfigError(
                f"DONJON_MONITOR_THROTTLE {settings.throttle[:40]!r} is not a rate",
                hint="a rate reads like 10/minute (second, minute, hour or day)",
            )
        return cls(
            check_responses(settings.responses),
            int(count),
            _PERIODS[period],
            settings.throttle_s,
        )

    def action(self, finding: Finding) -> ResponseAction:
        configured = self.configured.get(finding.kind)
        if configured is not None:
            return configured
        if finding.kind == "sandbox.violation" and finding.detail.get("outcome") in KILLED_OUTCOMES:
            # A call killed for its memory: the caller's event decides how much a handler
            # takes (a body that inflates), so one request would stop the function for
            # everyone. The sandbox ended that call; that is the response.
            return "none"
        if finding.kind in _CALLER_MOVED and finding.subject.kind == "function":
            return "none"
        chosen = DEFAULT_RESPONSES.get(finding.kind)
        return chosen or _BY_SUBJECT.get(finding.subject.kind, "none")


#: Revokes an API key by id; False if no live key has that id (gateway/node.py).
RevokeKey = Callable[[str], Awaitable[bool]]


class Responder:
    """The monitor's `Responder`: acts on a finding in `block` mode, and audits what it did."""

    def __init__(
        self,
        audit: AuditLog,
        policy: ResponsePolicy,
        throttles: Throttles,
        quarantines: Quarantines,
        revoke_key: RevokeKey,
        clock: Callable[[], float] = time.time,
        *,
        protected: Callable[[str], bool] = lambda _key_id: False,
        changes: AuditedChanges | None = None,
    ) -> None:
        self._audit = audit
        #: A throttle stored or a key revoked, and its record, committed together
        #: (audit/changes.py): a kill between the two kept the change unaudited, and a
        #: restart answers the alert again only while its detector still blocks.
        self._changes = changes if changes is not None else AuditedChanges(audit, None)
        self._policy = policy
        self._throttles = throttles
        self._quarantines = quarantines
        self._revoke_key = revoke_key
        #: Keys never revoked automatically (the admins': a person decides).
        self._protected = protected
        self._clock = clock

    async def respond(self, finding: Finding, alert_seq: int) -> None:
        action = self._policy.action(finding)
        if action == "none":
            return
        try:
            if finding.subject.kind not in _FITS[action]:
                await self._record(
                    action,
                    str(finding.subject),
                    "skipped",
                    finding,
                    alert_seq,
                    {"reason": f"{action} cannot answer a finding about a {finding.subject.kind}"},
                )
            elif action == "throttle":
                await self._throttle(finding, alert_seq)
            elif action == "revoke":
                await self._revoke(finding, alert_seq)
            else:
                await self._quarantine(finding, alert_seq)
        except RecordPending:  # made: its record waits in the audit outbox, not a failure
            log.warning("the %s response to alert %d: its record is pending", action, alert_seq)
        except Exception as e:  # a response's failure must not stop the monitor
            log.exception("the %s response to alert %d failed", action, alert_seq)
            try:
                await self._record(
                    action,
                    str(finding.subject),
                    "failed",
                    finding,
                    alert_seq,
                    {"error": type(e).__name__},
                )
            except Exception:
                log.exception("auditing the failed response to alert %d failed", alert_seq)

    async def _throttle(self, finding: Finding, alert_seq: int) -> None:
        now = self._clock()
        kind = finding.subject.kind
        subject_id = finding.subject.id
        if kind == "function":
            subject_id = _function(subject_id)
        elif kind == "principal":
            subject_id = _principal(subject_id)
        p = self._policy
        current = self._throttles.get(kind, subject_id)
        if current is not None and current.until >= now + p.throttle_s:
            # One in force ends later (a person's, for days): kept. Replaced, a subject
            # throttled by hand set off a finding on purpose to be free within the hour.
            await self._record(
                "throttle",
                current.subject,
                "unchanged",
                finding,
                alert_seq,
                {
                    "rate": current.rate,
                    "until": current.until,
                    "reason": "a throttle in force ends later",
                    "in_force_alert_seq": current.alert_seq,
                },
            )
            return
        throttle = Throttle(
            kind,  # type: ignore[arg-type]  # principal, source or function (_FITS)
            subject_id,
            p.throttle_count,
            p.throttle_period_s,
            now,
            now + p.throttle_s,
            finding.summary[:500].encode("utf-8", "backslashreplace").decode("utf-8"),
            alert_seq,
        )
        replaced = self._throttles.add(throttle)
        about = {
            "rate": throttle.rate,
            "until": throttle.until,
            "replaced_alert_seq": replaced.alert_seq if replaced else None,
            "undo": f"donjon throttle rm {throttle.subject}",
        }
        event = _event("throttle", throttle.subject, "ok", _about(finding, alert_seq, about))
        kept = False
        async with self._changes.change(event) as pending:
            try:
                await self._throttles.keep(throttle)
                kept = True
            except Exception:  # in force here all the same; a restart would lift it
                log.exception("keeping the throttle on %s failed", throttle.subject)
        if not (kept and pending.enlisted):  # not stored with its record: recorded now
            await self._audit.record(event)

    async def _revoke(self, finding: Finding, alert_seq: int) -> None:
        label = _principal(finding.subject.id)
        kind, _, key_id = label.partition(":")
        if kind != "key":
            await self._record(
                "revoke",
                label,
                "skipped",
                finding,
                alert_seq,
                {"reason": "only API keys are revoked; remove or narrow the JWT issuer"},
            )
            return
        if self._protected(key_id):
            await self._record(
                "revoke",
                label,
                "skipped",
                finding,
                alert_seq,
                {"reason": "an admin key is never revoked automatically: a person decides"},
            )
            return
        undo = {"undo": "a revoked key stays revoked: create a new key (`donjon key create`)"}
        event = _event("revoke", label, "ok", _about(finding, alert_seq, undo))
        async with self._changes.change(event) as pending:
            revoked = await self._revoke_key(key_id)
        if not revoked:
            await self._record("revoke", label, "unchanged", finding, alert_seq, undo)
        elif not pending.enlisted:  # revoked with no outbox (a subsystem tested alone)
            await self._audit.record(event)

    async def _quarantine(self, finding: Finding, alert_seq: int) -> None:
        await self._quarantines.quarantine(
            _function(finding.subject.id),
            f"{finding.kind}: {finding.summary}",
            by=ACTOR,
            alert_seq=alert_seq,
            kind=finding.kind,
        )

    async def _record(
        self,
        action: str,
        target: str,
        outcome: str,
        finding: Finding,
        alert_seq: int,
        extra: Mapping[str, Any],
    ) -> None:
        await self._audit.record(_event(action, target, outcome, _about(finding, alert_seq, extra)))


def _about(finding: Finding, alert_seq: int, extra: Mapping[str, Any]) -> dict[str, Any]:
    """A response record's detail: the alert it answers, and `extra`."""
    return {"alert_seq": alert_seq, "kind": finding.kind, **extra}


def _event(action: str, target: str, outcome: str, detail: dict[str, Any]) -> AuditEvent:
    """The `response.ACTION` record."""
    return AuditEvent(ACTOR, f"response.{action}", target, outcome, detail)


def _function(subject_id: str) -> str:
    """A function subject's name (a baseline's subject may name a version: `name@3`)."""
    return subject_id.partition("@")[0]


def _principal(subject_id: str) -> str:
    """A principal's label (`key:<id>`, `jwt:<issuer>:<sub>`); a bare id is a key's."""
    return subject_id if ":" in subject_id else f"key:{subject_id}"
