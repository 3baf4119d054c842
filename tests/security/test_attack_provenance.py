"""Attacks on signed provenance checked offline (`verify_provenance`, as `donjon
verify-provenance` runs it): each forged, altered or misattributed statement is refused."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from donjon.audit import SigningKey
from donjon.bundle.archive import pack, tree_digest
from donjon.supply import ProvenanceInvalid, verify_provenance
from donjon.supply.dsse import key_id, sign_envelope
from donjon.supply.provenance import DeployFacts, ScanVerdict, make_statement
from supply_support import function_tree

NODE = SigningKey.from_seed(b"\x01" * 32)
ATTACKER = SigningKey.from_seed(b"\x02" * 32)


def _statement(digest: str, principal: str = "key:deployer") -> bytes:
    return make_statement(
        DeployFacts(
            name="shop",
            version=1,
            bundle_digest=digest,
            source_digest="ab" * 32,
            principal=principal,
            request_id="r",
            at=1e9,
            node_origin=NODE.origin,
            node_host="node-a",
            hatches=(),
            scan=ScanVerdict(False, {"high": 0}, 0, "high", "medium", None, None, 0),
            sbom_digest="cd" * 32,
            components=(),
        )
    )


def _encode(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope).encode()


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    tree = function_tree(tmp_path / "shop")
    archive = tmp_path / "shop.tar.gz"
    archive.write_bytes(pack(tree))
    return archive


@pytest.fixture
def genuine(bundle: Path, tmp_path: Path) -> dict[str, Any]:
    return sign_envelope(_statement(tree_digest(tmp_path / "shop")), NODE)


def test_cannot_alter_the_signed_payload(genuine: dict[str, Any]) -> None:
    """Another principal written into the payload breaks the signature."""
    payload = base64.b64decode(genuine["payload"]).replace(b"key:deployer", b"key:innocent")
    forged = {**genuine, "payload": base64.b64encode(payload).decode()}
    with pytest.raises(ProvenanceInvalid, match="does not verify"):
        verify_provenance(_encode(forged), NODE.verifier)


def test_cannot_swap_the_payload_type(genuine: dict[str, Any]) -> None:
    """A changed payloadType is refused, and re-labelling it back cannot pass either."""
    relabelled = {**genuine, "payloadType": "application/json"}
    with pytest.raises(ProvenanceInvalid, match="payload type"):
        verify_provenance(_encode(relabelled), NODE.verifier)


def test_cannot_sign_with_another_key_under_the_nodes_keyid(bundle: Path, tmp_path: Path) -> None:
    """A statement signed by the attacker's key but labelled with the node's keyid fails."""
    forged = sign_envelope(_statement(tree_digest(tmp_path / "shop")), ATTACKER)
    forged["signatures"][0]["keyid"] = key_id(NODE.verifier)
    with pytest.raises(ProvenanceInvalid, match="does not verify"):
        verify_provenance(_encode(forged), NODE.verifier, bundle)


def test_cannot_pass_a_statement_signed_by_another_node(bundle: Path, tmp_path: Path) -> None:
    """Checked against the node's key, another key's genuine statement is refused by name."""
    other = sign_envelope(_statement(tree_digest(tmp_path / "shop")), ATTACKER)
    with pytest.raises(ProvenanceInvalid, match=r"no signature by key donjon\.audit/"):
        verify_provenance(_encode(other), NODE.verifier, bundle)


def test_cannot_attach_the_provenance_to_another_bundle(
    genuine: dict[str, Any], tmp_path: Path
) -> None:
    """A genuine statement checked against a different bundle names both digests."""
    other = function_tree(tmp_path / "other", name="other")
    (other / "main.py").write_text("import os\n\ndef handler(event, context):\n    return 1\n")
    with pytest.raises(ProvenanceInvalid, match="is not the statement's subject"):
        verify_provenance(_encode(genuine), NODE.verifier, other)


def test_cannot_strip_the_signatures(genuine: dict[str, Any]) -> None:
    """An envelope without signatures is refused."""
    with pytest.raises(ProvenanceInvalid, match="signed by nobody"):
        verify_provenance(_encode({**genuine, "signatures": []}), NODE.verifier)


def test_cannot_smuggle_a_malformed_envelope() -> None:
    """Garbage, wrong shapes and bad base64 are refused as ProvenanceInvalid, never a crash."""
    for document in (
        b"\xff\xfe",
        b"[]",
        b'{"payload": 1, "payloadType": "x", "signatures": []}',
        b'{"payload": "%%%", "payloadType": "application/vnd.in-toto+json", '
        b'"signatures": [{"keyid": "k", "sig": "%%%"}]}',
    ):
        with pytest.raises(ProvenanceInvalid):
            verify_provenance(document, NODE.verifier)
