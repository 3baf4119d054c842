"""A real node: a function deployed with a vendored dependency gets an SBOM and a signed
provenance statement, fetched over the admin API and the CLI and verified offline with
the exported audit key."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.validation import make_schemabased_validator

from donjon.bundle import build_bundle
from donjon.bundle.archive import pack
from donjon.bundle.target import RuntimeTarget
from harness import LiveNode, run_cli, start_node

NAME = "sbom-probe"


def _wheel(wheels: Path) -> None:
    with zipfile.ZipFile(wheels / "tinydep-1.2.0-py3-none-any.whl", "w") as whl:
        whl.writestr("tinydep/__init__.py", "ANSWER = 42\n")
        whl.writestr(
            "tinydep-1.2.0.dist-info/METADATA",
            "Metadata-Version: 2.4\nName: tinydep\nVersion: 1.2.0\n"
            "License-Expression: Apache-2.0\n",
        )
        whl.writestr(
            "tinydep-1.2.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        whl.writestr("tinydep-1.2.0.dist-info/RECORD", "")


@pytest.fixture(scope="module")
def deployed(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The probe deployed once (built for the node's sandbox): its reply and archive."""
    tmp = tmp_path_factory.mktemp("sbom")
    wheels = tmp / "wheels"
    wheels.mkdir()
    _wheel(wheels)
    src = tmp / "fn"
    src.mkdir()
    (src / "donjon.yaml").write_text(f"name: {NAME}\nhandler: main.handler\nmemory_mb: 64\n")
    (src / "main.py").write_text(
        "import tinydep\n\n\ndef handler(event, context):\n    return tinydep.ANSWER\n"
    )
    (src / "requirements.txt").write_text("tinydep==1.2.0\n")
    with node.client() as c:
        target = RuntimeTarget.from_json(c.get("/v1/runtime").json()["python"])
        _, archive = build_bundle(src, find_links=wheels, target=target)
        r = c.post("/v1/functions", content=archive, headers={"content-type": "application/gzip"})
    assert r.status_code == 201, r.text
    (tmp / "bundle.tar.gz").write_bytes(archive)
    return {"reply": r.json(), "archive": tmp / "bundle.tar.gz", "tmp": tmp}


