"""`open_node`: a `Node` assembled from settings: the database, the stores, the audit
log, the vault, the sandbox pool, the limits, the monitor and the watch of advisories.

Kept apart from node.py, which is what a running node does.
"""

from __future__ import annotations

import json

from donjon.audit.changes import AuditedChanges
from donjon.audit.denials import DenialLog
from donjon.audit.opening import open_audit_log
from donjon.bundle import BundleStore
from donjon.config import Settings
from donjon.gateway.admin_issuers import record_refresh
from donjon.gateway.node import Node
from donjon.gateway.node_limits import open_limits
from donjon.identity import (
    Issuer,
    IssuerRegistry,
    JwtVerifier,
    KeyIndex,
    Policy,
    parse_role,
    refetch_jwks,
    tls_context,
)
from donjon.lifecycle import Deployments, load_registry
from donjon.lifecycle.advisory_watch import AdvisoryWatch
from donjon.monitor.alerts import AlertStore
from donjon.monitor.quarantine import Quarantines
from donjon.monitor.responses import ResponsePolicy
from donjon.monitor.throttles import Throttles
from donjon.ratelimit.quota_book import QuotaBook
from donjon.sandbox import (
    detect_resource_control,
)
from donjon.scan import ScanPolicy
from donjon.store import (
    FunctionStore,
    InvocationLogStore,
    IssuerStore,
    KeyStore,
    QuarantineStore,
    QuotaStore,
    RoleStore,
    SecretStore,
    ThrottleStore,
    VulnerabilityStore,
    connect,
    create_schema,
)
from donjon.store.audit_outbox import AuditOutbox
from donjon.store.supply import SupplyStore
from donjon.store.version_mac import POINTERS_SEALED, SEALED_MARKER, sealed, write_sealed
from donjon.supply import SupplyChain
from donjon.vault import (
    AUDIT_OUTBOX_PURPOSE,
    KEY_HASH_PURPOSE,
    VERSION_MAC_PURPOSE,
    MasterKey,
    VaultError,
)
from donjon.vault.keyring import Keyring, open_vault
from donjon.vault.logseal import LogSealer

__all__ = ["open_node"]


def open_node(settings: Settings) -> Node:
    """Open an initialised data dir; raise a clear error if it is not."""
    if not settings.initialised:
        raise VaultError(f"{settings.data_dir} is not initialised", hint="run `donjon init`")
    master = MasterKey.load(settings.master_key_path)
    engine = connect(settings.database_url)
    create_schema(engine)
    functions = FunctionStore(engine, master.derive(VERSION_MAC_PURPOSE))
    unsealed = [m for m in (SEALED_MARKER, POINTERS_SEALED) if not sealed(settings.data_dir, m)]
    if unsealed:  # rows written before MACs: once each kind (version_mac.py)
        functions.seal_unsealed(
            versions=SEALED_MARKER in unsealed, pointers=POINTERS_SEALED in unsealed
        )
        for marker in unsealed:
            write_sealed(settings.data_dir, marker)
    keys = KeyStore(engine)
    bundles = BundleStore(settings.bundles_dir)
    registry, skipped = load_registry(functions, bundles)
    sealer = LogSealer(master)
    audit = open_audit_log(settings, engine, master, sealer)  # log v2; migrates a v1 log
    roles = RoleStore(engine)
    # Checked again as they load: a stored document this version cannot read stops the
    # node with the role's name and the problem, never with a bare traceback.
    policy = Policy(parse_role(json.loads(document)) for _, document, _ in roles.all())
    scan_policy = ScanPolicy.from_strings(settings.scan_fail_on, settings.scan_min_confidence)
    outbox_key = master.derive(AUDIT_OUTBOX_PURPOSE)  # its rows' MACs (store/audit_outbox.py)
    keyring = Keyring(master, settings.vault_key_path, settings.kms_command, settings.kms_timeout_s)
    vault = open_vault(SecretStore(engine), keyring)
    issuers = IssuerStore(engine)
    quota_store = QuotaStore(engine)
    limits = open_limits(settings, audit, quota_store)
    # Each version's SBOM and provenance, signed with the audit log's own key; the
    # advisory watch reads each version's components from the same SBOMs.
    supply = SupplyChain(
        SupplyStore(engine),
        bundles,
        audit.signing_key,
        scan_policy,
        advisories=settings.advisories_path,
    )

    refreshes = AuditedChanges(audit, AuditOutbox(engine, outbox_key))

    async def persist(issuer: Issuer) -> None:  # a refresh's keys, audited when new
        await record_refresh(issuers, refreshes, issuer)

    verifier = JwtVerifier(
        IssuerRegistry(issuers.all()),
        tls_context(str(settings.jwks_ca_file) if settings.jwks_ca_file else None),
        fetch=refetch_jwks,
        persist=persist,
        max_age_s=settings.jwks_max_age_s,
    )
    return Node(
        settings=settings,
        engine=engine,
        master=master,
        functions=functions,
        keys=keys,
        key_index=KeyIndex(master.derive(KEY_HASH_PURPOSE), keys.all()),
        audit=audit,
        denials=DenialLog(audit, settings.audit_denial_window_s, settings.audit_denial_max_sources),
        logs=InvocationLogStore(engine, sealer),
        bundles=bundles,
        deployments=Deployments(
            functions,
            bundles,
            registry,
            audit,
            scan_policy,
            policy=policy,
            vault=vault,
            egress_networks=settings.egress.allow_networks,
            max_body_bytes=settings.requests.max_body_bytes,
            max_owned=settings.limits.max_functions_per_owner,
            keep_bundles=settings.limits.keep_bundles,
            supply=supply,
            changes=AuditedChanges(audit, AuditOutbox(engine, outbox_key)),
        ),
        resources=detect_resource_control(),
        scan_policy=scan_policy,
        vault=vault,
        keyring=keyring,
        issuers=issuers,
        jwt=verifier,
        skipped=skipped,
        roles=roles,
        policy=policy,
        quarantines=Quarantines(
            QuarantineStore(engine),
            audit,
            changes=AuditedChanges(audit, AuditOutbox(engine, outbox_key)),
        ),
        throttles=Throttles(limits.limiter, store=ThrottleStore(engine)),
        # Checked here: a bad DONJON_MONITOR_RESPONSES stops the node before it serves.
        response_policy=ResponsePolicy.from_settings(settings.monitor),
        limiter=limits.limiter,
        slots=limits.slots,
        node_slots=limits.node_slots,
        shared_limits=limits.shared,
        quota_counter=limits.quota_counter,
        quotas=QuotaBook(quota_store, refresh_s=settings.quota_refresh_s),
        alerts=AlertStore(engine),
        advisory_watch=AdvisoryWatch(
            settings, functions, bundles, VulnerabilityStore(engine), audit, supply=supply
        ),
    )
