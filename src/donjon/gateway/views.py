"""The HTTP API's response bodies as pydantic models: handlers render through them
(schemas.render), and /openapi.json describes them, examples included.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from donjon.gateway.schemas import Epoch, FunctionName

__all__ = [
    "AdvisoryFinding",
    "AlertView",
    "AuditRecord",
    "DeployResult",
    "FunctionView",
    "Health",
    "IssuerView",
    "KeyCreated",
    "KeyRotated",
    "KeyView",
    "LogEntry",
    "Problem",
    "QueueDepth",
    "Ready",
    "RekeyResult",
    "RoleApplied",
    "RoleRemoved",
    "RoleView",
    "ScanDone",
    "ScanSkipped",
    "SecretSummary",
    "SecretVersion",
    "WebhookAccepted",
]

_T = 1764547200.0  # an example time: 2025-12-01T00:00:00Z
_KEY_ID = "0123456789abcdef"
_DIGEST = "0f" * 32  # a sha256, in hex
_STATEMENT = {"effect": "allow", "actions": ["function:invoke"], "resources": ["billing-*"]}


def _example(**example: Any) -> ConfigDict:
    return ConfigDict(frozen=True, json_schema_extra={"examples": [example]})


class Problem(BaseModel):
    """An error: `application/problem+json` (RFC 9457). Members past these may follow."""

    model_config = ConfigDict(
        frozen=True,
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "about:blank",
                    "title": "Unauthorized",
                    "status": 401,
                    "detail": "missing, invalid or revoked credentials",
                    "request_id": "5f2c1e0a9b7d3c41",
                }
            ]
        },
    )

    type: str = Field("about:blank", description="`about:blank`: the status says it all")
    title: str = Field(description="the status's reason phrase, or the error's own title")
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="what went wrong and, when the caller can, how to fix it")
    request_id: str | None = Field(None, description="the request's id in the audit log")
    problems: list[str] | None = Field(None, description="each problem of a refused deploy")
    report: str | None = Field(None, description="a blocked deploy's scan report")


class Health(BaseModel):
    """Liveness: "failing" (503) only when the node must be restarted to serve again."""

    model_config = _example(status="ok", version="0.1.0", sandboxes=2)

    status: Literal["ok", "failing"]
    version: str
    sandboxes: int = Field(ge=0, description="sandboxes running now")


class Ready(BaseModel):
    """Readiness: "not ready" (503) while the node cannot complete calls now. Which check
    failed is in the server's log, not here: this answer is public."""

    model_config = _example(status="ready")

    status: Literal["ready", "not ready"]


class AdvisoryFinding(BaseModel):
    """An advisory covering a package the function's current version vendors."""

    model_config = _example(
        version=3,
        package="jinja2",
        installed="2.10",
        advisory="GHSA-462w-v97r-4m45",
        aliases=["CVE-2019-10906", "PYSEC-2019-217"],
        fixed=["2.10.1"],
        severity="high",
        summary="Jinja2 sandbox escape via string formatting",
    )

    version: int = Field(ge=1)
    package: str
    installed: str
    advisory: str
    aliases: list[str]
    fixed: list[str] = Field(description="versions that fix it (none: no fix published)")
    severity: str
    summary: str


class QueueDepth(BaseModel):
    pending: int | None = Field(
        ge=0,
        description="async invocations queued, running or waiting for a retry"
        " (null: the count could not be read just now; the node's log says why)",
    )
    limit: int = Field(ge=1, description="the most it may have pending (limits.queued)")


class FunctionView(BaseModel):
    model_config = _example(
        name="hello",
        version=3,
        digest=_DIGEST,
        deployed_at=_T,
        deployed_by=f"key:{_KEY_ID}",
        owner=f"key:{_KEY_ID}",
        manifest={"name": "hello", "handler": "main.handler", "memory_mb": 64},
    )

    name: FunctionName
    version: int = Field(ge=1)
    digest: str = Field(description="sha256 of the bundle")
    deployed_at: Epoch
    deployed_by: str
    owner: str | None
    manifest: dict[str, Any] = Field(description="the deployed donjon.yaml, as JSON")
    vulnerable: bool = Field(
        False, description="advisories cover its current version (docs/scanning.md)"
    )
    advisories: list[AdvisoryFinding] = Field(default_factory=list)
    queue: QueueDepth | None = Field(
        default=None, description="its durable async queue now (on GET of one function only)"
    )


