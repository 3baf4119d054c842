"""Alerts raised in `block` mode that a node died before answering: answered at its start.

An alert's record is committed before its response is made (engine.Monitor._raise): a
node that dies in between (SIGKILL, a power cut) left the alert and no response. Its
next start replays the records it had not examined, finds the same finding again, and
the alert already raised (seeded for deduplication) suppresses it: the function that
broke out of its egress allowlist kept serving, because the quarantine its alert
called for was never made.

The monitor's watermark never passes an alert it has not answered: the record a finding
rests on stays in flight until its findings are raised and answered, and a tick saves
the watermark only after its own alerts are. So every such alert is among the records
after the watermark, which the start reads for its replay anyway. Each `block`-mode alert
there with no `response.*` record naming its seq, whose detector is still in `block`
mode, is answered now, under the node's response policy of now. Answering twice does no
harm: a quarantine or a revocation made already is recorded `unchanged`, and a throttle
replaces its own. A response made before the kill was committed with its record (the
audit outbox, audit/changes.py): its record is appended at the start, even once its
detector no longer blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, get_args

from donjon.audit.log import CommittedRecord
from donjon.monitor.alerts import ACTOR, RAISED
from donjon.monitor.findings import Finding, FindingError, Mode, Severity, Subject, SubjectKind

__all__ = ["unanswered"]

_RESPONSE = "response."
#: Each subject kind and severity by its name: a record's text looked up as the type.
_KINDS: dict[str, SubjectKind] = {kind: kind for kind in get_args(SubjectKind)}
_SEVERITIES: dict[str, Severity] = {severity: severity for severity in get_args(Severity)}


def unanswered(
    records: Iterable[CommittedRecord], mode: Callable[[str], Mode]
) -> list[tuple[Finding, int]]:
    """The findings (with their alert seqs) of the `block`-mode alerts among `records`
    that no response record among them answers and whose detector `mode` still blocks."""
    alerts: list[tuple[Finding, int]] = []
    answered: set[int] = set()
    for record in records:
        event = record.event
        if event.action.startswith(_RESPONSE):
            seq = event.detail.get("alert_seq")
            if type(seq) is int:
                answered.add(seq)
        elif event.action == RAISED and event.actor == ACTOR:
            finding = _finding(record)
            if finding is not None and mode(finding.detector) == "block":
                alerts.append((finding, record.seq))
    return [(finding, seq) for finding, seq in alerts if seq not in answered]


def _finding(record: CommittedRecord) -> Finding | None:
    """The finding a `block`-mode alert record was raised for; None for any other (an
    `alert`-mode one, or a record too damaged to say what it was about)."""
    event = record.event
    detail: Mapping[str, Any] = event.detail
    kind_name, _, subject_id = event.target.partition(":")
    kind, severity = _KINDS.get(kind_name), _SEVERITIES.get(event.outcome)
    if detail.get("mode") != "block" or kind is None or severity is None:
        return None
    evidence = detail.get("evidence")
    inner = detail.get("detail")
    try:
        return Finding(
            str(detail.get("kind", "")),
            str(detail.get("detector", "")),
            severity,
            Subject(kind, subject_id),
            str(detail.get("summary", "")),
            tuple(s for s in evidence if type(s) is int) if isinstance(evidence, list) else (),
            record.ts,
            inner if isinstance(inner, dict) else {},
            str(detail.get("key", "")),
        )
    except FindingError:  # no evidence left: a finding rests on at least one record
        return None
