"""What each route of the gateway does, as OpenAPI operations: the catalog openapi.py reads.

The app's route table (app.py, admin.py) is the one source of what is served;
this catalog says, for each (method, path) served, its operation id, tag, body
models (schemas.py, the models the handlers validate and render with),
parameters and every status it answers with. /openapi.json describes exactly
the routes the app serves: a served route missing here fails
tests/gateway/test_openapi.py, and an entry whose route is not served (the
Lambda Invoke API until its route is mounted) is left out of the document.
The audit log's, the monitor's and the timeline's entries are in
operations_audit.py; the shapes they are written in, in operation_model.py.
"""

from __future__ import annotations

from donjon.gateway import schemas as s
from donjon.gateway import views as v
from donjon.gateway.operation_model import (
    ANY_JSON,
    AUTH,
    BODY,
    Body,
    ListOf,
    Operation,
    Param,
    Raw,
    count,
    flag,
    whole,
)
from donjon.gateway.operations_audit import AUDIT_OPERATIONS
from donjon.gateway.operations_queue import QUEUE_OPERATIONS
from donjon.gateway.operations_quotas import QUOTA_OPERATIONS
from donjon.gateway.operations_supply import SUPPLY_OPERATIONS
from donjon.gateway.queue_views import InvocationAccepted
from donjon.identity.issuers import IssuerRequest
from donjon.identity.policy_doc import RoleDocument

__all__ = ["OPERATIONS", "Body", "ListOf", "Operation", "Param", "Raw"]

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


_CALL = (400, 401, 403, 404, 413, 429, 500, 502, 503, 504, 507)

_INVOKE = Operation(
    "invokeFunction",
    "Invoke a function",
    "invoke",
    {200: _JSON_OUT, 202: InvocationAccepted},
    (*_CALL, 422),
    _JSON_IN,
    params=(
        Param(
            "Prefer",
            "header",
            {"type": "string", "example": "respond-async"},
            "respond-async: queue the event (durably) and answer 202 at once (RFC 7240)",
        ),
    ),
    description="Runs the function in a fresh sandbox (or its warm one) with the body as event. "
    "A failed call is a 500 naming the request id; `donjon logs` has the error. With "
    "`Prefer: respond-async` the same checks are made, the event is queued and the answer is "
    "202 with a Location to GET /v1/invocations/{invocation_id} (retries, dead-letter queue: "
    "docs/triggers.md).",
    headers={
        "x-request-id": "the call's id in the audit log and `donjon logs`",
        "location": "202 only: /v1/invocations/{invocation_id}",
        "preference-applied": "202 only: respond-async",
    },
)


def _trigger(method: str) -> Operation:
    return Operation(
        f"httpTrigger{method.capitalize()}",
        f"{method} an http trigger",
        "invoke",
        {200: _FUNCTION_RESPONSE},
        # 422: a body the function's input_schema refuses; 405: a method a public path
        # does not declare
        (*_CALL, 405, 422),
        None if method in ("GET", "HEAD", "OPTIONS") else _FUNCTION_RESPONSE,
        auth="optional",
        description="Served by the function whose http trigger owns the path; the trigger's "
        "`auth` (key, jwt, public) decides the credential. Any status may come from the "
        "function itself; the gateway's own are problem documents. To a caller without a "
        "valid credential a missing route is a 401, like a protected one, and to one that may "
        "invoke some functions only a 403, like another's; a method a path with a public "
        "trigger does not declare is a 405 naming those it does (Allow).",
    )


_LAMBDA_HEADERS = (
    Param(
        "X-Amz-Invocation-Type",
        "header",
        {"type": "string", "enum": ["RequestResponse", "Event", "DryRun"]},
        "RequestResponse (default), Event (queued, 202; docs/triggers.md) or DryRun",
    ),
    Param(
        "X-Amz-Log-Type",
        "header",
        {"type": "string", "enum": ["None", "Tail"]},
        "Tail: the last 4 KB of the call's log in X-Amz-Log-Result (callers allowed function:logs)",
    ),
    Param(
        "X-Amz-Client-Context",
        "header",
        {"type": "string", "maxLength": 3583},
        "base64 of a JSON object (client, custom, env): the handler's context.client_context "
        "(RequestResponse calls only, as Lambda)",
    ),
    Param("Qualifier", "query", {"type": "string"}, "a version"),
)
_LAMBDA_ERRORS = Raw(
    {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}},
        "application/json": {"schema": {"type": "object"}},
    }
)