class WebhookAccepted(BaseModel):
    model_config = _example(id="3f2a1c0e9b8d4e7f", function="on-push", delivery_id="72d3162e")

    id: str = Field(description="the invocation's id (audit log, `donjon logs`)")
    function: FunctionName
    delivery_id: str | None = Field(description="the sender's id of the delivery")


class ScanSkipped(BaseModel):
    model_config = ConfigDict(frozen=True)

    skipped: Literal[True]


class ScanDone(BaseModel):
    model_config = ConfigDict(frozen=True)

    findings: int = Field(ge=0)
    report: str


class DeployResult(BaseModel):
    model_config = _example(
        name="hello",
        version=3,
        digest=_DIGEST,
        scan={"findings": 0, "report": "no findings\n"},
        warnings=[],
    )

    name: FunctionName
    version: int = Field(ge=1)
    digest: str
    scan: ScanDone | ScanSkipped
    warnings: list[str]
    unchanged: bool = Field(
        False, description="the function already ran this bundle: nothing deployed (200)"
    )
    message: str | None = Field(None, description="what an unchanged deploy did (nothing)")


class LogEntry(BaseModel):
    """One call's output (stdout, stderr, the error), redacted of the function's secrets."""

    model_config = _example(
        function="hello",
        version=3,
        request_id="5f2c1e0a9b7d3c41",
        ts=_T,
        outcome="ok",
        output="resized 1 image\n",
    )

    function: FunctionName
    version: int
    request_id: str
    ts: Epoch
    outcome: str = Field(description="ok, or the error type (FunctionFailed, ...)")
    output: str
    cursor: int | None = Field(None, description="pass as `after` to get newer entries")
    duration_ms: float | None = Field(None, description="wall time at the gateway")
    memory_kb: int | None = Field(
        None, description="the worker's peak memory as it reported it (for the owner)"
    )


#: What a SigV4 secret looks like in the examples (elided).
_SIGV4_EXAMPLE = "djs_..."


class KeyCreated(BaseModel):
    model_config = _example(
        id=_KEY_ID,
        key=f"dj_{_KEY_ID}_...",
        sigv4_secret=_SIGV4_EXAMPLE,
        name="ci",
        role="developer",
        functions=["hello"],
        expires_at=_T + 86400,
    )

    id: str
    key: str = Field(description="the secret, shown this once")
    sigv4_secret: str = Field(
        description="the AWS SigV4 secret access key for the Lambda Invoke API, shown this once"
    )
    name: str
    role: str
    functions: list[str] = Field(description='["*"]: every function')
    expires_at: Epoch | None
    rate: str | None = Field(None, description="the key's own rate (None: its role's, or default)")
    burst: int | None = None
    concurrency: int | None = None


class KeyView(BaseModel):
    model_config = _example(
        id=_KEY_ID,
        name="ci",
        role="developer",
        functions=["*"],
        created_at=_T,
        revoked_at=None,
        expires_at=None,
        previous_until=None,
        last_used_at=_T + 60,
    )

    id: str
    name: str
    role: str
    functions: list[str] = Field(description='["*"]: every function')
    created_at: Epoch
    revoked_at: Epoch | None
    expires_at: Epoch | None
    previous_until: Epoch | None = Field(description="a rotated key's old secret works until")
    last_used_at: Epoch | None
    rate: str | None = Field(None, description="the key's own rate (None: its role's, or default)")
    burst: int | None = None
    concurrency: int | None = None


