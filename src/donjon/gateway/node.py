"""One Donjon node: the state and subsystems the gateway serves from."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from donjon.audit import AuditLog
from donjon.audit.changes import AuditedChanges
from donjon.audit.denials import DenialLog
from donjon.audit.inflight import IN_FLIGHT, CallsInFlight, reopen
from donjon.bundle import BundleError, BundleStore
from donjon.bundle.target import RuntimeTarget, probe_target
from donjon.config import Settings
from donjon.egress import EgressProxy
from donjon.gateway.large_events import LargeEvents
from donjon.gateway.limited_callers import LimitedCallers
from donjon.gateway.proof_work import AuditReads, ProofWork
from donjon.gateway.start_records import record_start
from donjon.gateway.stored_views import StoredViews
from donjon.identity import JwtVerifier, KeyIndex, Policy, Role
from donjon.lifecycle import Deployments, FunctionRegistry, SkippedRecord
from donjon.lifecycle.advisory_watch import AdvisoryWatch, restart_scanner
from donjon.monitor.alerts import AlertStore
from donjon.monitor.engine import Monitor
from donjon.monitor.quarantine import Quarantines
from donjon.monitor.responses import Responder, ResponsePolicy
from donjon.monitor.service import MonitorService, start_monitor
from donjon.monitor.throttles import Throttles
from donjon.obs import Metrics, MonitorCollector, NodeCollector
from donjon.ratelimit import (
    ConcurrencyLimiter,
    LimiterUnavailable,
    MemoryConcurrencyLimiter,
    MemoryRateLimiter,
    QuotaCounter,
    RateLimiter,
)
from donjon.ratelimit.backends import SharedLimits
from donjon.ratelimit.memory_quota import MemoryQuotaCounter
from donjon.ratelimit.quota_book import QuotaBook
from donjon.ratelimit.redis_posture import redis_risks
from donjon.sandbox import (
    ResourceControl,
    SandboxError,
    SandboxHost,
    SandboxPool,
    ShedTiming,
    check_sandbox,
    compile_filters,
)
from donjon.sandbox.backlog import node_bounds
from donjon.sandbox.budget import node_budget, node_tag
from donjon.scan import IsolatedScanner, ScanPolicy, cache_dir_for
from donjon.store import (
    Engine,
    FunctionStore,
    InvocationLogStore,
    IssuerStore,
    KeyStore,
    RoleStore,
)
from donjon.store.audit_outbox import AuditOutbox
from donjon.store.trim import CountedTrim
from donjon.triggers.envelope import Submit, SubmitAll
from donjon.triggers.queue import AsyncInvocations
from donjon.triggers.queue.noted import record_noted
from donjon.vault import AUDIT_OUTBOX_PURPOSE, MasterKey
from donjon.vault.keyring import Keyring
from donjon.vault.service import Vault

if TYPE_CHECKING:
    from donjon.gateway.call_plan import CallPlan

__all__ = ["LAST_USED_WRITE_S", "Node"]

log = logging.getLogger("donjon")

#: Keys' last-used times are written at most this often (never once per request).
LAST_USED_WRITE_S = 60.0
#: Expired invocation logs are purged this often, at most this many batches of this many rows.
LOG_PURGE_INTERVAL_S = 3600.0
LOG_PURGE_BATCH = 1000
LOG_PURGE_MAX_BATCHES = 100


@dataclass
class Node:
    settings: Settings
    engine: Engine
    master: MasterKey
    functions: FunctionStore
    keys: KeyStore
    key_index: KeyIndex
    audit: AuditLog
    denials: DenialLog
    logs: InvocationLogStore
    bundles: BundleStore
    #: Deploy, replace and remove: the only writer of the registry below.
    deployments: Deployments
    resources: ResourceControl
    scan_policy: ScanPolicy
    #: Secrets: sealed in the store, opened for the calls of functions granted them.
    vault: Vault
    keyring: Keyring
    #: Trusted JWT issuers as stored, and the verifier over their live key sets.
    issuers: IssuerStore
    jwt: JwtVerifier
    #: Automatic responses (monitor/): quarantined functions (stored), throttled callers
    #: (in memory, over `limiter`), and what each finding kind gets.
    quarantines: Quarantines
    throttles: Throttles
    response_policy: ResponsePolicy
    limiter: RateLimiter = field(default_factory=MemoryRateLimiter)
    #: Concurrency slots per principal and, when shared (Redis), per function across nodes;
    #: `node_slots` counts this node's own calls, always in memory (gateway/slots.py).
    slots: ConcurrencyLimiter = field(default_factory=MemoryConcurrencyLimiter)
    node_slots: MemoryConcurrencyLimiter = field(default_factory=MemoryConcurrencyLimiter)
    #: The limits shared in Redis (DONJON_REDIS_URL; None: memory only): `limiter`'s rates.
    shared_limits: SharedLimits | None = None
    #: Daily quotas (denial of wallet): the usage counter, and the quotas in force
    #: (loaded at start, refreshed every DONJON_QUOTA_REFRESH_S; ratelimit/quota_book.py).
    quota_counter: QuotaCounter = field(default_factory=MemoryQuotaCounter)
    quotas: QuotaBook = field(default_factory=QuotaBook)
    #: Compute (ms) reserved by this node's running calls, per subject with a compute
    #: quota: each call's timeout until it ends (gateway/quota_check.py, `reserve_compute`).
    compute_in_flight: dict[str, int] = field(default_factory=dict)
    pool: SandboxPool | None = None
    #: Calls in flight, noted where the node's kill cannot take them (audit/inflight.py).
    calls_in_flight: CallsInFlight | None = None
    #: Where triggers hand their events (triggers/envelope.py): the async queue's enqueue
    #: (`invocations`, triggers/queue/), both set by the app (gateway/deliveries.py).
    submit: Submit | None = None
    #: The records of one message, all or none (`SubmitAll`, the same queue).
    submit_all: SubmitAll | None = None
    invocations: AsyncInvocations | None = None
    #: The deploy-time scan, in a helper process that loads the advisories once.
    scanner: IsolatedScanner | None = None
    skipped: list[SkippedRecord] = field(default_factory=list)
    #: Custom role documents; the decisions are made by `policy`, in memory.
    roles: RoleStore | None = None
    policy: Policy = field(default_factory=Policy)
    #: The egress proxy (a socket per sandbox of a function granted egress), once started.
    egress: EgressProxy | None = None
    #: The interpreter sandboxes run, once started; its wheel target is asked once.
    sandbox_python: Path | None = None
    #: Required controls found missing and served without (--unsafe-fewer-controls).
    controls_waived: tuple[str, ...] = ()
    #: Served over plain HTTP (--unsafe-http): audited at every start, as the above.
    plain_http: bool = False
    #: The alerts index (`GET /v1/alerts`), and the monitor once started (monitor/).
    alerts: AlertStore | None = None
    _monitor: MonitorService | None = None
    #: Re-checks deployed versions when the advisory data changes (lifecycle/advisory_watch.py).
    advisory_watch: AdvisoryWatch | None = None
    #: This node's Prometheus metrics, in a registry of its own (GET /metrics).
    metrics: Metrics = field(default_factory=Metrics)
    #: API keys a rate bucket or quota of their own refused lately (limited_callers.py).
    limited: LimitedCallers = field(default_factory=LimitedCallers)
    #: Audit proofs, export prefixes, audit pages, large views and events: their own threads.
    proof_work: ProofWork = field(default_factory=ProofWork)
    audit_reads: AuditReads = field(default_factory=AuditReads)
    stored_views: StoredViews = field(default_factory=StoredViews)
    large_events: LargeEvents = field(default_factory=LargeEvents)
    #: Keyed callers' checks per function version, resolved once (gateway/call_plan.py).
    call_plans: dict[tuple[int, str], CallPlan] = field(default_factory=dict)
    #: Admin changes and their audit records, committed together (audit/changes.py).
    changes: AuditedChanges = field(init=False)
    _runtime_target: RuntimeTarget | None = None
    _last_used_task: asyncio.Task[None] | None = None
    _purge_task: asyncio.Task[None] | None = None
    #: Each function's invocation log held to its newest entries (store/trim.py).
    log_bound: CountedTrim = field(init=False)
    #: The scan helper `spawn_scanner` started, until `start` takes it.
    _spawned: IsolatedScanner | None = None
    #: Why `start` failed, if it did (the lifespan keeps it for `donjon serve`'s last word).
    start_failure: BaseException | None = None

    def __post_init__(self) -> None:
        self.log_bound = CountedTrim(
            "invocation log",
            lambda function, keep, batch: asyncio.to_thread(self.logs.trim, function, keep, batch),
            self.settings.log_max_per_function,
        )
        self.changes = AuditedChanges(
            self.audit,
            AuditOutbox(self.engine, self.master.derive(AUDIT_OUTBOX_PURPOSE)),
            lease_s=self.settings.audit.outbox_lease_s,
        )
        # Read at scrape time; each commit of the audit writer is reported on the loop.
        self.metrics.watch(NodeCollector(lambda: self.pool, lambda: self.egress))
        self.metrics.watch(MonitorCollector(lambda: self._monitor))
        self.audit.add_listener(self.metrics.audit_committed)

    @property
    def monitor(self) -> Monitor | None:
        """The monitor over the audit log, once the node has started."""
        return self._monitor.monitor if self._monitor is not None else None

    @property
    def registry(self) -> FunctionRegistry:
        """The deployed functions, as `deployments` keeps them (read them, never write)."""
        return self.deployments.registry

    def spawn_scanner(self) -> IsolatedScanner:
        """Start the scan helper now, without waiting for it: it imports the scanners and
        loads the advisories (1-2 s) while the server checks the controls and the node
        opens the rest; `start` waits for it. `close_spawned` ends it if `start` never
        runs."""
        if self._spawned is None:
            scanner = IsolatedScanner(
                self.settings.advisories_path,
                cache_dir=cache_dir_for(self.settings.data_dir),
                egress_networks=self.settings.egress.allow_networks,
            )
            scanner.spawn()
            self._spawned = scanner
        return self._spawned

    def close_spawned(self) -> None:
        """End a scan helper `spawn_scanner` started for a `start` that will not run (killed:
        a serve refused by its controls check must not wait for it to finish loading)."""
        scanner, self._spawned = self._spawned, None
        if scanner is not None:
            scanner.close(kill=True)

    async def start(self) -> None:
        """Check the sandbox (refusing to serve without it), then start writers and the pool."""
        self.audit.prestart()  # the writer process starts while the rest below runs
        scanner = self._spawned  # spawned by the server before its controls check
        if scanner is None:
            scanner = await asyncio.to_thread(self.spawn_scanner)
        self._spawned = None
        try:
            host = await asyncio.to_thread(
                SandboxHost.detect, self.settings.data_dir, self.settings.sandbox
            )
            self.sandbox_python = host.python
            await asyncio.to_thread(self.bundles.sweep)  # staging a stopped node left behind
            await asyncio.to_thread(self.resources.sweep)
            # Every sandbox of this node is made inside the node's cgroup, under its budget.
            budget = node_budget(self.settings.sandbox)
            await asyncio.to_thread(
                self.resources.open_node, budget, node_tag(self.settings.data_dir)
            )
            await asyncio.to_thread(check_sandbox, host)
            # The helper has loaded the advisories once (a bad database stops the node
            # here, clearly); every deploy's scan then runs in a process forked from it.
            await asyncio.to_thread(scanner.start)
        except BaseException:
            await asyncio.to_thread(scanner.close)  # it is not left loading for nothing
            raise
        self.scanner = scanner
        self.audit.start(process=True)  # the writer: a process of its own (audit/remote.py)
        await self.changes.recover()  # changes a killed node committed and never logged
        # (and the calls it left in flight: an `interrupted` record each, before any call)
        # (and the enqueues it left noted whose rows are stored: triggers/queue/noted.py)
        self.calls_in_flight = await reopen(
            self.settings.data_dir / IN_FLIGHT,
            self.audit,
            functools.partial(record_noted, self.engine, self.audit),
        )
        if self.invocations is not None:  # each enqueue noted before its commit
            self.invocations.notes.journal = self.calls_in_flight
            self.invocations.notes.audit = self.audit  # its size goes in each note
        self.changes.start(self.settings.audit.outbox_drain_s)  # and those of failed appends
        self.denials.start()
        await self._start_quotas()
        # After the writer (it raises alerts through it), before anything is served.
        self._monitor = await start_monitor(
            self.settings.monitor,
            self.audit,
            self.alerts or AlertStore(self.engine),
            self.denials,
            responder=self.responder,
        )
        # Sockets live where the sandbox users can reach their own (beside the staged
        # runtime when Donjon runs as root; in the data dir when sandboxes run as us).
        egress_dir = (host.staging or self.settings.data_dir / "run") / "egress"
        self.egress = EgressProxy(self.settings.egress, self.audit, egress_dir)
        await self.egress.start()
        self._last_used_task = asyncio.get_running_loop().create_task(
            self._write_last_used(), name="key-last-used"
        )
        await self.housekeeping()  # at start, then periodically
        self._purge_task = asyncio.get_running_loop().create_task(
            self._purge_logs_periodically(), name="log-retention"
        )
        # Staged bundles a stopped node left: no sandbox runs yet, none is in use.
        await asyncio.to_thread(host.collect_staging)
        # Sandboxes of functions granted egress reach the node's egress proxy.
        sandbox = self.settings.sandbox
        self.pool = SandboxPool(
            self.resources,
            compile_filters(),
            host,
            idle_timeout_s=sandbox.idle_s,
            egress=self.egress,
            bounds=node_bounds(
                sandbox.max_queued_per_function,
                sandbox.max_queued,
                sandbox.max_queue_wait_s,
                ShedTiming(sandbox.shed_target_s, sandbox.shed_interval_s),
            ),
        )
        self.pool.start()
        await self._check_shared_limits()
        try:  # what vendored wheels must fit: asked of the sandbox's interpreter once
            self._runtime_target = await asyncio.to_thread(probe_target, host.python)
        except BundleError as e:
            log.warning("vendored wheels are not checked at deploy: %s", e.message)
        self.deployments.start(self.pool, scanner, self._runtime_target)
        if self.advisory_watch is not None:  # after the monitor: its alerts go through it
            self.advisory_watch.start(functools.partial(restart_scanner, scanner))
        await record_start(self, budget)  # (node.start, unsafe flags, versions skipped)

    async def _check_shared_limits(self) -> None:
        """Ask the shared limits store once at start: an outage is reported now (logged,
        audited, alerted), not at the first call; the node serves either way. What in it
        puts the limits at risk (no password, in clear, evicting, forgetful) is logged."""
        shared = self.shared_limits
        if shared is None:
            return
        try:
            await shared.health.ask(shared.backend.ping)
        except LimiterUnavailable:
            return  # reported by the health check, once
        log.info("limits: shared with other nodes in %s", shared.health.name)
        if self.settings.redis_url is not None:
            url = self.settings.redis_url.reveal()
            networks = self.settings.egress.allow_networks
            risks = await redis_risks(shared.backend, url, answers=True, egress_networks=networks)
            for risk in risks:
                log.warning("limits risk: %s", risk)

    async def _start_quotas(self) -> None:
        """The quotas in force and today's usage so far (a restart does not reset a day)."""
        await self.quotas.refresh()
        self.quotas.start()
        if isinstance(self.quota_counter, MemoryQuotaCounter):
            await self.quota_counter.load()
            self.quota_counter.start()

    async def _stop_quotas(self) -> None:
        """After the calls: the compute they were charged is written before the node stops."""
        await self.quotas.stop()
        if isinstance(self.quota_counter, MemoryQuotaCounter):
            await self.quota_counter.close()

    @functools.cached_property
    def responder(self) -> Responder:
        """What the monitor calls on an alert in `block` mode (monitor/responses.py)."""
        return Responder(
            self.audit,
            self.response_policy,
            self.throttles,
            self.quarantines,
            self.revoke_key,
            protected=self._admin_key,
            changes=self.changes,
        )

    def _admin_key(self, key_id: str) -> bool:
        principal = self.key_index.principal_of(key_id)
        return principal is not None and principal.role == Role.ADMIN

    async def revoke_key(self, key_id: str) -> bool:
        """Revoke an API key (the store, then the index the gateway checks); False if no
        live key has that id. Auditing is the caller's: it knows who asked and why."""
        if not await asyncio.to_thread(self.keys.revoke, key_id):
            return False
        self.key_index.revoke(key_id)
        return True

    async def runtime_target(self) -> RuntimeTarget:
        """What dependencies must be built for: the sandbox's interpreter and platform."""
        if self._runtime_target is None:
            if self.sandbox_python is None:
                raise SandboxError("the node is not serving")
            self._runtime_target = await asyncio.to_thread(probe_target, self.sandbox_python)
        return self._runtime_target

    async def _write_last_used(self) -> None:
        while True:
            await asyncio.sleep(LAST_USED_WRITE_S)
            await self.flush_last_used()

    async def _purge_logs_periodically(self) -> None:
        while True:
            await asyncio.sleep(LOG_PURGE_INTERVAL_S)
            await self.housekeeping()

    async def housekeeping(self) -> None:
        """At start (no sandbox runs yet) and hourly: expired invocation logs purged, and
        the bundle trees no kept version runs removed (lifecycle/bundle_prune.py)."""
        await self.purge_logs()
        await self.deployments.prune.run()

    async def purge_logs(self) -> int:
        """Delete invocation logs older than the retention, in bounded batches; the count."""
        before = time.time() - self.settings.log_retention_days * 86400.0
        total = 0
        try:
            for _ in range(LOG_PURGE_MAX_BATCHES):
                n = await asyncio.to_thread(self.logs.purge, before, LOG_PURGE_BATCH)
                total += n
                if n < LOG_PURGE_BATCH:
                    break
        except Exception:  # a busy database: the next round deletes them
            log.exception("purging expired invocation logs failed")
        await self.log_bound.trim_all([d.name for d in self.registry.all()])
        return total

    async def flush_last_used(self) -> None:
        """Write the keys' last-used times gathered since the last write, in one batch."""
        used = self.key_index.take_used()
        try:
            await asyncio.to_thread(self.keys.touch, used)
        except Exception:  # a busy database: the times are kept for the next write
            log.exception("writing keys' last-used times failed")
            for key_id, ts in used.items():
                self.key_index.note_used(key_id, ts)

    async def end_calls(self) -> None:
        """End every sandbox now (the node is stopping): calls in flight fail and are audited."""
        if self.pool is not None:
            await self.pool.close()

    def _close_journal(self) -> None:
        """Close the journal of calls in flight (notes left in it: calls with no record)."""
        if self.invocations is not None:
            self.invocations.notes.journal = None  # (an enqueue now is not noted: no writer)
        if self.calls_in_flight is not None:
            self.calls_in_flight.close()

    async def stop(self) -> None:
        for task in (self._purge_task, self._last_used_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._purge_task = None
        if self._last_used_task is not None:
            self._last_used_task = None
            await self.flush_last_used()
        if self.advisory_watch is not None:
            await self.advisory_watch.stop()
        self.deployments.stop()
        await self.deployments.prune.stop()
        for work in (self.proof_work, self.audit_reads, self.stored_views, self.large_events):
            work.close()
        if self.pool is not None:
            await self.pool.close()
        await self.log_bound.close()  # its calls have ended: no entry is written after
        await asyncio.to_thread(self.resources.close_node)
        if self.scanner is not None:
            await asyncio.to_thread(self.scanner.close)
        if self.egress is not None:  # after the sandboxes: their calls' counts are written
            await self.egress.close()
        await self._stop_quotas()
        try:  # the shared store's connections, once its last reports are written
            await self.limiter.close()
        except Exception:
            log.exception("closing the limiter failed")
        if self.invocations is not None:  # enqueues whose callers were cancelled: recorded
            await self.invocations.settle()
        await self.changes.stop()  # no drain appends once the writer is stopping
        try:
            await self.denials.stop()  # the counted denials are written before the writer stops
            if self._monitor is not None:  # it examines them, and may alert, before it stops
                await self._monitor.close()
                self._monitor = None
        finally:
            self.audit.stop()
        self._close_journal()
        self.engine.dispose()
