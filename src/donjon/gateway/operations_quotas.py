"""The OpenAPI catalog of /v1/quotas (gateway/quotas_api.py): merged into OPERATIONS."""

from __future__ import annotations

from donjon.gateway.operation_model import AUTH, BODY, ListOf, Operation
from donjon.gateway.quota_views import QuotaRemoved, QuotaSet, QuotaView

__all__ = ["QUOTA_OPERATIONS"]

QUOTA_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/v1/quotas"): Operation(
        "listQuotas",
        "Every daily quota with today's usage (UTC) and when it resets",
        "quotas",
        {200: ListOf(QuotaView)},
        AUTH,
    ),
    ("PUT", "/v1/quotas/{quota}"): Operation(
        "setQuota",
        "Set (replace) the daily quota of a key, a role or a function (audited quota.set)",
        "quotas",
        {200: QuotaView, 201: QuotaView},
        (*BODY, 404),
        QuotaSet,
        description="A measure left out is unlimited (with neither, usage is only counted). "
        "The subject must exist: a live key's id, a built-in or custom role, a deployed "
        "function.",
    ),
    ("DELETE", "/v1/quotas/{quota}"): Operation(
        "removeQuota",
        "Remove a daily quota (audited quota.rm)",
        "quotas",
        {200: QuotaRemoved},
        (400, *AUTH, 404),
    ),
}
