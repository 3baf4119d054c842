"""The node's monitor, assembled from settings: detectors, modes, index, webhooks.

`start_monitor` is what `Node.start` calls once the audit writer runs:
it catches the alerts index up with the log (a node that died between an
alert's record and its index row), checks that DONJON_MONITOR_MODES names only
detectors that exist, starts the webhooks, attaches the monitor to the audit
log, and feeds the `auth_failures` rule live from the denial log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from donjon.audit.denials import DenialLog
from donjon.audit.log import AuditEvent, AuditLog
from donjon.config import MonitorSettings
from donjon.errors import Error
from donjon.monitor.advisory_rule import VulnerableDependency
from donjon.monitor.alerts import MAX_LIST, AlertStore
from donjon.monitor.detector import Detector
from donjon.monitor.engine import AlertSink, Monitor, Responder
from donjon.monitor.findings import Mode
from donjon.monitor.learned import learned_detectors
from donjon.monitor.limits_rule import LimitsUnavailable
from donjon.monitor.rules import AuthFailures, EgressRefused, SandboxViolation, ScanSkipped
from donjon.monitor.source_rule import EventSources
from donjon.monitor.unanswered import unanswered
from donjon.monitor.webhooks import WebhookSink

__all__ = [
    "MonitorError",
    "MonitorService",
    "check_modes",
    "default_detectors",
    "rule_detectors",
    "start_monitor",
]


#: Records a start examines at most that the last run committed but did not examine.
MAX_REPLAY = 100_000

log = logging.getLogger("donjon.monitor")


class MonitorError(Error):
    """The monitor's settings name something that does not exist."""

    title = "Monitor error"


def rule_detectors(settings: MonitorSettings) -> list[Detector]:
    """The deterministic rules (monitor/rules.py), with the settings' thresholds."""
    return [
        AuthFailures(
            per_source=settings.auth_failures,
            distinct_keys=settings.auth_distinct_keys,
            window_s=settings.auth_window_s,
        ),
        EgressRefused(),
        SandboxViolation(),
        ScanSkipped(),
        LimitsUnavailable(),
        EventSources(),
        VulnerableDependency(),
    ]


def default_detectors(settings: MonitorSettings) -> list[Detector]:
    """Every detector the node runs: the rules, and the learned ones (monitor/learned.py)."""
    return rule_detectors(settings) + learned_detectors(settings.learning_s)


def check_modes(settings: MonitorSettings, detectors: Sequence[Detector]) -> dict[str, Mode]:
    """The modes of DONJON_MONITOR_MODES; a name no detector has is an error, not ignored."""
    names = {d.name for d in detectors}
    unknown = sorted(set(settings.modes) - names)
    if unknown:
        raise MonitorError(
            f"DONJON_MONITOR_MODES names no detector called {', '.join(unknown)}",
            hint=f"the detectors are {', '.join(sorted(names))}",
        )
    return {name: cast("Mode", mode) for name, mode in settings.modes.items()}


@dataclass
class MonitorService:
    """What the node holds: the monitor, its index and its webhooks."""

    monitor: Monitor
    alerts: AlertStore
    webhooks: WebhookSink | None

    async def close(self, grace_s: float = 5.0) -> None:
        """Examine what was committed, then let queued webhooks go (within `grace_s`)."""
        await self.monitor.close()
        if self.webhooks is not None:
            await self.webhooks.close(grace_s)


async def start_monitor(
    settings: MonitorSettings,
    audit: AuditLog,
    alerts: AlertStore,
    denials: DenialLog | None = None,
    *,
    detectors: Sequence[Detector] | None = None,
    responder: Responder | None = None,
    clock: Callable[[], float] = time.time,
) -> MonitorService:
    """Build and attach the node's monitor (on the running loop)."""
    chosen = list(detectors) if detectors is not None else default_detectors(settings)
    modes = check_modes(settings, chosen)
    # Where the last run stopped examining records (None: the monitor never ran here).
    through = await asyncio.to_thread(alerts.through)
    await asyncio.to_thread(alerts.catch_up, through)
    sinks: list[AlertSink] = []
    webhooks = None
    if settings.webhooks and settings.webhook_secret is not None:
        webhooks = WebhookSink(
            settings.webhooks, settings.webhook_secret, ca_file=settings.webhook_ca
        )
        webhooks.start()
        sinks.append(webhooks)
    monitor = Monitor(
        audit,
        chosen,
        modes,
        clock=clock,
        responder=responder,
        sinks=sinks,
        index=alerts,
        dedup_s=settings.dedup_s,
        tick_s=settings.tick_s,
    )
    monitor.attach(asyncio.get_running_loop(), paused=True)
    if through is not None:
        # Records the last run committed but did not examine (it died): examined now,
        # after the alerts it raised within the dedup window, so none is raised twice.
        recent = await asyncio.to_thread(
            alerts.listing, since=clock() - settings.dedup_s, n=MAX_LIST
        )
        monitor.seed(recent.alerts)
        missed = await asyncio.to_thread(alerts.records_after, through, MAX_REPLAY)
        if missed and missed[0].seq > through + 1:
            log.warning(
                "monitor: records %d-%d were committed but never examined (only the"
                " newest %d are replayed)",
                through + 1,
                missed[0].seq - 1,
                MAX_REPLAY,
            )
        if responder is not None:  # alerts raised and never answered (it died between)
            for finding, seq in unanswered(missed, monitor.mode):
                log.warning("monitor: alert seq %d was never answered: answering it now", seq)
                await responder.respond(finding, seq)
        await monitor.replay(missed)
    monitor.resume()
    if denials is not None:
        for detector in chosen:
            if isinstance(detector, AuthFailures):
                denials.add_listener(_live(detector, clock))
    return MonitorService(monitor, alerts, webhooks)


def _live(rule: AuthFailures, clock: Callable[[], float]) -> Callable[[AuditEvent, str, str], None]:
    def listener(event: AuditEvent, client: str, named: str) -> None:
        rule.note_denial(event, client, clock(), named)

    return listener
