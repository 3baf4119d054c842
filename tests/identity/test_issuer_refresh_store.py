"""A refresh's keys are stored on the issuer they were fetched for, and on no other.

A refresh fetches in the background (`jwt_verifier._refresh_stale`) or for a token's
unknown kid; an admin may meanwhile remove the issuer and add another under the same name
(a new URL, new keys). The refresh then ends with the old issuer's keys in hand: they
must not land on the new issuer's row, where the next start would trust them."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from donjon.audit import AuditLog
from donjon.audit.changes import AuditedChanges
from donjon.gateway.admin_issuers import record_refresh
from donjon.identity.issuers import Issuer
from donjon.identity.jwks import parse_jwks
from donjon.secret import Secret
from donjon.store import IssuerRecord, IssuerStore, connect, create_schema
from donjon.store.audit_outbox import AuditOutbox
from jwt_support import SigningKey, jwks


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = connect(f"sqlite:///{tmp_path / 'donjon.db'}")
    create_schema(e)
    yield e
    e.dispose()


def _record(url: str, document: str, created_at: float) -> IssuerRecord:
    return IssuerRecord(
        name="corp",
        issuer=url,
        jwks_url=url + "/jwks.json",
        jwks=document,
        audience="donjon",
        roles_claim="roles",
        allowed_roles=("invoker",),
        created_at=created_at,
        refreshed_at=created_at,
    )


def _document(kid: str) -> str:
    return json.dumps(jwks(SigningKey.generate(kid)))


def log_records(engine: Engine) -> list[dict[str, Any]]:
    assert engine.url.database is not None
    with sqlite3.connect(engine.url.database) as conn:
        rows = conn.execute("SELECT record FROM audit_log ORDER BY seq").fetchall()
    return [json.loads(bytes(raw)) for (raw,) in rows]


def _refresh(engine: Engine, store: IssuerStore, issuer: Issuer) -> None:
    """`record_refresh` as the node calls it, with an audit log that writes."""
    log = AuditLog(engine, Secret(bytes(range(32))))
    log.start()
    try:
        asyncio.run(record_refresh(store, AuditedChanges(log, AuditOutbox(engine)), issuer))
    finally:
        log.stop()


def test_a_refresh_ending_after_its_issuer_was_replaced_stores_nothing(engine: Engine) -> None:
    store = IssuerStore(engine)
    old = _record("https://old.example", _document("old-1"), 1_000.0)
    store.add(old)
    refreshing = Issuer(old, parse_jwks(old.jwks))
    # The admin removes it and adds it again (new keys: a name is one issuer's for good)
    # while the fetch runs.
    store.remove("corp")
    new = _record("https://old.example", _document("new-1"), 2_000.0)
    store.add(new)
    refreshing.with_keys(parse_jwks(_document("old-2")))  # what the old URL served

    _refresh(engine, store, refreshing)

    (stored,) = store.all()
    assert stored.created_at == 2_000.0
    assert stored.jwks == new.jwks, "the old issuer's refreshed keys landed on the new one"
    assert not [r for r in log_records(engine) if r["action"] == "issuer.keys"]


def test_a_refresh_of_the_same_issuer_is_stored(engine: Engine) -> None:
    store = IssuerStore(engine)
    record = _record("https://idp.example", _document("k1"), 1_000.0)
    store.add(record)
    issuer = Issuer(record, parse_jwks(record.jwks))
    fresh = _document("k2")
    issuer.with_keys(parse_jwks(fresh))

    _refresh(engine, store, issuer)

    (stored,) = store.all()
    assert stored.jwks == fresh
    (logged,) = [r for r in log_records(engine) if r["action"] == "issuer.keys"]
    assert logged["detail"]["key_ids"] == ["k2"]


def test_the_same_keys_in_another_order_are_no_change(engine: Engine) -> None:
    """An identity provider whose servers list its keys in another order (a refresh anyone
    may set off once a minute, by a token naming an unknown kid) changes nothing: the
    document is stored, and no `issuer.keys` record claims new keys (before: one each
    time, the key ids before and after alike)."""
    store = IssuerStore(engine)
    first, second = SigningKey.generate("k1"), SigningKey.generate("k2", "ES256")
    record = _record("https://idp.example", json.dumps(jwks(first, second)), 1_000.0)
    store.add(record)
    issuer = Issuer(record, parse_jwks(record.jwks))
    reordered = json.dumps(jwks(second, first))
    issuer.with_keys(parse_jwks(reordered))

    _refresh(engine, store, issuer)

    (stored,) = store.all()
    assert stored.jwks == reordered
    assert not [r for r in log_records(engine) if r["action"] == "issuer.keys"]
