"""What each route of the gateway does, as OpenAPI operations: the catalog openapi.py reads.

The app's route table (app.py, admin.py) is the one source of what is served;
this catalog says, for each (method, path) served, its operation id, tag, body
models (schemas.py, the models the handlers validate and render with),
parameters and every status it answers with. /openapi.json describes exactly
the routes the app serves: a served route missing here fails
tests/gateway/test_openapi.py, and an entry whose route is not served (the
Lambda Invoke API until its route is mounted) is left out of the document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from donjon.gateway import schemas as s
from donjon.gateway import views as v
from donjon.identity.issuers import IssuerRequest
from donjon.identity.policy_doc import RoleDocument
from donjon.manifest.model import NAME_RE

__all__ = ["OPERATIONS", "Body", "ListOf", "Operation", "Param", "Raw"]


@dataclass(frozen=True)
class ListOf:
    """A JSON array of `model`."""

    model: type[BaseModel]


@dataclass(frozen=True)
class Raw:
    """A body no pydantic model shapes: `schema` per media type."""

    content: dict[str, dict[str, Any]]
    description: str = ""


Body = type[BaseModel] | ListOf | Raw


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["query", "header"]
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Operation:
    operation_id: str
    summary: str
    tag: str
    #: Success statuses and their bodies (None: no body).
    ok: dict[int, Body | None]
    #: Error statuses, each answered with a problem document (RFC 9457).
    errors: tuple[int, ...]
    request: Body | None = None
    params: tuple[Param, ...] = ()
    #: bearer: an API key or a JWT; none: public; optional: the trigger decides; sigv4.
    auth: Literal["bearer", "none", "optional", "sigv4"] = "bearer"
    description: str = ""
    #: Headers of the success responses: name -> description.
    headers: dict[str, str] = field(default_factory=dict)


ANY_JSON: dict[str, Any] = {"description": "any JSON value"}
_JSON_IN = Raw(
    {"application/json": {"schema": ANY_JSON, "example": {"name": "Ada"}}},
    "the event: any JSON value (checked against the function's input_schema, if it has one)",
)
_JSON_OUT = Raw(
    {"application/json": {"schema": ANY_JSON, "example": {"greeting": "hello, Ada"}}},
    "what the function returned, as JSON",
)
_BUNDLE = Raw(
    {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
    "the bundle: a tar.gz of the function directory (donjon.yaml, code, requirements.txt)",
)
_FUNCTION_RESPONSE = Raw({"*/*": {"schema": {}}}, "the function's own response")


def _flag(name: str, description: str) -> Param:
    return Param(
        name, "query", {"type": "string", "enum": ["1", "true", "0", "false"]}, description
    )


def _count(most: int) -> Param:
    schema = {"type": "integer", "minimum": 1, "maximum": most, "default": 20}
    return Param("n", "query", schema, f"how many, newest last (1 to {most})")


def _whole(name: str, least: int, description: str, *, required: bool = False) -> Param:
    schema: dict[str, Any] = {"type": "integer", "minimum": least, "maximum": 2**62}
    return Param(name, "query", schema, description, required)


_CHECKPOINT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "size": {"type": "integer"},
        "root": {"type": "string", "description": "hex SHA-256"},
        "ts": {"type": "number"},
        "note": {"type": "string", "description": "the signed note (C2SP tlog-checkpoint)"},
    },
}
_PROOF = Raw({"application/json": {"schema": {"type": "object"}}}, "the proof document")
_AUTH = (401, 403)
_BODY = (400, 401, 403, 413)
_CALL = (400, 401, 403, 404, 413, 429, 500, 502, 503, 504, 507)

_INVOKE = Operation(
    "invokeFunction",
    "Invoke a function",
    "invoke",
    {200: _JSON_OUT},
    (*_CALL, 422),
    _JSON_IN,
    description="Runs the function in a fresh sandbox (or its warm one) with the body as event. "
    "A failed call is a 500 naming the request id; `donjon logs` has the error.",
    headers={"x-request-id": "the call's id in the audit log and `donjon logs`"},
)


def _trigger(method: str) -> Operation:
    return Operation(
        f"httpTrigger{method.capitalize()}",
        f"{method} an http trigger",
        "invoke",
        {200: _FUNCTION_RESPONSE},
        _CALL,
        None if method in ("GET", "HEAD", "OPTIONS") else _FUNCTION_RESPONSE,
        auth="optional",
        description="Served by the function whose http trigger owns the path; the trigger's "
        "`auth` (key, jwt, public) decides the credential. Any status may come from the "
        "function itself; the gateway's own are problem documents. To a caller without a "
        "valid credential a missing route is a 401, like a protected one.",
    )


_LAMBDA_HEADERS = (
    Param(
        "X-Amz-Invocation-Type",
        "header",
        {"type": "string", "enum": ["RequestResponse", "Event", "DryRun"]},
        "RequestResponse (default) or DryRun",
    ),
    Param(
        "X-Amz-Log-Type",
        "header",
        {"type": "string", "enum": ["None", "Tail"]},
        "Tail: the last 4 KB of the call's log in X-Amz-Log-Result (callers allowed function:logs)",
    ),
    Param("Qualifier", "query", {"type": "string"}, "a version"),
)
_LAMBDA_ERRORS = Raw(
    {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}},
        "application/json": {"schema": {"type": "object"}},
    }
)

_OBJECT = {"application/json": {"schema": {"type": "object"}}}


def _text(name: str, description: str, pattern: str | None = None) -> Param:
    schema: dict[str, Any] = {"type": "string"}
    if pattern is not None:
        schema["pattern"] = pattern
    return Param(name, "query", schema, description)


def _epoch(name: str, description: str) -> Param:
    return Param(name, "query", {"type": "number", "minimum": 0}, description)


#: The monitor's automatic responses (gateway/responses_api.py) and the timeline
#: (gateway/timeline_api.py).
_RESPONSE_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/v1/responses"): Operation(
        "listResponses",
        "The throttles in force and the quarantined functions",
        "responses",
        {200: Raw(_OBJECT, '{"throttles": [...], "quarantined": [...]}')},
        _AUTH,
    ),
    ("POST", "/v1/functions/{name}/quarantine"): Operation(
        "quarantineFunction",
        "Stop serving a function (503) until it is released",
        "responses",
        {
            200: Raw(_OBJECT, "it was quarantined already"),
            201: Raw(_OBJECT, "quarantined"),
        },
        (*_BODY, 404),
        Raw(
            {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "reason": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 500,
                                "pattern": "\\S",
                            }
                        },
                        "required": ["reason"],
                        "additionalProperties": False,
                    },
                    "example": {"reason": "calls home to an unknown host"},
                }
            },
            '{"reason": text (1-500 characters)}',
        ),
    ),
    ("POST", "/v1/functions/{name}/release"): Operation(
        "releaseFunction",
        "Serve a quarantined function again (audited function.release)",
        "responses",
        {200: Raw(_OBJECT, "released")},
        (*_AUTH, 404),
    ),
    ("DELETE", "/v1/throttles/{subject}"): Operation(
        "liftThrottle",
        "Lift a throttle (principal:LABEL, source:ADDRESS, function:NAME)",
        "responses",
        {204: None},
        (*_AUTH, 404),
    ),
    ("PUT", "/v1/throttles/{subject}"): Operation(
        "addThrottle",
        "Throttle a principal or a function by hand, at the node's throttle rate",
        "responses",
        {201: Raw(_OBJECT, '{"subject": ..., "rate": "10/minute", "until": time}')},
        _BODY,
        Raw(
            {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "reason": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 500,
                                "pattern": "\\S",
                            },
                            "duration_s": {"type": "number", "minimum": 1, "maximum": 2592000},
                        },
                        "required": ["reason"],
                        "additionalProperties": False,
                    },
                    "example": {"reason": "looking into alert 42", "duration_s": 3600},
                }
            },
            '{"reason": text, "duration_s": seconds (optional)}',
        ),
    ),
    ("GET", "/v1/audit/timeline"): Operation(
        "auditTimeline",
        "The forensic timeline: audit records in order, filtered, each with its seq",
        "audit",
        {200: Raw(_OBJECT, '{"records": [records with "category"], "next": seq or null}')},
        (400, *_AUTH),
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
}

#: (METHOD, path template) -> operation. Paths are the app's own route templates.
OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/healthz"): Operation(
        "health", "Liveness and version", "node", {200: v.Health}, (), auth="none"
    ),
    ("GET", "/metrics"): Operation(
        "metrics",
        "Prometheus metrics",
        "node",
        {200: Raw({"text/plain": {"schema": {"type": "string"}}}, "Prometheus text format")},
        _AUTH,
    ),
    ("GET", "/openapi.json"): Operation(
        "openapi",
        "This document",
        "node",
        {200: Raw({"application/json": {"schema": {"type": "object"}}}, "OpenAPI 3.1")},
        (401,),
    ),
    ("POST", "/v1/functions/{name}/invoke"): _INVOKE,
    **{(m, "/fn/{path}"): _trigger(m) for m in ("GET", "POST", "PUT", "PATCH", "DELETE")},
    ("HEAD", "/fn/{path}"): _trigger("HEAD"),
    ("OPTIONS", "/fn/{path}"): _trigger("OPTIONS"),
    ("POST", "/2015-03-31/functions/{name}/invocations"): Operation(
        "lambdaInvoke",
        "AWS Lambda's Invoke API",
        "lambda",
        {200: _JSON_OUT, 204: None},
        (400, 401, 403, 404, 413, 429, 500, 501, 502, 503, 504),
        _JSON_IN,
        _LAMBDA_HEADERS,
        auth="sigv4",
        description="For boto3 and the AWS CLI: SigV4 with a Donjon key id as access key id.",
        headers={
            "X-Amz-Function-Error": "Unhandled when the function failed",
            "X-Amz-Executed-Version": "the version that ran",
            "X-Amz-Log-Result": "with X-Amz-Log-Type: Tail, base64 of the log's end",
        },
    ),
    ("POST", "/v1/functions"): Operation(
        "deployFunction",
        "Deploy a bundle",
        "functions",
        {200: v.DeployResult, 201: v.DeployResult},
        (*_BODY, 409, 422, 503),
        _BUNDLE,
        (
            _flag("unsafe_skip_scan", "skip the deploy scan (admins only; audited)"),
            _flag("unsafe_allow_broad", "deploy broad permission grants (admins only; audited)"),
        ),
        description="Gate, scan and deploy as a new version (201); a bundle the function "
        "already runs is a no-op (200, `unchanged`). A refused bundle is a 422 whose "
        "problem document lists `problems` (and the scan `report` when the scan blocked it).",
    ),
    ("GET", "/v1/functions"): Operation(
        "listFunctions",
        "List the functions you may read",
        "functions",
        {200: ListOf(v.FunctionView)},
        _AUTH,
    ),
    ("GET", "/v1/functions/{name}"): Operation(
        "getFunction", "Get a function", "functions", {200: v.FunctionView}, (*_AUTH, 404)
    ),
    ("DELETE", "/v1/functions/{name}"): Operation(
        "removeFunction", "Remove a function", "functions", {204: None}, (*_AUTH, 404, 503)
    ),
    ("GET", "/v1/functions/{name}/logs"): Operation(
        "functionLogs",
        "A function's output per call, redacted of its secrets",
        "functions",
        {200: ListOf(v.LogEntry)},
        (400, *_AUTH, 404),
        params=(
            _count(500),
            Param(
                "since",
                "query",
                {"type": "number", "minimum": 0},
                "only calls at or after this time (seconds since the epoch)",
            ),
            Param(
                "after",
                "query",
                {"type": "integer", "minimum": 0, "maximum": 999_999_999_999_999_999},
                "only entries after this cursor, oldest first (for following)",
            ),
            Param(
                "request_id",
                "query",
                {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
                "only the call with this request id",
            ),
        ),
    ),
    ("GET", "/v1/functions/{name}/permissions/unused"): Operation(
        "unusedPermissions",
        "The function's grants it has not used in the last N days",
        "functions",
        {
            200: Raw(
                {"application/json": {"schema": {"type": "object"}}},
                "unused and used grants by kind (secrets, egress, invoke), with notes",
            )
        },
        (400, *_AUTH, 404),
        params=(
            Param(
                "days",
                "query",
                {"type": "integer", "minimum": 1, "maximum": 3650, "default": 90},
                "the window, in days",
            ),
        ),
    ),
    ("GET", "/v1/runtime"): Operation(
        "runtimeTarget",
        "The sandbox's interpreter and platforms, to vendor wheels for",
        "node",
        {
            200: Raw(
                {"application/json": {"schema": {"type": "object"}}},
                "the sandbox's Python version, implementation, ABI and platform tags",
            )
        },
        _AUTH,
    ),
    ("POST", "/v1/keys"): Operation(
        "createKey", "Create an API key", "keys", {201: v.KeyCreated}, _BODY, s.KeyCreate
    ),
    ("GET", "/v1/keys"): Operation(
        "listKeys", "List API keys", "keys", {200: ListOf(v.KeyView)}, _AUTH
    ),
    ("DELETE", "/v1/keys/{key_id}"): Operation(
        "revokeKey",
        "Revoke an API key (a key may revoke itself)",
        "keys",
        {204: None},
        (*_AUTH, 404),
    ),
    ("POST", "/v1/keys/{key_id}/rotate"): Operation(
        "rotateKey",
        "A new secret for a key; the old one works for the overlap",
        "keys",
        {201: v.KeyRotated},
        (*_BODY, 404),
        s.KeyRotate,
    ),
    ("POST", "/v1/roles"): Operation(
        "applyRole",
        "Create (201) or replace (200) a custom role",
        "roles",
        {200: v.RoleApplied, 201: v.RoleApplied},
        _BODY,
        RoleDocument,
    ),
    ("GET", "/v1/roles"): Operation(
        "listRoles", "List roles (built in and custom)", "roles", {200: ListOf(v.RoleView)}, _AUTH
    ),
    ("DELETE", "/v1/roles/{role}"): Operation(
        "removeRole",
        "Remove a custom role",
        "roles",
        {200: v.RoleRemoved},
        (400, *_AUTH, 404, 409),
        params=(_flag("force", "remove it even if live keys hold it"),),
    ),
    ("GET", "/v1/audit"): Operation(
        "auditTail",
        "The newest audit records",
        "audit",
        {200: ListOf(v.AuditRecord)},
        (400, *_AUTH),
        params=(
            _count(10_000),
            _whole("before", 1, "only records older than this seq (to page back)"),
        ),
    ),
    ("GET", "/v1/audit/checkpoints"): Operation(
        "auditCheckpoints",
        "The signed checkpoints of the audit log, oldest first",
        "audit",
        {200: Raw({"application/json": {"schema": {"type": "array", "items": _CHECKPOINT}}})},
        (400, *_AUTH),
        params=(
            _count(10_000),
            _whole("before", 0, "only checkpoints smaller than this size (to page back)"),
        ),
    ),
    ("GET", "/v1/audit/proof"): Operation(
        "auditProof",
        "An inclusion proof of one audit record (donjon-inclusion-proof/1)",
        "audit",
        {200: _PROOF},
        (400, *_AUTH, 404, 409),
        params=(
            _whole("seq", 1, "the record's seq", required=True),
            _whole("size", 1, "the checkpoint to prove against (default: the newest)"),
        ),
        description="Check it offline with `donjon audit check-proof FILE --key KEY`.",
    ),
    ("GET", "/v1/audit/consistency"): Operation(
        "auditConsistency",
        "A consistency proof between two checkpoints (donjon-consistency-proof/1)",
        "audit",
        {200: _PROOF},
        (400, *_AUTH, 404, 409),
        params=(
            _whole("old", 0, "the older checkpoint's size", required=True),
            _whole("new", 0, "the newer checkpoint's size", required=True),
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
        (400, *_AUTH, 409),
        params=(
            _whole("since", 1, "the first record's seq (default 1)"),
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
        (400, *_AUTH),
        params=(
            Param(
                "since",
                "query",
                {"type": "number", "minimum": 0},
                "only alerts raised at or after this time (seconds since the epoch)",
            ),
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
        "records in `evidence`; both can be proved against a signed checkpoint.",
    ),
    ("GET", "/v1/secrets"): Operation(
        "listSecrets",
        "List secrets (never values)",
        "secrets",
        {200: ListOf(v.SecretSummary)},
        _AUTH,
    ),
    ("POST", "/v1/secrets/{secret}"): Operation(
        "setSecret",
        "Create a secret",
        "secrets",
        {201: v.SecretVersion},
        (*_BODY, 409, 422),
        s.SecretValue,
    ),
    ("POST", "/v1/secrets/{secret}/versions"): Operation(
        "rotateSecret",
        "A new version of a secret",
        "secrets",
        {201: v.SecretVersion},
        (*_BODY, 404, 409, 422),
        s.SecretValue,
    ),
    ("DELETE", "/v1/secrets/{secret}"): Operation(
        "removeSecret",
        "Remove a secret no function is granted",
        "secrets",
        {204: None},
        (*_AUTH, 404, 409, 422),
    ),
    ("POST", "/v1/vault/rekey"): Operation(
        "rekeyVault",
        "Re-wrap every data key under a new key",
        "secrets",
        {200: v.RekeyResult},
        _AUTH,
    ),
    ("POST", "/v1/issuers"): Operation(
        "addIssuer",
        "Trust a JWT issuer",
        "issuers",
        {201: v.IssuerView},
        (*_BODY, 409),
        IssuerRequest,
    ),
    ("GET", "/v1/issuers"): Operation(
        "listIssuers", "List trusted JWT issuers", "issuers", {200: ListOf(v.IssuerView)}, _AUTH
    ),
    ("DELETE", "/v1/issuers/{issuer}"): Operation(
        "removeIssuer", "Stop trusting a JWT issuer", "issuers", {204: None}, (*_AUTH, 404)
    ),
    **_RESPONSE_OPERATIONS,
}