class KeyRotated(BaseModel):
    model_config = _example(
        id=_KEY_ID, key=f"dj_{_KEY_ID}_...", sigv4_secret=_SIGV4_EXAMPLE, previous_until=_T + 3600
    )

    id: str
    key: str = Field(description="the new secret, shown this once")
    sigv4_secret: str = Field(description="its SigV4 secret access key, shown this once")
    previous_until: Epoch


class RoleView(BaseModel):
    model_config = _example(name="billing-invoker", builtin=False, statements=[_STATEMENT], keys=1)

    name: str
    builtin: bool
    statements: list[dict[str, Any]]
    limits: dict[str, Any] | None = Field(
        None, description="the role's limits (rate, burst, concurrency), if it sets any"
    )
    keys: int = Field(ge=0, description="live keys holding the role")


class RoleApplied(BaseModel):
    model_config = _example(name="billing-invoker", created=True, statements=[_STATEMENT])

    name: str
    created: bool
    statements: list[dict[str, Any]]
    limits: dict[str, Any] | None = None


class RoleRemoved(BaseModel):
    model_config = _example(name="billing-invoker", keys_left_without_rights=[])

    name: str
    keys_left_without_rights: list[str]


class SecretVersion(BaseModel):
    model_config = _example(name="stripe-key", version=2)

    name: str
    version: int = Field(ge=1)


class SecretSummary(BaseModel):
    model_config = _example(
        name="stripe-key",
        versions=2,
        latest=2,
        created_at=_T,
        updated_at=_T + 60,
        granted_to=["billing"],
    )

    name: str
    versions: int = Field(ge=0)
    latest: int
    created_at: Epoch
    updated_at: Epoch
    granted_to: list[str] = Field(
        description="deployed functions using the secret: granted to their code "
        "(permissions.secrets) or named by their triggers (a webhook's, a storage or "
        "database event's: the platform reads those, never the function)"
    )


class RekeyResult(BaseModel):
    model_config = _example(rewrapped=12, kek_id="kek-2")

    rewrapped: int = Field(ge=0)
    kek_id: str


class IssuerView(BaseModel):
    model_config = _example(
        name="corp",
        issuer="https://login.example.com/",
        jwks="https://login.example.com/.well-known/jwks.json",
        audience="donjon",
        roles_claim="roles",
        allowed_roles=["invoker"],
        key_ids=["2025-12"],
        created_at=_T,
        refreshed_at=_T + 60,
    )

    name: str
    issuer: str
    jwks: str = Field(description='the JWKS URL, or "inline"')
    audience: str
    roles_claim: str
    allowed_roles: list[str]
    key_ids: list[str]
    created_at: Epoch
    refreshed_at: Epoch


class AuditRecord(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "seq": 42,
                    "ts": _T,
                    "actor": f"key:{_KEY_ID}",
                    "action": "function.invoke",
                    "target": "hello@3",
                    "outcome": "ok",
                    "detail": {"request_id": "5f2c1e0a9b7d3c41", "trigger": "invoke"},
                }
            ]
        },
    )

    seq: int = Field(ge=1)
    ts: Epoch
    actor: str
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]


class AlertView(BaseModel):
    """An alert (monitor/): a copy of its `alert.raised` audit record, which `seq` proves."""

    model_config = ConfigDict(
        frozen=True,
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "seq": 1207,
                    "ts": _T,
                    "id": "alert_3f0c9a51d2e84b7a9c1d0e2f3a4b5c6d",
                    "kind": "auth.credential_stuffing",
                    "detector": "auth_failures",
                    "mode": "alert",
                    "severity": "high",
                    "subject": "source:203.0.113.7",
                    "summary": "25 failed authentications from 203.0.113.7 in 300 s",
                    "evidence": [1180, 1206],
                    "detail": {"failures": 25, "window_s": 300.0},
                }
            ]
        },
    )

    seq: int = Field(ge=1)
    ts: Epoch
    id: str
    kind: str
    detector: str
    mode: str
    severity: str
    subject: str
    summary: str
    evidence: list[int]
    detail: dict[str, Any]
