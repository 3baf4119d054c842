"""The HTTP API's bodies as pydantic models: they validate requests, shape responses,
and are what /openapi.json describes (gateway/openapi.py), so the three cannot drift.

Request models are strict (a string is a string, a number is not a boolean);
`parse_body` turns every problem a model finds into one `BadRequest` naming them all.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from donjon.gateway.errors import BadRequest
from donjon.manifest.model import NAME_RE

__all__ = [
    "MAX_EXPIRY_S",
    "MAX_OVERLAP_S",
    "AuditRecord",
    "DeployResult",
    "FunctionView",
    "Health",
    "IssuerView",
    "KeyCreate",
    "KeyCreated",
    "KeyRotate",
    "KeyRotated",
    "KeyView",
    "LogEntry",
    "Problem",
    "RekeyResult",
    "RoleApplied",
    "RoleRemoved",
    "RoleView",
    "ScanDone",
    "ScanSkipped",
    "SecretSummary",
    "SecretValue",
    "SecretVersion",
    "parse_body",
    "query_flag",
    "render",
]

#: The longest a key may be made to live, and the longest a rotated key keeps working.
MAX_EXPIRY_S = 10 * 366 * 86400
MAX_OVERLAP_S = 30 * 86400

FunctionName = Annotated[str, Field(pattern=NAME_RE, examples=["hello"])]


def _integral(value: Any) -> Any:
    """JSON has one number type: 60.0 is the integer 60 (JSON Schema agrees); 60.5 is not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: A whole number, as JSON Schema's `integer` means it; never a boolean or a string.
Integer = Annotated[int, BeforeValidator(_integral)]
Epoch = Annotated[float, Field(description="seconds since the epoch (UTC)")]

