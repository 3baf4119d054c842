"""One Donjon node: the state and subsystems the gateway serves from."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from sqlalchemy import Engine

from donjon.audit import AuditEvent, AuditLog
from donjon.audit.denials import DenialLog
from donjon.bundle import BundleStore
from donjon.config import Settings
from donjon.errors import Error
from donjon.gateway.deploy_queue import DeployQueue
from donjon.gateway.registry import Deployed, FunctionRegistry, make_deployed
from donjon.identity import KeyIndex
from donjon.ratelimit import MemoryRateLimiter, RateLimiter
from donjon.sandbox import (
    ResourceControl,
    SandboxHost,
    SandboxPool,
    check_sandbox,
    compile_filters,
    detect_resource_control,
)
from donjon.scan import ScanPolicy
from donjon.scan.isolated import IsolatedScanner
from donjon.store import FunctionRecord, FunctionStore, KeyStore, connect, create_schema
from donjon.vault import AUDIT_MAC_PURPOSE, KEY_HASH_PURPOSE, MasterKey, VaultError

__all__ = ["Node", "SkippedRecord", "open_node"]

log = logging.getLogger("donjon")


@dataclass(frozen=True)
class SkippedRecord:
    """A stored version the node could not load: skipped, logged and audited at start."""

    name: str
    version: int
    reason: str
    error: str


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
    bundles: BundleStore
    registry: FunctionRegistry
    resources: ResourceControl
    scan_policy: ScanPolicy
    limiter: RateLimiter = field(default_factory=MemoryRateLimiter)
    pool: SandboxPool | None = None
    #: The deploy-time scan, in a helper process that loads the advisories once.
    scanner: IsolatedScanner | None = None
    #: Deploy work (unpack, validate, scan) runs on its own threads, bounded.
    deploys: DeployQueue = field(default_factory=DeployQueue)
    skipped: list[SkippedRecord] = field(default_factory=list)

    async def start(self) -> None:
        """Check the sandbox (refusing to serve without it), then start writers and the pool."""
        host = await asyncio.to_thread(SandboxHost.detect, self.settings.data_dir)
        await asyncio.to_thread(self.bundles.sweep)  # staging a stopped node left behind
        await asyncio.to_thread(self.resources.sweep)
        # Loads the advisories once (a bad database stops the node here, clearly);
        # every deploy's scan then runs in a limited process forked from the helper.
        scanner = IsolatedScanner(self.settings.advisories_path)
        await asyncio.to_thread(scanner.start)
        self.scanner = scanner
        await asyncio.to_thread(check_sandbox, host)
        self.audit.start()
        self.denials.start()
        self.pool = SandboxPool(self.resources, compile_filters(), host)
        self.pool.start()
        self.audit.record_now(AuditEvent("system", "node.start", "node", "ok",
                                         {"resource_control": self.resources.mode.value}))
        for bad in self.skipped:
            self.audit.record_now(AuditEvent("system", "function.load",
                                             f"{bad.name}@{bad.version}", "skipped",
                                             {"reason": bad.reason, "error": bad.error}))

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.scanner is not None:
            await asyncio.to_thread(self.scanner.close)
        self.deploys.close()
        try:
            await self.denials.stop()  # the counted denials are written before the writer stops
        finally:
            self.audit.stop()
        self.engine.dispose()


def open_node(settings: Settings) -> Node:
    """Open an initialised data dir; raise a clear error if it is not."""
    if not settings.db_path.exists():
        raise VaultError(f"{settings.data_dir} is not initialised", hint="run `donjon init`")
    master = MasterKey.load(settings.master_key_path)
    engine = connect(settings.database_url)
    create_schema(engine)
    functions = FunctionStore(engine)
    keys = KeyStore(engine)
    bundles = BundleStore(settings.bundles_dir)
    registry = FunctionRegistry()
    skipped: list[SkippedRecord] = []
    for record in functions.current():
        deployed = _load(record, bundles, skipped)
        if deployed is not None:
            registry.put(deployed)
    audit = AuditLog(engine, master.derive(AUDIT_MAC_PURPOSE))
    return Node(
        settings=settings,
        engine=engine,
        master=master,
        functions=functions,
        keys=keys,
        key_index=KeyIndex(master.derive(KEY_HASH_PURPOSE), keys.all()),
        audit=audit,
        denials=DenialLog(audit, settings.audit_denial_window_s,
                          settings.audit_denial_max_sources),
        bundles=bundles,
        registry=registry,
        resources=detect_resource_control(),
        scan_policy=ScanPolicy.from_strings(settings.scan_fail_on, settings.scan_min_confidence),
        skipped=skipped,
    )


def _load(record: FunctionRecord, bundles: BundleStore,
          skipped: list[SkippedRecord]) -> Deployed | None:
    """`record` ready to serve, or None (noted in `skipped`): one bad record never
    stops a node from starting; the function is simply not served."""
    try:
        return make_deployed(record, bundles.path(record.digest))
    except Exception as e:  # whatever is wrong with it, skip it
        reason = (e.message if isinstance(e, Error) else str(e))[:500]
        log.warning("function %s@%s is not served: its stored record does not load (%s)",
                    record.name, record.version, reason.splitlines()[0] if reason else "")
        skipped.append(SkippedRecord(record.name, record.version, reason, type(e).__name__))
        return None
