"""`Deployments`: deploy, replace, retire and remove a function version, whoever asks.

The gateway's handlers, the scheduler and later the triggers, the console and
other nodes call this one service; none of them touches the store, the bundle
store, the registry or the sandbox pool to change what is deployed.

A deploy, in this order: the gate (gate.py, on the deploy threads) -> (one
deploy or removal of a function at a time from here) its version -> prestart
(the handler imports in a sandbox) -> one transaction that stores the version
and reads it back as a node would load it -> switch the registry -> retire the
old version once its calls drain. Nothing is stored or switched before the
transaction; any failure after prestart retires the started sandbox; any
refusal or failure is audited and changes nothing. Every database write runs
on a thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from donjon.audit import AuditEvent, AuditLog
from donjon.audit.changes import AuditedChanges
from donjon.audit.errors import RecordPending
from donjon.bundle import BundleStore
from donjon.bundle.target import RuntimeTarget
from donjon.egress.addresses import IPNetwork
from donjon.errors import Error
from donjon.identity import Action, Policy, Principal, Role
from donjon.lifecycle.bundle_claims import BundleClaims
from donjon.lifecycle.bundle_prune import KEEP_BUNDLES, BundlePrune
from donjon.lifecycle.deploy_notes import (
    audit_detail,
    check_secrets_kept,
    check_trigger_secrets,
    not_yet_granted,
    supply_detail,
    unsafe_warnings,
)
from donjon.lifecycle.deploy_queue import DeployQueue
from donjon.lifecycle.deploy_rights import may_deploy
from donjon.lifecycle.errors import (
    AllowBroadRefused,
    AllowPublicRefused,
    DeployForbidden,
    FunctionNotFound,
    SkipScanRefused,
)
from donjon.lifecycle.gate import Accepted, BundleScanner, accept_bundle, route_conflicts
from donjon.lifecycle.grants import check_grants
from donjon.lifecycle.name_locks import NameLocks
from donjon.lifecycle.registry import (
    Deployed,
    FunctionRegistry,
    Shown,
    instance_config,
    make_deployed,
)
from donjon.manifest import Manifest, ManifestError
from donjon.manifest.sizes import format_size
from donjon.sandbox import FunctionFailed, SandboxPool, SandboxUnavailable
from donjon.scan import ScanPolicy, ScanReport
from donjon.store import FunctionRecord, FunctionStore
from donjon.store.supply import SupplyRecord, SupplyStore
from donjon.supply import DeployInput, SupplyChain
from donjon.vault.service import Vault

__all__ = ["Deployment", "Deployments"]

log = logging.getLogger("donjon")

T = TypeVar("T")


@dataclass(frozen=True)
class Deployment:
    """A version that now serves its function."""

    record: FunctionRecord
    digest: str
    #: None when the scan was skipped (--unsafe-skip-scan).
    report: ScanReport | None
    #: Grants of the manifest this node cannot honour yet, said plainly.
    warnings: tuple[str, ...]
    #: The function already ran this very bundle: nothing was stored, started or switched.
    unchanged: bool = False


class Deployments:
    """The one writer of what a node serves: the store rows, bundles, registry and pool."""

    def __init__(
        self,
        functions: FunctionStore,
        bundles: BundleStore,
        registry: FunctionRegistry,
        audit: AuditLog,
        scan_policy: ScanPolicy,
        queue: DeployQueue | None = None,
        *,
        policy: Policy | None = None,
        vault: Vault | None = None,
        egress_networks: Sequence[IPNetwork] = (),
        max_body_bytes: int = 6 * 1024 * 1024,
        max_owned: int = 1000,
        supply: SupplyChain | None = None,
        changes: AuditedChanges | None = None,
        keep_bundles: int = KEEP_BUNDLES,
    ) -> None:
        self.registry = registry
        #: A version stored or a function removed, and its record, committed together.
        self._changes = changes if changes is not None else AuditedChanges(audit, None)
        #: Each new version's SBOM and signed provenance (supply/), stored with it.
        self.supply = supply
        #: DONJON_MAX_BODY_BYTES: no manifest's `limits.body` may ask more.
        self.max_body_bytes = max_body_bytes
        #: DONJON_MAX_FUNCTIONS_PER_OWNER: functions one principal may own.
        self.max_owned = max_owned
        #: DONJON_EGRESS_ALLOW_NETWORKS: egress grants are judged as the proxy judges them.
        self.egress_networks = tuple(egress_networks)
        #: Who may deploy which function (owners included): decided once the name is known.
        self.policy = policy if policy is not None else Policy()
        #: Deploy work (unpack, validate, scan) runs on its own threads, bounded.
        self.queue = queue if queue is not None else DeployQueue()
        self._functions = functions
        self._bundles = bundles
        self._audit = audit
        self._policy = scan_policy
        #: Where granted secrets must exist for a deploy to be accepted.
        self._vault = vault
        self._pool: SandboxPool | None = None
        self._scanner: BundleScanner | None = None
        #: The sandbox's interpreter and platform: vendored wheels must fit it.
        self._runtime: RuntimeTarget | None = None
        # The store write and the registry switch that follows it, one deploy or
        # removal at a time: the routes checked are the routes switched.
        self._switch = asyncio.Lock()
        #: Deploys and removals of one function, one at a time (start to switch).
        self._name_locks = NameLocks()
        self._claims = BundleClaims(bundles, functions.stores_digest)
        #: DONJON_KEEP_BUNDLES: old versions' trees removed after a deploy or removal.
        self.prune = BundlePrune(functions, bundles, self._claims, audit, keep_bundles)
        self._finishing: set[asyncio.Future[Any]] = set()

    def start(
        self,
        pool: SandboxPool | None,
        scanner: BundleScanner | None,
        runtime: RuntimeTarget | None = None,
    ) -> None:
        """Use the node's started sandbox pool and deploy-time scanner from now on."""
        self._pool = self.prune.pins = pool
        self._scanner = scanner
        self._runtime = runtime

    def stop(self) -> None:
        """Refuse further deploy work; the pool and scanner are the node's to close."""
        self.queue.close()
        self._pool = None
        self._scanner = None

    # -- deploy and replace ---------------------------------------------------------

    async def deploy(
        self,
        archive: bytes,
        principal: Principal,
        request_id: str,
        *,
        skip_scan: bool = False,
        allow_broad: bool = False,
        allow_public: bool = False,
    ) -> Deployment:
        """Gate, start, store and switch to the bundle in `archive` (a tar.gz).

        Raises a `donjon.errors.Error` (audited, nothing changed) if the bundle is
        refused: `ManifestError`, `BundleError`, `DeployBlocked`, `DeployBusy`, ...
        """
        async with self._refusals_audited(principal, request_id):
            if skip_scan and principal.role != Role.ADMIN:
                raise SkipScanRefused
            if allow_broad and principal.role != Role.ADMIN:
                raise AllowBroadRefused
            if allow_public and principal.role != Role.ADMIN:
                raise AllowPublicRefused
            accepted = await self.queue.run(
                principal.label,
                accept_bundle,
                archive,
                bundles=self._bundles,
                registry=self.registry,
                scanner=self._scanner,
                policy=self._policy,
                skip_scan=skip_scan,
                allow_broad=allow_broad,
                allow_public=allow_public,
                runtime=self._runtime,
                egress_networks=self.egress_networks,
                shown=self._readable_by(principal),
            )
        # From here on a deploy runs to its end even if its caller goes away, one at a time
        # per function: its version, sandbox and row are its own, never another deploy's.
        return await self._to_the_end(
            self._judge_and_switch(accepted, principal, request_id, skip_scan)
        )

    async def _judge_and_switch(
        self, accepted: Accepted, principal: Principal, request_id: str, skip_scan: bool
    ) -> Deployment:
        """Its checks, then the switch; refused, its tree goes unless stored (bundle_claims.py)."""
        async with self._claims.claim(accepted.digest):
            async with self._refusals_audited(principal, request_id):
                self._check_limits(accepted.manifest)
                await check_grants(
                    accepted.manifest, principal, self.policy, self.registry, self._vault
                )
                await check_trigger_secrets(self._vault, accepted.manifest)
            return await self._start_and_switch(accepted, principal, request_id, skip_scan)

    def _check_limits(self, manifest: Manifest) -> None:
        """A manifest asks no more of this node than it allows (`limits.body`)."""
        body = manifest.limits.body_bytes
        if body > self.max_body_bytes:
            ceiling = format_size(self.max_body_bytes)
            raise ManifestError(
                f"limits.body {manifest.limits.body} is over this node's maximum request "
                f"body of {ceiling} ({self.max_body_bytes} bytes)",
                problems=[f"limits.body: at most {ceiling} on this node (DONJON_MAX_BODY_BYTES)"],
                hint="lower limits.body, or ask the node's operator to raise DONJON_MAX_BODY_BYTES",
            )

    async def _start_and_switch(
        self, accepted: Accepted, principal: Principal, request_id: str, skip_scan: bool
    ) -> Deployment:
        name = accepted.manifest.name
        async with self._name_locks.hold(name):
            async with self._refusals_audited(principal, request_id):
                await may_deploy(  # under the name's lock: the owner then is the owner checked
                    self.policy, self.registry, self._functions, principal, name, self.max_owned
                )
                current = self.registry.get(name)
                if current is not None and current.record.digest == accepted.digest:
                    return await self._unchanged(
                        current, accepted, principal, request_id, skip_scan
                    )
                version = await asyncio.to_thread(self._functions.next_version, name)
                if self._pool is not None:
                    # Start the new version before it takes traffic: its import runs
                    # (sandboxed) now, so a broken handler fails the deploy, not a caller.
                    config = instance_config(
                        accepted.manifest, version, self._bundles.path(accepted.digest)
                    )
                    await self._pool.prestart(config)
            return await self._switch_to(accepted, version, principal, request_id, skip_scan)

    async def _unchanged(
        self,
        current: Deployed,
        accepted: Accepted,
        principal: Principal,
        request_id: str,
        skip_scan: bool,
    ) -> Deployment:
        """A redeploy of the bundle the function already runs: no new version, audited
        (with the escape hatches it used, warned as for any deploy)."""
        record = current.record
        await self._audit.record(
            AuditEvent(
                principal.label,
                "function.deploy",
                f"{record.name}@{record.version}",
                "unchanged",
                audit_detail(request_id, accepted, skip_scan),
            )
        )
        manifest = accepted.manifest
        warnings = unsafe_warnings(principal, record, manifest, skip_scan)
        return Deployment(
            record,
            accepted.digest,
            accepted.report,
            warnings + not_yet_granted(manifest),
            unchanged=True,
        )

    def _readable_by(self, principal: Principal) -> Shown:
        """Whether a refusal may name a deployed function to `principal`: one it may read
        (a route conflict named another tenant's function, and its paths)."""

        def shown(name: str) -> bool:
            owner = self.registry.owner_of(name)
            return self.policy.decide(principal, Action.READ, name, owner).allowed

        return shown

    @contextlib.asynccontextmanager
    async def _refusals_audited(self, principal: Principal, request_id: str) -> AsyncIterator[None]:
        """A refusal (or a defect) in the block is audited; errors that may name
        host internals reach the caller reworded (`_public`)."""
        try:
            yield
        except RecordPending:  # made: its "ok" record waits in the outbox, not a rejection
            raise
        except Error as e:
            await self._rejected(principal, request_id, e)
            public = _public(e, request_id)
            if public is e:
                raise
            raise public from e
        except Exception as e:  # a defect, never an unaudited one
            await self._rejected(principal, request_id, e)
            raise

    async def _switch_to(
        self,
        accepted: Accepted,
        version: int,
        principal: Principal,
        request_id: str,
        skip_scan: bool,
    ) -> Deployment:
        manifest, digest = accepted.manifest, accepted.digest
        try:
            supply = await self._attest(accepted, version, principal, request_id, skip_scan)
        except Exception as e:
            if self._pool is not None:
                await self._pool.retire_version(manifest.name, version)
            await self._rejected(principal, request_id, e)
            raise
        event = AuditEvent(
            principal.label,
            "function.deploy",
            f"{manifest.name}@{version}",
            "ok",
            {**audit_detail(request_id, accepted, skip_scan), **supply_detail(supply)},
        )
        # The version's row and its record are committed together (audit/changes.py).
        async with self._changes.change(event) as pending:
            try:
                record = await self._store_and_switch(accepted, version, principal, supply)
            except Exception as e:
                if self._pool is not None:
                    await self._pool.retire_version(manifest.name, version)
                # Refused before the commit, or the commit failed: audited as refused.
                if not await self._changes.committed(pending):
                    await self._rejected(principal, request_id, e)
                raise
            if self._pool is not None:
                await self._pool.retire(record.name, keep_version=record.version, drain=True)
        self.prune.soon()
        warnings = unsafe_warnings(principal, record, manifest, skip_scan)
        return Deployment(record, digest, accepted.report, warnings + not_yet_granted(manifest))

    async def _attest(
        self,
        accepted: Accepted,
        version: int,
        principal: Principal,
        request_id: str,
        skip_scan: bool,
    ) -> SupplyRecord | None:
        """The new version's SBOM and signed provenance (supply/), made on a deploy thread."""
        if self.supply is None:
            return None
        facts = DeployInput(
            accepted.manifest,
            version,
            accepted.digest,
            accepted.source_digest,
            accepted.report,
            principal.label,
            request_id,
            skip_scan,
        )
        return await asyncio.to_thread(self.supply.attest, facts)

    async def _store_and_switch(
        self,
        accepted: Accepted,
        version: int,
        principal: Principal,
        supply: SupplyRecord | None = None,
    ) -> FunctionRecord:
        bundle = self._bundles.path(accepted.digest)
        loaded: list[Deployed] = []

        def check(stored: FunctionRecord) -> None:
            # Inside the transaction: the row as a restarting node would load it.
            loaded.append(make_deployed(stored, bundle))

        async with self._switch:
            # Checked again now: another deploy may have taken a route meanwhile, and a
            # secret it grants may have been removed (a removal holds `switching`).
            route_conflicts(self.registry, accepted.manifest, self._readable_by(principal))
            await check_secrets_kept(self._vault, accepted.manifest)
            record = await asyncio.to_thread(
                self._functions.add_version,
                accepted.manifest.name,
                version,
                accepted.digest,
                accepted.stored,
                principal.label,
                check=check,
                also=None
                if supply is None
                else functools.partial(SupplyStore.insert, record=supply),
            )
            self.registry.put(loaded[-1])
        return record

    @property
    def switching(self) -> asyncio.Lock:
        """Held by every switch: what deployed functions use, checked under it, holds."""
        return self._switch

    # -- remove -----------------------------------------------------------------------

    async def remove(self, name: str, principal: Principal, request_id: str) -> None:
        """Undeploy `name` (its version history stays) and retire its sandboxes.

        `FunctionNotFound` if no function of that name is deployed.
        """
        await self._to_the_end(self._remove(name, principal, request_id))

    async def _remove(self, name: str, principal: Principal, request_id: str) -> None:
        event = AuditEvent(
            principal.label, "function.delete", name, "ok", {"request_id": request_id}
        )
        # Never halfway through a deploy of it; removal and record committed together (changes.py).
        async with self._name_locks.hold(name), self._changes.change(event):
            async with self._switch:
                if self.registry.get(name) is None:
                    raise FunctionNotFound(name)
                await asyncio.to_thread(self._functions.remove, name)
                self.registry.remove(name)
            if self._pool is not None:
                await self._pool.retire(name)
        self.prune.soon()

    # -- helpers ----------------------------------------------------------------------

    async def _to_the_end(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` to its end even if the caller is cancelled: a store write, the
        registry switch and the audit record that follow it are one step."""
        task = asyncio.ensure_future(work)
        self._finishing.add(task)
        task.add_done_callback(_settled(self._finishing))
        return await asyncio.shield(task)

    async def _rejected(self, principal: Principal, request_id: str, error: Exception) -> None:
        if isinstance(error, Error):
            reason = error.summary()[:500]  # the deployer has the message; the log, no values
        else:
            log.error("deploy %s failed", request_id, exc_info=error)
            reason = "internal error"
        await self._audit.record(
            AuditEvent(
                principal.label,
                "function.deploy",
                "-",
                "rejected",
                {
                    "request_id": request_id,
                    "reason": reason,
                    "error": type(error).__name__,
                    **(
                        {"statement": error.statement} if isinstance(error, DeployForbidden) else {}
                    ),
                },
            )
        )


def _settled(finishing: set[asyncio.Future[Any]]) -> Any:
    def done(task: asyncio.Future[Any]) -> None:
        finishing.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that went away does not leave it unread

    return done


def _public(error: Error, request_id: str) -> Error:
    """What the deployer is told of a refused deploy."""
    if isinstance(error, FunctionFailed):
        # Said once: the handler's import error, or why it cannot be called as
        # handler(event, context) (sandbox/runtime/handler_check.py); no trace.
        return ManifestError(error.message)
    if isinstance(error, SandboxUnavailable):
        log.error("deploy %s: %s", request_id, error.message)  # may name host paths
        return SandboxUnavailable(
            "the new version's sandbox could not start",
            hint=f"the server log has the details (request {request_id})",
        )
    return error
