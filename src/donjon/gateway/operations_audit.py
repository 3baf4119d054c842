"""The OpenAPI catalog of the audit log v2 (checkpoints, proofs, export), the
monitor's alerts and automatic responses, and the forensic timeline: merged into
OPERATIONS (operations.py)."""

from __future__ import annotations

from typing import Any

from donjon.gateway import views as v
from donjon.gateway.operation_model import AUTH, BODY, ListOf, Operation, Param, Raw, count, whole
from donjon.manifest.model import NAME_RE

__all__ = ["AUDIT_OPERATIONS"]

_CHECKPOINT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "size": {"type": "integer"},
        "root": {"type": "string", "description": "hex SHA-256"},
        "ts": {"type": "number"},
        "note": {"type": "string", "description": "the signed note (C2SP tlog-checkpoint)"},
    },
}
_OBJECT = {"application/json": {"schema": {"type": "object"}}}
_PROOF = Raw(_OBJECT, "the proof document")
_REASON = {"type": "string", "minLength": 1, "maxLength": 500, "pattern": "\\S"}


def _text(name: str, description: str, pattern: str | None = None) -> Param:
    schema: dict[str, Any] = {"type": "string"}
    if pattern is not None:
        schema["pattern"] = pattern
    return Param(name, "query", schema, description)


def _epoch(name: str, description: str) -> Param:
    return Param(name, "query", {"type": "number", "minimum": 0}, description)


def _reason_body(example: dict[str, Any], text: str, **more: dict[str, Any]) -> Raw:
    """A JSON body with a required `reason` (and the optional properties `more`)."""
    schema = {
        "type": "object",
        "properties": {"reason": _REASON, **more},
        "required": ["reason"],
        "additionalProperties": False,
    }
    return Raw({"application/json": {"schema": schema, "example": example}}, text)


