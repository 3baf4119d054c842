"""What the node's subsystems count themselves, read at scrape time.

The sandbox pool counts its cold starts and knows its sandboxes; the egress
proxy counts its decisions; the monitor counts the alerts it raised and the
records it never examined, and its webhooks the alerts delivered, failed and
dropped. They keep plain numbers (nothing of Prometheus
on their paths); `NodeCollector` turns them into metric families each time
`GET /metrics` is served, on the event loop, so the reads need no lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from donjon.egress import EgressProxy
    from donjon.monitor.service import MonitorService
    from donjon.sandbox import SandboxPool

__all__ = ["EGRESS_DECISIONS", "WEBHOOK_OUTCOMES", "MonitorCollector", "NodeCollector"]

#: Every decision shows, at 0, before the first.
EGRESS_DECISIONS = ("allowed", "denied", "failed")
#: Every outcome of an alert's webhook delivery shows, at 0, before the first.
WEBHOOK_OUTCOMES = ("delivered", "failed", "dropped")


class NodeCollector(Collector):
    """Cold starts, pool sizes and egress decisions of one node, as they are now."""

    def __init__(
        self,
        pool: Callable[[], SandboxPool | None],
        egress: Callable[[], EgressProxy | None],
    ) -> None:
        self._pool = pool
        self._egress = egress

    def collect(self) -> Iterator[Metric]:
        pool = self._pool()
        cold = CounterMetricFamily(
            "donjon_cold_starts", "Sandboxes started because a call found none ready"
        )
        cold.add_metric([], pool.cold_starts if pool is not None else 0)
        yield cold
        sandboxes = GaugeMetricFamily(
            "donjon_sandboxes",
            "Sandboxes in the pool by function and state (busy: serving a call; idle)",
            labels=["function", "state"],
        )
        draining = GaugeMetricFamily(
            "donjon_sandboxes_draining",
            "Sandboxes of replaced versions finishing their calls",
        )
        if pool is not None:
            for function, (busy, idle) in sorted(pool.sizes().items()):
                sandboxes.add_metric([function, "busy"], busy)
                sandboxes.add_metric([function, "idle"], idle)
        draining.add_metric([], pool.draining() if pool is not None else 0)
        yield sandboxes
        yield draining
        waiting = GaugeMetricFamily(
            "donjon_calls_waiting",
            "Calls waiting for a free slot of their function (bounded: DONJON_MAX_QUEUED)",
        )
        waiting.add_metric([], pool.backlog.waiting if pool is not None else 0)
        yield waiting
        egress = self._egress()
        counts = egress.records.decisions if egress is not None else {}
        connections = CounterMetricFamily(
            "donjon_egress_connections",
            "Connections of functions through the egress proxy, by decision"
            " (allowed, denied, failed)",
            labels=["decision"],
        )
        for decision in sorted({*EGRESS_DECISIONS, *counts}):
            connections.add_metric([decision], counts.get(decision, 0))
        yield connections


class MonitorCollector(Collector):
    """Alerts raised, records left unexamined, and webhook deliveries by outcome: every
    alert a flood made the node lose (its push, or the examination that would raise it)
    is counted where an operator's monitoring looks, not only in a log line."""

    def __init__(self, service: Callable[[], MonitorService | None]) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        service = self._service()
        monitor = service.monitor if service is not None else None
        webhooks = service.webhooks if service is not None else None
        yield CounterMetricFamily(
            "donjon_alerts_raised",
            "Alerts the monitor raised",
            value=monitor.raised if monitor is not None else 0,
        )
        yield CounterMetricFamily(
            "donjon_monitor_records_dropped",
            "Audit records the monitor never examined: its backlog was full (no detector"
            " saw them, so no alert of theirs was raised)",
            value=monitor.dropped if monitor is not None else 0,
        )
        sent = CounterMetricFamily(
            "donjon_alert_webhook_alerts",
            "Alerts per webhook URL by outcome: delivered, failed (every attempt),"
            " dropped (its queue was full)",
            labels=["outcome"],
        )
        counts = (
            {
                "delivered": webhooks.delivered,
                "failed": webhooks.failed,
                "dropped": webhooks.dropped,
            }
            if webhooks is not None
            else {}
        )
        for outcome in WEBHOOK_OUTCOMES:
            sent.add_metric([outcome], counts.get(outcome, 0))
        yield sent
