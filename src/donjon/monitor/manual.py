"""Throttles a person sets or lifts (`donjon throttle add|rm`), audited like the monitor's.

The monitor throttles on its own in `block` mode (monitor/responses.py); an
admin may also throttle a principal, a source address or a function by hand
while looking into it, and lift any throttle. Both are audit records naming
the person: `response.throttle` (`alert_seq` null) and `response.unthrottle`
(with the alert the lifted throttle answered).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import time

from donjon.audit.changes import AuditedChanges
from donjon.audit.log import AuditEvent
from donjon.errors import Error
from donjon.identity.jwt_principal import is_subject
from donjon.manifest.model import NAME_RE
from donjon.monitor.throttles import Throttle, ThrottleKind, Throttles

__all__ = [
    "MAX_DURATION_S",
    "SUBJECT_PATTERN",
    "BadSubject",
    "NotThrottled",
    "lift",
    "parse_subject",
    "throttle",
]

#: What a person may throttle by hand: a principal (a key, a bare key id, a JWT's: its
#: issuer's name and any `sub` a token may carry, jwt_principal.is_subject) or a function.
#: Source addresses are throttled by the monitor; anyone may lift those.
SUBJECT_PATTERN = (
    r"^(principal:((key:)?[0-9a-f]{16}|jwt:[a-z][a-z0-9-]{0,62}:[^\x00-\x1f\x7f-\x9f]{1,256})"
    r"|function:" + NAME_RE.removeprefix("^").removesuffix("$") + ")$"
)
_SUBJECT = re.compile(SUBJECT_PATTERN)
_HINT = "principal:key:ID (or a bare key id), principal:jwt:ISSUER:SUB, or function:NAME"
#: The longest a throttle set by hand lasts.
MAX_DURATION_S = 30 * 86400


class BadSubject(Error):
    """A throttle's subject that cannot be one (400)."""

    title = "Bad subject"


class NotThrottled(Error):
    """No throttle in force on that subject (404)."""

    title = "Not throttled"


def parse_subject(subject: str) -> tuple[ThrottleKind, str]:
    """A subject a person may throttle (SUBJECT_PATTERN): `BadSubject` otherwise."""
    jwt_sub = subject.removeprefix("principal:jwt:").partition(":")[2]
    if not _SUBJECT.fullmatch(subject) or (
        subject.startswith("principal:jwt:") and not is_subject(jwt_sub)
    ):
        raise BadSubject(f"{subject[:80]!r} cannot be throttled by hand", hint=_HINT)
    kind, _, value = subject.partition(":")
    if kind == "principal":
        return "principal", value if ":" in value else f"key:{value}"
    return "function", value


def _lifted_subject(subject: str) -> tuple[str, str]:
    """Any `kind:id` (a source address too); a bare principal id is its key's."""
    kind, _, value = subject.partition(":")
    if kind == "principal" and ":" not in value:
        value = f"key:{value}"
    elif kind == "source":
        with contextlib.suppress(ValueError):
            value = str(ipaddress.ip_address(value))
    return kind, value


async def throttle(
    throttles: Throttles,
    changes: AuditedChanges,
    subject: str,
    *,
    count: int,
    period_s: float,
    duration_s: float,
    reason: str,
    by: str,
    request_id: str,
) -> Throttle:
    """Throttle `subject` now, for `duration_s`; audited `response.throttle`."""
    kind, subject_id = parse_subject(subject)
    now = time.time()
    new = Throttle(kind, subject_id, count, period_s, now, now + duration_s, reason, None)
    replaced = throttles.get(kind, subject_id)
    # Kept with its record, in one transaction: a throttle set or lifted by hand is in
    # the log, or not made (audit/changes.py).
    event = AuditEvent(
        by,
        "response.throttle",
        new.subject,
        "ok",
        {
            "request_id": request_id,
            "alert_seq": None,
            "reason": reason,
            "rate": new.rate,
            "until": new.until,
            "replaced_alert_seq": replaced.alert_seq if replaced else None,
            "undo": f"donjon throttle rm {new.subject}",
        },
    )
    async with changes.change(event):
        await throttles.keep(new)
    throttles.add(new)
    return new


async def lift(
    throttles: Throttles, changes: AuditedChanges, subject: str, *, by: str, request_id: str
) -> Throttle:
    """Lift the throttle on `subject`; audited `response.unthrottle`. `NotThrottled` if none."""
    kind, subject_id = _lifted_subject(subject)
    lifted = throttles.get(kind, subject_id)
    if lifted is None:
        raise NotThrottled(
            f"no throttle in force on {subject[:300]!r}",
            hint="`donjon throttle ls` lists the throttles in force",
        )
    event = AuditEvent(
        by,
        "response.unthrottle",
        lifted.subject,
        "ok",
        {"request_id": request_id, "alert_seq": lifted.alert_seq, "until": lifted.until},
    )
    async with changes.change(event):
        await throttles.forget(lifted)
    if throttles.get(kind, subject_id) is lifted:  # not one the monitor set meanwhile
        throttles.remove(kind, subject_id)
    return lifted
