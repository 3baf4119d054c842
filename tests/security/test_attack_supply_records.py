"""Attacks on the stored supply chain records by someone who can write the node's
database but does not hold its audit signing key: a changed SBOM, or a statement moved
from one version to another, is not served as the node's word, and the advisory watch
reads the bundle instead of a changed SBOM."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from advisory_support import osv, write_export
from crash_support import records
from harness import LiveNode, run_cli, start_node

PACKAGE = "donjon-tamper-probe"


def _archive(name: str, body: str, vendored: dict[str, str]) -> bytes:
    """A bundle (tar.gz) of `name` whose handler returns `body`, vendoring `vendored`."""
    members = {
        "donjon.yaml": f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\n",
        "main.py": f"def handler(event, context):\n    return {body!r}\n",
    }
    for package, version in vendored.items():
        members[f".deps/{package}-{version}.dist-info/METADATA"] = (
            f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n"
        )
        members[f".deps/{package.replace('-', '_')}/__init__.py"] = ""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _wait(what: str, probe: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _db(node: LiveNode, query: str, *args: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(node.data_dir / "donjon.db") as conn:
        return list(conn.execute(query, args))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNode, Path]]:
    """A node watching an export that names none of this file's packages yet."""
    tmp = tmp_path_factory.mktemp("supply-records")
    export = write_export(tmp / "osv", osv("GHSA-tamper-unrelated", "some-other-pkg"))
    data_dir = tmp / "data"
    data_dir.mkdir()
    node = start_node(data_dir, {"DONJON_ADVISORIES": str(export), "DONJON_ADVISORY_WATCH_S": "1"})
    try:
        yield node, export
    finally:
        node.stop()


def _deploy(node: LiveNode, name: str, body: str, vendored: dict[str, str]) -> None:
    with node.client() as c:
        r = c.post("/v1/functions", content=_archive(name, body, vendored))
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("strip", [False, True], ids=["kept", "stripped"])
def test_cannot_drop_a_component_from_a_stored_sbom(
    world: tuple[LiveNode, Path], strip: bool
) -> None:
    """The SBOM rewritten without its vulnerable component (and its digest column with
    it; its statement kept, or removed as if it had been made before statements were
    kept): the node does not serve it as signed, and an advisory published later still
    alerts, the watch reading the bundle itself."""
    node, export = world
    name, package = f"tampered-sbom-{int(strip)}", f"{PACKAGE}-{int(strip)}"
    _deploy(node, name, "a", {package: "1.0"})
    _wait(
        "the watch to check the version",
        lambda: _db(node, "SELECT 1 FROM advisory_checked WHERE function = ?", name),
    )
    ((stored,),) = _db(node, "SELECT sbom FROM function_supply WHERE name = ?", name)
    document = json.loads(stored)
    assert [c["name"] for c in document["components"]] == [package]
    document["components"] = document["dependencies"] = []
    forged = json.dumps(document, indent=2)
    with sqlite3.connect(node.data_dir / "donjon.db") as conn:
        conn.execute(
            "UPDATE function_supply SET sbom = ?, sbom_digest = ? WHERE name = ?",
            (forged, hashlib.sha256(forged.encode()).hexdigest(), name),
        )
        if strip:
            conn.execute(
                "UPDATE function_supply SET provenance = NULL, statement_digest = NULL "
                "WHERE name = ?",
                (name,),
            )
    if not strip:
        with node.client() as c:
            r = c.get(f"/v1/functions/{name}/sbom")
        assert r.status_code == 409, r.text
        assert "provenance" in r.json()["detail"]

    write_export(
        export,
        osv("GHSA-tamper-unrelated", "some-other-pkg"),
        osv(f"GHSA-tamper-probe-{int(strip)}", package),
    )

    def alerted() -> bool:
        out = run_cli(node.env(), "alerts", "--json", "--kind", "dependency.vulnerable")
        return any(a["subject"] == f"function:{name}" for a in json.loads(out.stdout))

    _wait("the watch's alert", alerted)


def test_cannot_pass_one_versions_provenance_off_as_anothers(
    world: tuple[LiveNode, Path],
) -> None:
    """Version 1's genuine statement copied onto version 2's row: the node does not serve
    it as version 2's provenance."""
    node, _ = world
    _deploy(node, "moved-statement", "one", {})
    _deploy(node, "moved-statement", "two", {})
    with sqlite3.connect(node.data_dir / "donjon.db") as conn:
        conn.execute(
            "UPDATE function_supply SET (provenance, statement_digest) = (SELECT provenance, "
            "statement_digest FROM function_supply WHERE name = 'moved-statement' AND "
            "version = 1) WHERE name = 'moved-statement' AND version = 2"
        )
    with node.client() as c:
        r = c.get("/v1/functions/moved-statement/provenance", params={"version": "2"})
        genuine = c.get("/v1/functions/moved-statement/provenance", params={"version": "1"})
    assert r.status_code == 409, r.text
    assert genuine.status_code == 200, genuine.text
    # A change only someone who writes the database but cannot sign could make: audited
    # (invariant 7), not only logged, with the request that found it.
    (found,) = [r for r in records(node, "supply.tampered") if r["target"] == "moved-statement@2"]
    assert found["outcome"] == "denied"
    assert found["detail"]["request_id"] == r.headers["x-request-id"]
    assert "provenance" in found["detail"]["reason"]