#: (METHOD, path template) -> operation. Paths are the app's own route templates.
OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/healthz"): Operation(
        "health",
        "Liveness and version: 503 only if the node must be restarted",
        "node",
        {200: v.Health, 503: v.Health},
        (),
        auth="none",
    ),
    ("GET", "/readyz"): Operation(
        "ready",
        "Readiness: 503 while the node cannot complete calls now",
        "node",
        {200: v.Ready, 503: v.Ready},
        (),
        auth="none",
    ),
    ("GET", "/metrics"): Operation(
        "metrics",
        "Prometheus metrics",
        "node",
        {200: Raw({"text/plain": {"schema": {"type": "string"}}}, "Prometheus text format")},
        AUTH,
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
    ("POST", "/hooks/{path}"): Operation(
        "webhookDelivery",
        "Deliver a signed webhook",
        "invoke",
        {202: v.WebhookAccepted},
        (401, 404, 413, 429, 503),
        _FUNCTION_RESPONSE,
        auth="none",
        description="Served by the function whose webhook trigger owns the path. The body's "
        "signature (the trigger's scheme: github, stripe or standard) is checked against "
        "the trigger's vault secret before anything parses it; a bad or missing signature, "
        "a timestamp more than 5 minutes off, or a delivery id accepted before is a 401. "
        "An accepted delivery is answered 202 at once and runs as an async invocation.",
    ),
    ("OPTIONS", "/fn/{path}"): _trigger("OPTIONS"),
    ("POST", "/2015-03-31/functions/{name}/invocations"): Operation(
        "lambdaInvoke",
        "AWS Lambda's Invoke API",
        "lambda",
        {200: _JSON_OUT, 202: None, 204: None},
        (400, 401, 403, 404, 413, 422, 429, 500, 501, 502, 503, 504),
        _JSON_IN,
        _LAMBDA_HEADERS,
        auth="sigv4",
        description="For boto3 and the AWS CLI: SigV4 with a Donjon key id as access key id.",
        headers={
            "X-Amz-Function-Error": "Unhandled when the function failed",
            "X-Amz-Executed-Version": "the version that ran",
            "X-Amz-Log-Result": "with X-Amz-Log-Type: Tail, base64 of the log's end",
            "X-Donjon-Invocation-Id": "202 (Event) only: GET /v1/invocations/{invocation_id}",
        },
    ),
    ("POST", "/v1/functions"): Operation(
        "deployFunction",
        "Deploy a bundle",
        "functions",
        {200: v.DeployResult, 201: v.DeployResult},
        (*BODY, 409, 422, 503),
        _BUNDLE,
        (
            flag("unsafe_skip_scan", "skip the deploy scan (admins only; audited)"),
            flag("unsafe_allow_broad", "deploy broad permission grants (admins only; audited)"),
            flag(
                "unsafe_allow_public",
                "deploy triggers open to unauthenticated events: a webhook without a secret, "
                "a public http trigger without limits.rate (admins only; audited)",
            ),
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
        (*AUTH, 503),  # 503: its large lists' places taken (gateway/stored_views.py)
    ),
    ("GET", "/v1/functions/{name}"): Operation(
        "getFunction", "Get a function", "functions", {200: v.FunctionView}, (*AUTH, 404)
    ),
    ("DELETE", "/v1/functions/{name}"): Operation(
        "removeFunction", "Remove a function", "functions", {204: None}, (*AUTH, 404, 503)
    ),
    ("GET", "/v1/functions/{name}/logs"): Operation(
        "functionLogs",
        "A function's output per call, redacted of its secrets",
        "functions",
        {200: ListOf(v.LogEntry)},
        (400, *AUTH, 404),
        params=(
            count(500),
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
        description="A removed function's entries stay readable. Through a role's `*` a "
        "caller reads the calls of the versions it owned only (a name removed and deployed "
        "again is a new owner's); a statement naming the function, or the admin, reads all.",
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
        (400, *AUTH, 404),
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
        AUTH,
    ),
    ("POST", "/v1/keys"): Operation(
        "createKey", "Create an API key", "keys", {201: v.KeyCreated}, BODY, s.KeyCreate
    ),
    ("GET", "/v1/keys"): Operation(
        "listKeys", "List API keys", "keys", {200: ListOf(v.KeyView)}, AUTH
    ),
    ("DELETE", "/v1/keys/{key_id}"): Operation(
        "revokeKey",
        "Revoke an API key (a key may revoke itself)",
        "keys",
        {204: None},
        (*AUTH, 404),
    ),
    ("POST", "/v1/keys/{key_id}/rotate"): Operation(
        "rotateKey",
        "A new secret for a key; the old one works for the overlap",
        "keys",
        {201: v.KeyRotated},
        (*BODY, 404),
        s.KeyRotate,
    ),
    ("POST", "/v1/roles"): Operation(
        "applyRole",
        "Create (201) or replace (200) a custom role",
        "roles",
        {200: v.RoleApplied, 201: v.RoleApplied},
        BODY,
        RoleDocument,
    ),
    ("GET", "/v1/roles"): Operation(
        "listRoles", "List roles (built in and custom)", "roles", {200: ListOf(v.RoleView)}, AUTH
    ),
    ("DELETE", "/v1/roles/{role}"): Operation(
        "removeRole",
        "Remove a custom role",
        "roles",
        {200: v.RoleRemoved},
        (400, *AUTH, 404, 409),
        params=(flag("force", "remove it even if live keys hold it"),),
    ),
    ("GET", "/v1/audit"): Operation(
        "auditTail",
        "The newest audit records",
        "audit",
        {200: ListOf(v.AuditRecord)},
        (400, *AUTH),
        params=(
            count(10_000),
            whole("before", 1, "only records older than this seq (to page back)"),
        ),
        description=(
            "A credential allowed audit:read on some functions only reads the records "
            "about them; records naming no function need it on *."
        ),
        headers={
            "x-donjon-next-before": "a scoped page that read its most records without "
            "filling: page on with before= this seq"
        },
    ),
    ("GET", "/v1/secrets"): Operation(
        "listSecrets",
        "List secrets (never values)",
        "secrets",
        {200: ListOf(v.SecretSummary)},
        AUTH,
    ),
    ("POST", "/v1/secrets/{secret}"): Operation(
        "setSecret",
        "Create a secret",
        "secrets",
        {201: v.SecretVersion},
        (*BODY, 409, 422),
        s.SecretValue,
    ),
    ("POST", "/v1/secrets/{secret}/versions"): Operation(
        "rotateSecret",
        "A new version of a secret",
        "secrets",
        {201: v.SecretVersion},
        (*BODY, 404, 409, 422),
        s.SecretRotation,
    ),
    ("DELETE", "/v1/secrets/{secret}"): Operation(
        "removeSecret",
        "Remove a secret no function is granted",
        "secrets",
        {204: None},
        (*AUTH, 404, 409, 422),
    ),
    ("POST", "/v1/vault/rekey"): Operation(
        "rekeyVault",
        "Re-wrap every data key under a new key",
        "secrets",
        {200: v.RekeyResult},
        AUTH,
    ),
    ("POST", "/v1/issuers"): Operation(
        "addIssuer",
        "Trust a JWT issuer",
        "issuers",
        {201: v.IssuerView},
        (*BODY, 409),
        IssuerRequest,
    ),
    ("GET", "/v1/issuers"): Operation(
        "listIssuers", "List trusted JWT issuers", "issuers", {200: ListOf(v.IssuerView)}, AUTH
    ),
    ("DELETE", "/v1/issuers/{issuer}"): Operation(
        "removeIssuer", "Stop trusting a JWT issuer", "issuers", {204: None}, (*AUTH, 404)
    ),
    **AUDIT_OPERATIONS,
    **QUOTA_OPERATIONS,
    **QUEUE_OPERATIONS,
    **SUPPLY_OPERATIONS,
}
