"""The HTTP API's request bodies as pydantic models, and how handlers read and answer.

The models here validate requests and those in views.py shape responses; both are
what /openapi.json describes (gateway/openapi.py), so the three cannot drift.
Request models are strict (a string is a string, a number is not a boolean);
`parse_body` turns every problem a model finds into one `BadRequest` naming them all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from donjon.gateway.errors import BadRequest
from donjon.manifest.model import NAME_RE
from donjon.ratelimit.rates import MAX_BURST, MAX_CONCURRENCY

__all__ = [
    "MAX_EXPIRY_S",
    "MAX_OVERLAP_S",
    "Epoch",
    "FunctionName",
    "Integer",
    "KeyCreate",
    "KeyRotate",
    "SecretRotation",
    "SecretValue",
    "parse_body",
    "query_flag",
    "render",
    "render_json",
    "rendered_list",
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


_COMPACT = (",", ":")


def _dumped_one(item: Any, mode: Literal["json", "python"]) -> Any:
    return item.model_dump(mode=mode) if isinstance(item, BaseModel) else item


def _dumped(body: BaseModel | list[Any], mode: Literal["json", "python"]) -> Any:
    if isinstance(body, BaseModel):
        return body.model_dump(mode=mode)
    return [_dumped_one(b, mode) for b in body]


def render(body: BaseModel | list[Any], status_code: int = 200) -> Response:
    """A response shaped by its model (a model, or a list of models)."""
    try:
        data = _dumped(body, "json")
    except UnicodeEncodeError:  # pydantic's JSON mode cannot carry a lone surrogate either
        data = _dumped(body, "python")  # render_json escapes it (and says str() of the rest)
    return render_json(data, status_code)


def _utf8_json(data: Any) -> bytes:
    """`data` as JSONResponse renders it."""
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=_COMPACT).encode()


def rendered_list(items: Sequence[Any]) -> bytes:
    """The body `render(list(items))` answers (models, or JSON values as `render_json`
    takes them), made one item at a time: json's encoder holds the GIL for a whole
    document, and between items a thread doing this lets the event loop run
    (gateway/stored_views.py). The same fallbacks, for every item alike."""
    try:
        data = [_dumped_one(item, "json") for item in items]
    except UnicodeEncodeError:
        data = [_dumped_one(item, "python") for item in items]
    try:
        parts = [_utf8_json(d) for d in data]
    except UnicodeEncodeError:
        parts = [
            json.dumps(d, allow_nan=False, separators=_COMPACT, default=str).encode("ascii")
            for d in data
        ]
    return b"[" + b",".join(parts) + b"]"


def render_json(data: Any, status_code: int = 200) -> Response:
    """`data` (JSON values) as a JSON response, whatever strings it holds."""
    try:
        return JSONResponse(data, status_code=status_code)
    except UnicodeEncodeError:
        # A lone surrogate (a `\\ud800` an event, a result, a summary or an audit record
        # held, as JSON allows) is sent as its escape, as a sync call's answer is, not
        # failed as a 500 to everyone who lists it.
        text = json.dumps(data, allow_nan=False, separators=_COMPACT, default=str)
        return Response(text.encode("ascii"), status_code, media_type="application/json")


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True)


# -- request bodies -----------------------------------------------------------


class KeyCreate(_Request):
    model_config = ConfigDict(
        strict=True,
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "ci", "role": "developer", "functions": ["hello"], "expires_in_s": 86400}
            ]
        },
    )

    name: str = Field(min_length=1, max_length=128, description="a label, any text")
    role: str = Field(min_length=1, description="a built-in role or a custom one")
    functions: list[FunctionName] | None = Field(
        None, min_length=1, description="the only functions the key may act on (omit: all)"
    )
    expires_in_s: Integer | None = Field(None, ge=1, le=MAX_EXPIRY_S)
    rate: str | None = Field(
        None,
        pattern=r"^[1-9][0-9]{0,8}/(second|minute|hour|day)$",
        description="the key's token bucket refill (omit: its role's, else the server's)",
    )
    burst: Integer | None = Field(None, ge=1, le=MAX_BURST, description="the bucket's size")
    concurrency: Integer | None = Field(
        None, ge=1, le=MAX_CONCURRENCY, description="the key's calls in flight at once"
    )


class KeyRotate(_Request):
    model_config = ConfigDict(
        strict=True,
        frozen=True,
        extra="forbid",
        json_schema_extra={"examples": [{"overlap_s": 600}]},
    )

    overlap_s: Integer = Field(3600, ge=0, le=MAX_OVERLAP_S, description="the old secret's grace")


class SecretValue(_Request):
    model_config = ConfigDict(
        strict=True,
        frozen=True,
        extra="forbid",
        json_schema_extra={"examples": [{"value": "an example value"}]},
    )

    # The JSON Schema states what vault/names.check_value enforces (a 422 when broken).
    value: str = Field(
        description="text of 1 byte to 64 KiB, no NUL; never answered back",
        json_schema_extra={"minLength": 1, "maxLength": 65536, "pattern": "^[^\\u0000]*$"},
    )


class SecretRotation(SecretValue):
    model_config = ConfigDict(
        strict=True,
        frozen=True,
        extra="forbid",
        json_schema_extra={"examples": [{"value": "an example value", "no_grace": True}]},
    )

    no_grace: bool = Field(
        False,
        description="delete the older versions with this one: no webhook accepts them from "
        "now on (a leaked value); the admin's or the secret's creator's only",
    )