#: The monitor's automatic responses (gateway/responses_api.py), the timeline
#: (gateway/timeline_api.py), the log's checkpoints, proofs and export
#: (gateway/audit_api.py) and the alerts (gateway/alerts_api.py).
AUDIT_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/v1/responses"): Operation(
        "listResponses",
        "The throttles in force and the quarantined functions",
        "responses",
        {200: Raw(_OBJECT, '{"throttles": [...], "quarantined": [...]}')},
        AUTH,
    ),
    ("POST", "/v1/functions/{name}/quarantine"): Operation(
        "quarantineFunction",
        "Stop serving a function (503) until it is released",
        "responses",
        {
            200: Raw(_OBJECT, "it was quarantined already"),
            201: Raw(_OBJECT, "quarantined"),
        },
        (*BODY, 404),
        _reason_body(
            {"reason": "calls home to an unknown host"}, '{"reason": text (1-500 characters)}'
        ),
    ),
    ("POST", "/v1/functions/{name}/release"): Operation(
        "releaseFunction",
        "Serve a quarantined function again (audited function.release)",
        "responses",
        {200: Raw(_OBJECT, "released")},
        (*AUTH, 404),
    ),
    ("DELETE", "/v1/throttles/{subject}"): Operation(
        "liftThrottle",
        "Lift a throttle (principal:LABEL, source:ADDRESS, function:NAME)",
        "responses",
        {204: None},
        (*AUTH, 404),
    ),
    ("PUT", "/v1/throttles/{subject}"): Operation(
        "addThrottle",
        "Throttle a principal or a function by hand, at the node's throttle rate (404: a "
        "function nothing serves)",
        "responses",
        {201: Raw(_OBJECT, '{"subject": ..., "rate": "10/minute", "until": time}')},
        (*BODY, 404),
        _reason_body(
            {"reason": "looking into alert 42", "duration_s": 3600},
            '{"reason": text, "duration_s": seconds (optional)}',
            duration_s={"type": "number", "minimum": 1, "maximum": 2592000},
        ),
    ),
    ("GET", "/v1/audit/timeline"): Operation(
        "auditTimeline",
        "The forensic timeline: audit records in order, filtered, each with its seq",
        "audit",
        {200: Raw(_OBJECT, '{"records": [records with "category"], "next": seq or null}')},
        (400, *AUTH),
        params=(
            _epoch("since", "records at or after this time"),
            _epoch("until", "records at or before this time"),
            _text("function", "records about this function", NAME_RE),
            _text(
                "principal",
                "what this principal did and what was done to it (key:ID, an id, jwt:ISS:SUB)",
                "^[!-~]{1,256}$",
            ),
            _text("request", "records of this request id", "^[A-Za-z0-9_.:-]{1,64}$"),
            Param(
                "source",
                "query",
                {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
                "records of this client address",
            ),
            Param(
                "after",
                "query",
                {"type": "integer", "minimum": 0, "maximum": 999_999_999_999_999_999},
                "the cursor: the `next` of a previous page",
            ),
            Param(
                "n",
                "query",
                {"type": "integer", "minimum": 1, "maximum": 1000, "default": 200},
                "matches per page",
            ),
        ),
    ),
    ("GET", "/v1/audit/checkpoints"): Operation(
        "auditCheckpoints",
        "The signed checkpoints of the audit log, oldest first",
        "audit",
        {200: Raw({"application/json": {"schema": {"type": "array", "items": _CHECKPOINT}}})},
        (400, *AUTH, 409, 503),
        params=(
            count(10_000),
            whole("before", 0, "only checkpoints smaller than this size (to page back)"),
        ),
    ),
    ("GET", "/v1/audit/proof"): Operation(
        "auditProof",
        "An inclusion proof of one audit record (donjon-inclusion-proof/1)",
        "audit",
        {200: _PROOF},
        (400, *AUTH, 404, 409, 503),
        params=(
            whole("seq", 1, "the record's seq", required=True),
            whole("size", 1, "the checkpoint to prove against (default: the newest)"),
        ),
        description="Check it offline with `donjon audit check-proof FILE --key KEY`.",
    ),
    ("GET", "/v1/audit/consistency"): Operation(
        "auditConsistency",
        "A consistency proof between two checkpoints (donjon-consistency-proof/1)",
        "audit",
        {200: _PROOF},
        (400, *AUTH, 404, 409, 503),
        params=(
            whole("old", 0, "the older checkpoint's size", required=True),
            whole("new", 0, "the newer checkpoint's size", required=True),
        ),
    ),
    ("GET", "/v1/audit/export"): Operation(
        "auditExport",
        "The audit log since a record, with its checkpoints (donjon-audit-export/1), streamed",
        "audit",
        {
            200: Raw(
                {
                    "application/x-ndjson": {"schema": {"type": "string"}},
                    "text/plain": {"schema": {"type": "string"}},
                },
                "JSON lines (format=jsonl) or RFC 5424 lines (format=syslog)",
            )
        },
        (400, *AUTH, 409, 503),
        params=(
            whole("since", 1, "the first record's seq (default 1)"),
            Param(
                "format", "query", {"type": "string", "enum": ["jsonl", "syslog"]}, "jsonl|syslog"
            ),
        ),
    ),
    ("GET", "/v1/alerts"): Operation(
        "listAlerts",
        "The monitor's alerts, newest n, oldest first",
        "audit",
        {200: ListOf(v.AlertView)},
        (400, *AUTH),
        params=(
            _epoch("since", "only alerts raised at or after this time (seconds since the epoch)"),
            Param(
                "kind",
                "query",
                {"type": "string", "pattern": "^[a-z][a-z0-9_.]{0,127}$"},
                "only alerts of this finding kind (auth.credential_stuffing)",
            ),
            Param(
                "n",
                "query",
                {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                "how many, newest last (1 to 1000)",
            ),
            Param(
                "before",
                "query",
                {"type": "integer", "minimum": 1, "maximum": 999_999_999_999_999_999},
                "only alerts whose seq is below this (the page before)",
            ),
        ),
        description="Each alert is an alert.raised audit record (its seq) resting on the "
        "records in `evidence`; both can be proved against a signed checkpoint. A "
        "credential allowed alert:read on some functions only lists alerts about them.",
        headers={
            "x-donjon-next-before": "a scoped listing that read its most alerts without "
            "filling: page on with before= this seq"
        },
    ),
}
