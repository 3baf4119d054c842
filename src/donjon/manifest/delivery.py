"""The manifest's `retry` and `destinations`: how async deliveries of a function are
retried, and where their outcomes go (triggers/ runs them)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Destinations", "Retry"]

_NAME = r"^[a-z][a-z0-9-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Retry(_Strict):
    """`retry: {attempts: 3, backoff_s: 2, max_age_s: 3600}`: an async delivery runs at
    most `attempts` times, the n-th retry after about backoff_s * 2**(n-1) seconds (with
    jitter), and never once it is older than `max_age_s`."""

    # strict: a number, not `true` (read as 1) or "3", as limits' queued.
    attempts: int = Field(default=3, ge=1, le=100, strict=True)
    backoff_s: float = Field(default=2.0, gt=0, le=3600, strict=True)
    max_age_s: int = Field(default=3600, ge=1, le=7 * 86400, strict=True)


class Destinations(_Strict):
    """`destinations: {on_success: fn, on_failure: fn}`: a function invoked (async) with
    the outcome of each delivery that succeeded, or that was dead-lettered."""

    on_success: Annotated[str, Field(pattern=_NAME)] | None = None
    on_failure: Annotated[str, Field(pattern=_NAME)] | None = None