def test_the_sbom_lists_the_vendored_dependency_and_validates(
    node: LiveNode, deployed: dict[str, Any]
) -> None:
    """GET .../sbom: CycloneDX JSON and XML that pass the schema, naming tinydep 1.2.0."""
    version = deployed["reply"]["version"]
    with node.client() as c:
        r = c.get(f"/v1/functions/{NAME}/sbom")
        xml = c.get(f"/v1/functions/{NAME}/sbom", params={"format": "xml", "version": version})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.cyclonedx+json")
    assert r.headers["x-sbom-digest"] == "sha256:" + hashlib.sha256(r.content).hexdigest()
    json_validator = make_schemabased_validator(OutputFormat.JSON, SchemaVersion.V1_6)
    assert json_validator.validate_str(r.text) is None
    document = r.json()
    assert document["metadata"]["component"]["version"] == str(version)
    assert document["metadata"]["component"]["hashes"][0]["content"] == deployed["reply"]["digest"]
    [dep] = document["components"]
    assert (dep["name"], dep["version"], dep["purl"]) == (
        "tinydep",
        "1.2.0",
        "pkg:pypi/tinydep@1.2.0",
    )
    assert dep["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    assert xml.status_code == 200, xml.text
    xml_validator = make_schemabased_validator(OutputFormat.XML, SchemaVersion.V1_6)
    assert xml_validator.validate_str(xml.text) is None


def test_the_provenance_verifies_offline_with_the_exported_key(
    node: LiveNode, deployed: dict[str, Any]
) -> None:
    """`donjon provenance` saved, `donjon audit pubkey` exported: verify-provenance passes
    with the deployed bundle, names the SBOM's digest, and matches the audit record."""
    tmp: Path = deployed["tmp"]
    version = deployed["reply"]["version"]
    envelope = tmp / "provenance.json"
    run_cli(node.env(), "provenance", f"{NAME}@{version}", "--out", str(envelope))
    key = tmp / "node.pub"
    key.write_text(run_cli(node.env(), "audit", "pubkey").stdout)
    done = run_cli(
        node.env(),
        "verify-provenance",
        str(envelope),
        "--key",
        str(key),
        "--bundle",
        str(deployed["archive"]),
        "--output",
        "json",
    )
    result = json.loads(done.stdout)
    assert result["ok"] and result["bundle_checked"]
    assert result["bundle_digest"] == deployed["reply"]["digest"]
    assert result["deployed_by"].startswith("key:")
    sbom = tmp / "sbom.json"
    run_cli(node.env(), "sbom", f"{NAME}@{version}", "--out", str(sbom))
    assert (
        result["byproducts"][0]["digest"]["sha256"] == hashlib.sha256(sbom.read_bytes()).hexdigest()
    )
    with node.client() as c:
        records = c.get("/v1/audit", params={"n": 200}).json()
    deploys = [
        r
        for r in records
        if r["action"] == "function.deploy" and r["target"] == f"{NAME}@{version}"
    ]
    assert deploys and deploys[-1]["detail"]["provenance_digest"] == result["statement_digest"]


def test_verify_provenance_exits_non_zero_on_a_tampered_statement(
    node: LiveNode, deployed: dict[str, Any]
) -> None:
    """The CLI refuses an altered payload with one clear line and exit status 1."""
    tmp: Path = deployed["tmp"]
    with node.client() as c:
        genuine = c.get(f"/v1/functions/{NAME}/provenance").json()
    payload = base64.b64decode(genuine["payload"]).replace(b'"unsafe":[]', b'"unsafe":[""]')
    forged = tmp / "forged.json"
    forged.write_text(json.dumps({**genuine, "payload": base64.b64encode(payload).decode()}))
    key = tmp / "node-key.pub"
    key.write_text(run_cli(node.env(), "audit", "pubkey").stdout)
    done = run_cli(node.env(), "verify-provenance", str(forged), "--key", str(key), check=False)
    assert done.returncode == 1
    assert "does not verify" in done.stderr


def test_sbom_reads_are_policy_checked_and_inputs_checked(
    node: LiveNode, deployed: dict[str, Any]
) -> None:
    """An invoker may not read it (403), a bad version is a 400, an unknown version a 404."""
    invoker = node.create_key("sbom-invoker", "invoker")["key"]
    with node.client(invoker) as c:
        assert c.get(f"/v1/functions/{NAME}/sbom").status_code == 403
        assert c.get(f"/v1/functions/{NAME}/provenance").status_code == 403
    with node.client() as c:
        assert c.get(f"/v1/functions/{NAME}/sbom", params={"version": "x"}).status_code == 400
        assert c.get(f"/v1/functions/{NAME}/sbom", params={"format": "spdx"}).status_code == 400
        missing = c.get(f"/v1/functions/{NAME}/provenance", params={"version": "999"})
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")


def test_a_bundle_whose_vendored_metadata_is_broken_is_refused_and_nothing_changes(
    node: LiveNode, tmp_path: Path
) -> None:
    """A .deps distribution without a Name: 422 naming it, and no version is stored."""
    src = tmp_path / "broken"
    src.mkdir()
    (src / "donjon.yaml").write_text("name: sbom-broken\nhandler: main.handler\nmemory_mb: 64\n")
    (src / "main.py").write_text("def handler(event, context):\n    return 1\n")
    info = src / ".deps" / "nameless-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nVersion: 1.0\n")
    with node.client() as c:
        r = c.post("/v1/functions", content=pack(src), headers={"content-type": "application/gzip"})
        assert r.status_code == 422, r.text
        assert "nameless-1.0.dist-info/METADATA has no Name" in r.json()["detail"]
        assert c.get("/v1/functions/sbom-broken").status_code == 404
        assert c.get("/v1/functions/sbom-broken/sbom", params={"version": "1"}).status_code == 404


def test_the_sbom_and_provenance_survive_a_restart(tmp_path: Path) -> None:
    """A node of its own: after `donjon serve` starts again, both read back byte for byte."""
    live = start_node(tmp_path / "data")
    try:
        src = tmp_path / "fn"
        src.mkdir()
        (src / "donjon.yaml").write_text("name: kept\nhandler: main.handler\nmemory_mb: 64\n")
        (src / "main.py").write_text("def handler(event, context):\n    return 1\n")
        version = live.deploy(src)["version"]
        with live.client() as c:
            before = [c.get(f"/v1/functions/kept/{what}").content for what in _RECORDS]
        live.stop()
        live.serve_again()
        with live.client() as c:
            after = [
                c.get(f"/v1/functions/kept/{what}", params={"version": version}).content
                for what in _RECORDS
            ]
    finally:
        live.stop()
    assert after == before
    assert json.loads(before[0])["bomFormat"] == "CycloneDX"
    assert json.loads(before[1])["payloadType"] == "application/vnd.in-toto+json"


_RECORDS = ("sbom", "provenance")
