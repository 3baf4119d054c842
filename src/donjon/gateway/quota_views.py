"""The bodies of /v1/quotas (gateway/quotas_api.py): what /openapi.json describes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from donjon.gateway.schemas import Integer

__all__ = ["MAX_COMPUTE_S", "MAX_INVOCATIONS", "Measure", "QuotaRemoved", "QuotaSet", "QuotaView"]

#: The largest daily quotas one can set (beyond them, leave the measure unlimited).
MAX_INVOCATIONS = 10**12
MAX_COMPUTE_S = 10**9


class QuotaSet(BaseModel):
    """A subject's daily quota; a measure left out (or null) is unlimited."""

    model_config = ConfigDict(
        strict=True,
        frozen=True,
        extra="forbid",
        json_schema_extra={"examples": [{"invocations": 10000, "compute_seconds": 3600}]},
    )

    invocations: Integer | None = Field(
        None, ge=0, le=MAX_INVOCATIONS, description="calls per UTC day (omit: unlimited)"
    )
    compute_seconds: float | None = Field(
        None,
        ge=0,
        le=MAX_COMPUTE_S,
        description="seconds of calls' wall time per UTC day (omit: unlimited)",
    )


class Measure(BaseModel):
    """Today's usage of one measure, against its limit (null: unlimited)."""

    used: float
    limit: float | None


class QuotaView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject": "key:0123456789abcdef",
                    "invocations": {"used": 3, "limit": 3},
                    "compute_seconds": {"used": 0.25, "limit": None},
                    "day": "2026-12-02",
                    "resets_at": "2026-12-03T00:00:00Z",
                    "updated_at": 1764633600.0,
                    "updated_by": "key:fedcba9876543210",
                }
            ]
        }
    )

    subject: str = Field(description="key:ID, role:NAME or function:NAME")
    invocations: Measure
    compute_seconds: Measure
    day: str = Field(description="the UTC day the usage is of")
    resets_at: str = Field(description="the next UTC midnight, when usage starts again")
    updated_at: float
    updated_by: str


class QuotaRemoved(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"subject": "function:hello", "removed": True}]}
    )

    subject: str
    removed: bool
