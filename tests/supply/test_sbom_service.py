"""`SupplyChain` over a real SQLite file and bundle store: what a deploy stores with its
version, what survives a reopened database, and the SBOM made late for older versions."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import pytest

from donjon.audit import SigningKey
from donjon.bundle import BundleStore
from donjon.bundle.archive import pack
from donjon.manifest import load_manifest
from donjon.scan import ScanPolicy, ScanReport
from donjon.scan.model import Confidence, Cwe, Finding, FindingKind, Location, SasCategory, Severity
from donjon.store import FunctionStore, connect, create_schema
from donjon.store.supply import SupplyStore
from donjon.supply import (
    ComponentRef,
    DeployInput,
    SupplyChain,
    SupplyNotFound,
    verify_provenance,
)
from supply_support import function_tree, vendor

KEY = SigningKey.from_seed(b"\x07" * 32)


def _finding(severity: Severity) -> Finding:
    return Finding(
        rule_id="DJ-TEST-1",
        title="a test finding",
        kind=FindingKind.CODE,
        severity=severity,
        confidence=Confidence.HIGH,
        cwe=Cwe.UNNECESSARY_PRIVILEGES,
        category=SasCategory.SAS_1,
        location=Location("main.py", 1),
        message="m",
        fix="f",
    )


class World:
    """A database file, a bundle store and the service over them."""

    def __init__(self, tmp: Path) -> None:
        self.db = f"sqlite:///{tmp / 'donjon.db'}"
        self.bundles = BundleStore(tmp / "bundles")
        self.src = function_tree(tmp / "shop")
        vendor(self.src, "requests", "2.31.0", {"requests/__init__.py": b"V = 1\n"})
        self.archive = pack(self.src)
        self.digest, _ = self.bundles.add(self.archive, lambda _tree: None)
        self.open()

    def open(self) -> None:
        """(Re)open the database, as a node does at start."""
        engine = connect(self.db)
        create_schema(engine)
        self.functions = FunctionStore(engine)
        self.supply = SupplyChain(
            SupplyStore(engine), self.bundles, KEY, ScanPolicy(), host="node-a", clock=lambda: 1e9
        )

    def deploy(self, report: ScanReport | None) -> int:
        """What Deployments does: attest, then store the row with the version."""
        version = self.functions.next_version("shop")
        record = self.supply.attest(
            DeployInput(
                load_manifest(self.src),
                version,
                self.digest,
                hashlib.sha256(self.archive).hexdigest(),
                report,
                "key:deployer",
                "req-9",
                report is None,
            )
        )
        self.functions.add_version(
            "shop",
            version,
            self.digest,
            "{}",
            "key:deployer",
            also=functools.partial(SupplyStore.insert, record=record),
        )
        return version


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_a_deployed_version_keeps_its_sbom_and_provenance_across_a_restart(
    world: World,
) -> None:
    """Stored with the version; after reopening the database both read back the same."""
    version = world.deploy(ScanReport(Path("shop"), (_finding(Severity.LOW),)))
    before = world.supply.record("shop", version)
    world.open()
    after = world.supply.record("shop", version)
    assert after == before
    assert after.sbom_digest == hashlib.sha256(after.sbom.encode()).hexdigest()
    assert world.supply.components("shop", version) == [
        ComponentRef("requests", "2.31.0", "pkg:pypi/requests@2.31.0")
    ]


def test_the_provenance_states_the_deploy_and_verifies(world: World) -> None:
    """Subject, source digest, principal, scan counts and the SBOM digest, signed."""
    report = ScanReport(Path("shop"), (_finding(Severity.HIGH), _finding(Severity.LOW)))
    version = world.deploy(report)
    record = world.supply.record("shop", version)
    checked = verify_provenance(world.supply.provenance("shop", version).encode(), KEY.verifier)
    assert checked.bundle_digest == world.digest
    assert checked.statement_digest == record.statement_digest
    predicate = checked.statement["predicate"]
    internal = predicate["buildDefinition"]["internalParameters"]
    assert internal["deployedBy"] == "key:deployer"
    assert internal["scan"]["counts"] == {"critical": 0, "high": 1, "medium": 0, "low": 1}
    assert internal["scan"]["blocking"] == 1
    assert internal["scan"]["skipped"] is False
    source = predicate["buildDefinition"]["externalParameters"]["source"]["digest"]["sha256"]
    assert source == hashlib.sha256(world.archive).hexdigest()
    assert predicate["runDetails"]["byproducts"][0]["digest"]["sha256"] == record.sbom_digest
    deps = predicate["buildDefinition"]["resolvedDependencies"]
    assert [d["uri"] for d in deps] == ["pkg:pypi/requests@2.31.0"]


def test_a_skipped_scan_is_stated_as_skipped_with_its_hatch(world: World) -> None:
    """--unsafe-skip-scan: the verdict says skipped and the statement names the hatch."""
    version = world.deploy(None)
    statement = verify_provenance(
        world.supply.provenance("shop", version).encode(), KEY.verifier
    ).statement
    build = statement["predicate"]["buildDefinition"]
    assert build["internalParameters"]["scan"]["skipped"] is True
    assert build["externalParameters"]["unsafe"] == ["unsafe_skip_scan"]


def test_an_older_version_gets_its_sbom_on_first_request_and_no_provenance(
    world: World,
) -> None:
    """A version stored without a supply row: SBOM made from its bundle and kept; no
    provenance, said plainly."""
    world.functions.add_version("shop", 1, world.digest, "{}", "key:old")
    made = world.supply.record("shop", 1)
    assert made.provenance is None
    assert json.loads(made.sbom)["metadata"]["component"]["version"] == "1"
    world.open()
    assert world.supply.record("shop", 1).sbom == made.sbom  # stored, not made again
    with pytest.raises(SupplyNotFound, match="deployed before this node kept them"):
        world.supply.provenance("shop", 1)


def test_a_version_never_deployed_is_not_found(world: World) -> None:
    """No such version: SupplyNotFound, and nothing is stored."""
    with pytest.raises(SupplyNotFound, match="has no version 5"):
        world.supply.record("shop", 5)
