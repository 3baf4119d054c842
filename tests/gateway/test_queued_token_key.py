"""A call a token queued runs only while its issuer's key under the token's kid is the key
that signed it (gateway/deliveries.py `_principal`): a kid the issuer gave to another key
refuses it; a call queued before the key's fingerprint was kept is held to its kid."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from donjon.gateway.deliveries import _principal
from donjon.gateway.errors import Unauthorized
from donjon.identity import Issuer, IssuerRegistry, parse_jwks
from donjon.store import IssuerRecord
from donjon.triggers.queue import QueuedInvocation, RetryPolicy, Status
from jwt_support import SigningKey, jwks

SIGNER = SigningKey.generate("k1")
SUCCESSOR = SigningKey.generate("k1", "ES256")  # the same kid, another key


def _node(*keys: SigningKey) -> SimpleNamespace:
    record = IssuerRecord(
        name="corp", issuer="https://idp.example", jwks_url=None, jwks="", audience="a",
        roles_claim="roles", allowed_roles=("invoker",), created_at=0.0, refreshed_at=0.0,
    )  # fmt: skip
    registry = IssuerRegistry()
    registry.add(Issuer(record, parse_jwks(json.dumps(jwks(*keys)))))
    return SimpleNamespace(jwt=SimpleNamespace(issuers=registry))


def _queued(signed_key: str | None) -> QueuedInvocation:
    return QueuedInvocation(
        id="i", function="f", trigger="invoke", source="/v1", type="t",
        principal="jwt:corp:alice", delivery_id=None, subject=None, event=b"{}",
        status=Status.QUEUED, attempts=0, retry=RetryPolicy(1, 1.0, 60), enqueued_at=0.0,
        next_at=0.0, updated_at=0.0, roles=("invoker",), signed_by="k1", signed_key=signed_key,
    )  # fmt: skip


def _fingerprint(key: SigningKey) -> str:
    trusted = parse_jwks(json.dumps(jwks(key))).get(key.kid)
    assert trusted is not None
    return trusted.fingerprint


def test_a_call_runs_while_its_key_is_published() -> None:
    """The issuer still publishes the very key: the call runs as its caller."""
    principal = _principal(_node(SIGNER), _queued(_fingerprint(SIGNER)))  # type: ignore[arg-type]  # the node's issuers alone
    assert principal is not None and principal.id == "corp:alice"


def test_a_call_is_refused_once_its_kid_names_another_key() -> None:
    """The kid now names another key: refused, as the leaked key's token would be."""
    with pytest.raises(Unauthorized, match="no longer publishes the key"):
        _principal(_node(SUCCESSOR), _queued(_fingerprint(SIGNER)))  # type: ignore[arg-type]  # the node's issuers alone


def test_a_call_queued_before_fingerprints_is_held_to_its_kid() -> None:
    """No fingerprint kept (an older row): its kid published runs, withdrawn refuses."""
    old = _queued(None)
    assert _principal(_node(SUCCESSOR), old) is not None  # type: ignore[arg-type]  # the node's issuers alone
    with pytest.raises(Unauthorized, match="no longer publishes the key"):
        _principal(_node(SigningKey.generate("k2")), old)  # type: ignore[arg-type]  # the node's issuers alone
