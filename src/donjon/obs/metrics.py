"""The node's Prometheus metrics, in a registry of its own (`node.metrics`).

Each node holds one `Metrics`: tests run several nodes in one process, and a
process-wide registry would mix their counts. The hot path's counts (a call's
outcome and its time, `invocation`) are plain numbers on the event loop,
rendered at scrape time by `CallCollector` (calls.py): prometheus_client's own
counter and histogram take a lock and make several Python calls per
observation. What other subsystems count (cold starts and pool sizes in the
sandbox pool, egress decisions in the egress proxy) they keep as plain numbers
too, read at scrape time by `NodeCollector` (collector.py), so they import
nothing of Prometheus. The audit writer's append time and batch sizes come
through `AuditLog.add_listener`, as plain numbers too (`AuditCollector`,
audit_metrics.py).

Names and units follow Prometheus' conventions: base units (seconds), a
`_total` suffix on counters, labels of bounded sets only (a function name, an
outcome that is an error class name, a reason or kind from a fixed list).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
)
from prometheus_client.exposition import generate_latest

from donjon.obs.audit_metrics import AuditCollector
from donjon.obs.calls import CallCollector

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from donjon.audit.log import CommittedBatch

__all__ = ["AUTH_FAILURE_KINDS", "CONTENT_TYPE", "KILL_REASONS", "Metrics", "auth_failure_kind"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: The sandbox errors that end a call by killing its processes, and the reason label.
KILL_REASONS: dict[str, str] = {
    "FunctionTimeout": "timeout",
    "FunctionMemoryExceeded": "memory",
    "FunctionBlocked": "policy",
    "FunctionCrashed": "crashed",
}
#: Outcomes of a call refused for its function's concurrency (sandbox/pool.py).
_CONCURRENCY_OUTCOMES = frozenset({"TooManyInvocations"})

AUTH_FAILURE_KINDS = ("missing", "invalid", "revoked", "expired", "signature", "forbidden")

#: Wall time of a call, from the sandbox's hand-off to the result (seconds).
_DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
_APPEND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
#: Labelled children kept for the hot refusal path (`Metrics.shed`); past it, looked up.
_MAX_KEPT_CHILDREN = 4096


def auth_failure_kind(action: str, reason: str) -> str | None:
    """The `kind` label of a denial (gateway/access.py `deny`), None if it is no auth failure.

    `authz.denied` is `forbidden`; `auth.denied` is told by its reason: no
    credential, a revoked or expired one, a signature that does not verify
    (SigV4), or any other bad credential (`invalid`).
    """
    if action == "authz.denied":
        return "forbidden"
    if action != "auth.denied":
        return None
    text = reason.lower()
    if text.startswith("sigv4: "):
        # What follows a SigV4 reason's own words (after a ": ") names the sender's
        # headers: an unsigned `X-Amz-Revoked-Key` must not make the request a revoked key.
        text = text.removeprefix("sigv4: ").partition(": ")[0]
    if "missing" in text:
        return "missing"
    if "revoked" in text:
        return "revoked"
    if "expired" in text or "past its overlap" in text:
        return "expired"
    if "signature" in text:
        return "signature"
    return "invalid"


class Metrics:
    """Every metric of one node, and the registry `GET /metrics` renders."""

    def __init__(self) -> None:
        # No `_created` series beside each counter and histogram: the text format
        # does not need them, and they double a scrape (process-wide setting).
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library
        self.registry = CollectorRegistry()
        r = self.registry
        #: `donjon_invocations_total` and `donjon_invocation_duration_seconds`.
        self.calls = CallCollector(_DURATION_BUCKETS)
        r.register(self.calls)
        self.kills = Counter(
            "donjon_sandbox_kills",
            "Calls ended by killing their processes, by reason (timeout, memory, policy, crashed)",
            ["reason"],
            registry=r,
        )
        self.auth_failures = Counter(
            "donjon_auth_failures",
            "Refused requests by kind (missing, invalid, revoked, expired, signature, forbidden)",
            ["kind"],
            registry=r,
        )
        self.rate_limited = Counter(
            "donjon_rate_limited",
            "Calls refused by a limit, by function and limit (rate, concurrency, overload;"
            " queued: async invocations refused by a full queue;"
            " connect: new connections refused at accept, function '-';"
            " admin: admin requests over their principal's admin bucket, function '-')",
            ["function", "limit"],
            registry=r,
        )
        #: `rate_limited`'s overload child per function (`shed`), at most _MAX_KEPT_CHILDREN.
        self._shed_children: dict[str, Any] = {}
        #: `donjon_audit_append_seconds`, `donjon_audit_batch_records` and
        #: `donjon_audit_records_total` (audit_metrics.py), in that order.
        self.audit = AuditCollector(_APPEND_BUCKETS, _BATCH_BUCKETS)
        r.register(self.audit)
        self.queue_pending = Gauge(
            "donjon_queue_pending",
            "Async invocations pending in the durable queue (queued, running, waiting for a"
            " retry), by function, read from the database at each scrape (bound: limits.queued)",
            ["function"],
            registry=r,
        )
        for kind in AUTH_FAILURE_KINDS:  # every kind shows, at 0, before the first
            self.auth_failures.labels(kind)
        for reason in KILL_REASONS.values():
            self.kills.labels(reason)

    # -- instrumentation sites: one call each -------------------------------------

    def invocation(self, function: str, outcome: str, seconds: float) -> None:
        """One call ended: its outcome, its time, and the kill or limit that ended it
        (on the event loop, as every scrape)."""
        self.calls.observe(function, outcome, seconds)
        if outcome != "ok":
            reason = KILL_REASONS.get(outcome)
            if reason is not None:
                self.kills.labels(reason).inc()
            elif outcome in _CONCURRENCY_OUTCOMES:
                self.rate_limited.labels(function, "concurrency").inc()
            elif outcome == "CallShed":  # shed in the pool rather than at admission
                self.shed(function)

    def denied(self, action: str, reason: str) -> None:
        """A refused request (gateway/access.py `deny`): counted if it is an auth failure."""
        kind = auth_failure_kind(action, reason)
        if kind is not None:
            self.auth_failures.labels(kind).inc()

    def throttled(self, function: str) -> None:
        """A call refused by its function's rate limit."""
        self.rate_limited.labels(function, "rate").inc()

    def admin_throttled(self) -> None:
        """An admin request refused by its principal's admin bucket (gateway/admin_rate.py)."""
        self.rate_limited.labels("-", "admin").inc()

    def shed(self, function: str) -> None:
        """A call shed because its queue was full or it would wait too long (503).

        Under an overload this runs for most requests the node reads: the labelled
        child is kept per function (a deployed one: the early shed sheds no other) so a
        refusal does not pay prometheus_client's `labels` each time. Children are never
        removed from this counter, so a kept one stays the one the scrape reads."""
        child = self._shed_children.get(function)
        if child is None:
            child = self.rate_limited.labels(function, "overload")
            if len(self._shed_children) < _MAX_KEPT_CHILDREN:
                self._shed_children[function] = child
        child.inc()

    def audit_committed(self, batch: CommittedBatch) -> None:
        """The audit log's listener (on the loop, or the writer's thread: the collector
        locks)."""
        self.audit.committed(batch.write_seconds, len(batch.records))

    def pending(self, counts: dict[str, int], functions: list[str]) -> None:
        """The queue's pending invocations by function, as read for this scrape: every
        deployed function shows (0 when none), and any other that still has some."""
        self.queue_pending.clear()
        for function in sorted({*functions, *counts}):
            self.queue_pending.labels(function).set(counts.get(function, 0))

    # -- scraping -------------------------------------------------------------------

    def watch(self, collector: Collector) -> None:
        """Read `collector` at every scrape (the node's pool and egress: collector.py)."""
        self.registry.register(collector)

    def render(self) -> bytes:
        """The text exposition of every metric of this node."""
        return generate_latest(self.registry)