M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], data: Any) -> M:
    """`data` (parsed JSON) as `model`, or one `BadRequest` listing every problem."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "(body)"
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise BadRequest(
            "invalid request body: " + "; ".join(problems[:10]),
            hint="GET /openapi.json describes every request body",
        ) from None


_FLAGS = {"1": True, "true": True, "0": False, "false": False}


def query_flag(request: Request, name: str) -> bool:
    """A yes/no query parameter: 1/true or 0/false (absent: no); anything else is refused."""
    raw = request.query_params.get(name)
    if raw is None:
        return False
    if raw not in _FLAGS:
        raise BadRequest(f"{name} must be 1, true, 0 or false")
    return _FLAGS[raw]


def render(body: BaseModel | list[Any], status_code: int = 200) -> JSONResponse:
    """A response shaped by its model (a model, or a list of models)."""
    if isinstance(body, BaseModel):
        content: Any = body.model_dump(mode="json")
    else:
        content = [b.model_dump(mode="json") if isinstance(b, BaseModel) else b for b in body]
    return JSONResponse(content, status_code=status_code)


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


# -- problems (RFC 9457) ------------------------------------------------------


class Problem(_Response):
    """An error: `application/problem+json` (RFC 9457). Members past these may follow."""

    model_config = ConfigDict(
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


# -- health -------------------------------------------------------------------


class Health(_Response):
    status: Literal["ok"]
    version: str = Field(examples=["0.1.0"])
    sandboxes: int = Field(ge=0, description="sandboxes running now")


# -- functions ----------------------------------------------------------------


class FunctionView(_Response):
    name: FunctionName
    version: int = Field(ge=1)
    digest: str = Field(description="sha256 of the bundle")
    deployed_at: Epoch
    deployed_by: str
    owner: str | None
    manifest: dict[str, Any] = Field(description="the deployed donjon.yaml, as JSON")


class ScanSkipped(_Response):
    skipped: Literal[True]


class ScanDone(_Response):
    findings: int = Field(ge=0)
    report: str


class DeployResult(_Response):
    name: FunctionName
    version: int = Field(ge=1)
    digest: str
    scan: ScanDone | ScanSkipped
    warnings: list[str]


class LogEntry(_Response):
    """One call's output (stdout, stderr, the error), redacted of the function's secrets."""

    function: FunctionName
    version: int
    request_id: str
    ts: Epoch
    outcome: str = Field(examples=["ok", "FunctionFailed"])
    output: str


# -- keys ---------------------------------------------------------------------


class KeyCreate(_Request):
    model_config = ConfigDict(
        strict=True,
        frozen=True,
        json_schema_extra={
            "examples": [
                {"name": "ci", "role": "developer", "functions": ["hello"], "expires_in_s": 86400}
            ]
        },
    )

    name: str = Field(min_length=1, description="a label (kept to its first 128 characters)")
    role: str = Field(min_length=1, description="a built-in role or a custom one")
    functions: list[FunctionName] | None = Field(
        None, min_length=1, description="the only functions the key may act on (omit: all)"
    )
    expires_in_s: Integer | None = Field(None, ge=1, le=MAX_EXPIRY_S)


class KeyCreated(_Response):
    id: str
    key: str = Field(description="the secret, shown this once")
    name: str
    role: str
    functions: list[str] = Field(description='["*"]: every function')
    expires_at: Epoch | None


class KeyView(_Response):
    id: str
    name: str
    role: str
    functions: list[str] = Field(description='["*"]: every function')
    created_at: Epoch
    revoked_at: Epoch | None
    expires_at: Epoch | None
    previous_until: Epoch | None = Field(description="a rotated key's old secret works until")
    last_used_at: Epoch | None


class KeyRotate(_Request):
    model_config = ConfigDict(
        strict=True,
        frozen=True,
        extra="forbid",
        json_schema_extra={"examples": [{"overlap_s": 600}]},
    )

    overlap_s: Integer = Field(3600, ge=0, le=MAX_OVERLAP_S, description="the old secret's grace")


class KeyRotated(_Response):
    id: str
    key: str = Field(description="the new secret, shown this once")
    previous_until: Epoch


# -- roles --------------------------------------------------------------------


class RoleView(_Response):
    name: str
    builtin: bool
    statements: list[dict[str, Any]]
    keys: int = Field(ge=0, description="live keys holding the role")


class RoleApplied(_Response):
    name: str
    created: bool
    statements: list[dict[str, Any]]


class RoleRemoved(_Response):
    name: str
    keys_left_without_rights: list[str]


# -- secrets and the vault ----------------------------------------------------


class SecretValue(_Request):
    model_config = ConfigDict(
        strict=True,
        frozen=True,
        extra="forbid",
        json_schema_extra={"examples": [{"value": "sk_test_4eC39HqLyjWDarjtT1zdp7dc"}]},
    )

    # The JSON Schema states what vault/names.check_value enforces (a 422 when broken).
    value: str = Field(
        description="text of 1 byte to 64 KiB, no NUL; never answered back",
        json_schema_extra={"minLength": 1, "maxLength": 65536, "pattern": "^[^\\u0000]*$"},
    )


class SecretVersion(_Response):
    name: str
    version: int = Field(ge=1)


class SecretSummary(_Response):
    name: str
    versions: int = Field(ge=0)
    latest: int
    created_at: Epoch
    updated_at: Epoch
    granted_to: list[str] = Field(description="deployed functions the secret is granted to")


class RekeyResult(_Response):
    rewrapped: int = Field(ge=0)
    kek_id: str


# -- issuers ------------------------------------------------------------------


class IssuerView(_Response):
    name: str
    issuer: str
    jwks: str = Field(description='the JWKS URL, or "inline"')
    audience: str
    roles_claim: str
    allowed_roles: list[str]
    key_ids: list[str]
    created_at: Epoch
    refreshed_at: Epoch


# -- audit --------------------------------------------------------------------


class AuditRecord(_Response):
    model_config = ConfigDict(frozen=True, extra="allow")

    seq: int = Field(ge=1)
    ts: Epoch
    actor: str
    action: str = Field(examples=["function.invoke"])
    target: str
    outcome: str
    detail: dict[str, Any]
