"""The shapes the OpenAPI catalog is written in (operations.py, operations_audit.py):
operations, their parameters and bodies, and the parameters and status sets that
many operations share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

__all__ = [
    "ANY_JSON",
    "AUTH",
    "BODY",
    "Body",
    "ListOf",
    "Operation",
    "Param",
    "Raw",
    "count",
    "flag",
    "whole",
]


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


def flag(name: str, description: str) -> Param:
    return Param(
        name, "query", {"type": "string", "enum": ["1", "true", "0", "false"]}, description
    )


def count(most: int) -> Param:
    schema = {"type": "integer", "minimum": 1, "maximum": most, "default": 20}
    return Param("n", "query", schema, f"how many, newest last (1 to {most})")


def whole(name: str, least: int, description: str, *, required: bool = False) -> Param:
    schema: dict[str, Any] = {"type": "integer", "minimum": least, "maximum": 2**62}
    return Param(name, "query", schema, description, required)


AUTH = (401, 403)
BODY = (400, 401, 403, 413)
