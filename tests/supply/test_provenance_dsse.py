"""DSSE envelopes signed with the audit key: the spec's signing input, and the checks of
`open_envelope` and `verify_provenance` on genuine statements."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from donjon.audit import SigningKey
from donjon.bundle.archive import pack, tree_digest
from donjon.supply import ProvenanceInvalid, verify_provenance
from donjon.supply.dsse import PAYLOAD_TYPE, key_id, open_envelope, sign_envelope
from donjon.supply.provenance import DeployFacts, ScanVerdict, make_statement
from supply_support import function_tree

KEY = SigningKey.from_seed(bytes(range(32)))


def _verdict() -> ScanVerdict:
    return ScanVerdict(False, {"critical": 0, "high": 1}, 0, "high", "medium", None, None, 0)


def _statement(digest: str) -> bytes:
    facts = DeployFacts(
        name="shop",
        version=2,
        bundle_digest=digest,
        source_digest="ab" * 32,
        principal="key:0123456789abcdef",
        request_id="req-1",
        at=1_700_000_000.0,
        node_origin=KEY.origin,
        node_host="node-a",
        hatches=(),
        scan=_verdict(),
        sbom_digest="cd" * 32,
        components=(),
    )
    return make_statement(facts)


def test_the_signature_is_ed25519_over_the_dsse_pae() -> None:
    """The sig is Ed25519 over 'DSSEv1 len(type) type len(body) body', per the DSSE spec."""
    payload = b'{"_type":"x"}'
    envelope = sign_envelope(payload, KEY)
    assert envelope["payloadType"] == PAYLOAD_TYPE
    assert base64.b64decode(envelope["payload"]) == payload
    [signature] = envelope["signatures"]
    assert signature["keyid"] == key_id(KEY.verifier)
    pae = b"DSSEv1 %d %s %d %s" % (len(PAYLOAD_TYPE), PAYLOAD_TYPE.encode(), len(payload), payload)
    Ed25519PublicKey.from_public_bytes(KEY.verifier.public).verify(
        base64.b64decode(signature["sig"]), pae
    )


def test_a_genuine_envelope_opens_to_its_payload() -> None:
    """open_envelope returns the signed payload for the signer's verifier key."""
    payload = _statement("00" * 32)
    document = json.dumps(sign_envelope(payload, KEY)).encode()
    assert open_envelope(document, KEY.verifier) == payload


def test_the_statement_is_in_toto_v1_with_a_slsa_predicate() -> None:
    """The subject is the bundle digest; the predicate carries who, the scan and the SBOM."""
    statement = json.loads(_statement("11" * 32))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert statement["subject"] == [{"name": "function:shop@2", "digest": {"sha256": "11" * 32}}]
    build = statement["predicate"]["buildDefinition"]
    assert build["externalParameters"]["source"]["digest"] == {"sha256": "ab" * 32}
    assert build["internalParameters"]["deployedBy"] == "key:0123456789abcdef"
    assert build["internalParameters"]["scan"]["counts"] == {"critical": 0, "high": 1}
    run = statement["predicate"]["runDetails"]
    assert run["builder"]["id"] == f"urn:donjon:node:{KEY.origin}"
    assert run["byproducts"][0]["digest"] == {"sha256": "cd" * 32}


def test_verify_checks_the_bundle_archive_and_tree(tmp_path: Path) -> None:
    """With the deployed bundle (archive or tree), verification passes and says so."""
    tree = function_tree(tmp_path / "shop")
    archive = tmp_path / "shop.tar.gz"
    archive.write_bytes(pack(tree))
    document = json.dumps(sign_envelope(_statement(tree_digest(tree)), KEY)).encode()
    for bundle in (archive, tree):
        checked = verify_provenance(document, KEY.verifier, bundle)
        assert checked.bundle_checked
        assert checked.bundle_digest == tree_digest(tree)
        assert checked.subject == "function:shop@2"


def test_a_payload_that_is_not_a_statement_is_refused() -> None:
    """A validly signed payload that is not an in-toto Statement fails verification."""
    document = json.dumps(sign_envelope(b'{"hello": 1}', KEY)).encode()
    with pytest.raises(ProvenanceInvalid, match="not an in-toto Statement"):
        verify_provenance(document, KEY.verifier)
