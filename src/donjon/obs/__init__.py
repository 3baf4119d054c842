"""Observability: the server's structured logs and its Prometheus metrics.

`configure_logging` (logging.py) renders every log line of the process as
JSON (a console view on a terminal) through one redaction step
(redaction.py), with the request id bound by the gateway; `Metrics`
(metrics.py) holds a node's metrics in a registry of its own, and
`NodeCollector` (collector.py) reads what the pool and the egress proxy count
at scrape time, `MonitorCollector` what the monitor and its webhooks count.
"""

from __future__ import annotations

from donjon.obs.collector import MonitorCollector, NodeCollector
from donjon.obs.errors import ObservabilityError
from donjon.obs.logging import (
    REQUEST_ID_LENGTH,
    bind_request_id,
    clear_log_context,
    configure_logging,
    mint_request_id,
)
from donjon.obs.metrics import CONTENT_TYPE, Metrics, auth_failure_kind
from donjon.obs.redaction import (
    bind_secrets,
    log_secrets,
    redact_event,
    redact_text,
    unbind_secrets,
)

__all__ = [
    "CONTENT_TYPE",
    "REQUEST_ID_LENGTH",
    "Metrics",
    "MonitorCollector",
    "NodeCollector",
    "ObservabilityError",
    "auth_failure_kind",
    "bind_request_id",
    "bind_secrets",
    "clear_log_context",
    "configure_logging",
    "log_secrets",
    "mint_request_id",
    "redact_event",
    "redact_text",
    "unbind_secrets",
]
