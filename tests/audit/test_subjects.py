"""Which functions a record is about (audit/subjects.py), and a filtered page of the log
(audit/prover.py `kept_records_before`) over a real SQLite file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from donjon.audit.log import AuditEvent, AuditLog
from donjon.audit.prover import kept_records_before
from donjon.audit.subjects import functions_named
from donjon.secret import Secret
from donjon.store import connect, create_schema


def _record(actor: str, action: str, target: str, **detail: Any) -> dict[str, Any]:
    return {"actor": actor, "action": action, "target": target, "detail": detail}


@pytest.mark.parametrize(
    ("record", "names"),
    [
        (_record("key:a", "function.invoke", "billing@3"), {"billing"}),
        (_record("key:a", "invocation.dead", "billing"), {"billing"}),
        (_record("system:monitor", "alert.raised", "function:billing"), {"billing"}),
        (_record("function:billing", "function.invoke", "ledger@1"), {"billing", "ledger"}),
        (
            _record("function:billing", "egress.connect", "billing@2", function="billing"),
            {"billing"},
        ),
        (_record("key:a", "quota.set", "function:billing"), {"billing"}),
    ],
)
def test_records_about_functions_name_them(record: dict[str, Any], names: set[str]) -> None:
    """Target (NAME@V, function:NAME, a bare name of a function action), a function actor
    and detail.function each name a function."""
    assert functions_named(record) == names


@pytest.mark.parametrize(
    "record",
    [
        _record("key:a", "key.create", "key:0123"),
        _record("key:a", "role.apply", "role:billing"),
        _record("key:a", "secret.set", "billing"),  # a secret's name, not a function's
        _record("system", "node.start", "node"),
        _record("key:a", "authz.denied", "/v1/functions/billing"),  # a request path
        _record("key:a", "function.deploy", "-"),  # a rejected deploy
        _record("key:a", "function.invoke", "function:../etc"),
        _record("system:monitor", "alert.raised", "source:203.0.113.9"),
        _record("key:a", "function.invoke", "billing@1", function="Not A Name"),
    ],
)
def test_node_wide_records_name_no_function(record: dict[str, Any]) -> None:
    """Keys, roles, secrets, the node, request paths and bad names: no function (node-wide),
    even when another field names one."""
    assert functions_named(record) == frozenset()


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    """A log of 20 records: odd seqs about `mine`, even seqs about `theirs`."""
    engine = connect(f"sqlite:///{tmp_path / 's.db'}")
    create_schema(engine)
    log = AuditLog(engine, Secret(b"s" * 32))
    for n in range(1, 21):
        target = "mine@1" if n % 2 else "theirs@1"
        log.record_now(AuditEvent("key:a", "function.invoke", target, "ok", {}))
    return engine


def _mine(record: Any) -> bool:
    return functions_named(record) == {"mine"}


def test_a_filtered_page_holds_the_newest_kept_records_oldest_first(engine: Engine) -> None:
    """n kept records before `before`, oldest first; no cursor when the page is full."""
    records, go_on = kept_records_before(engine, None, 3, _mine)
    assert [r["seq"] for r in records] == [15, 17, 19]
    assert go_on is None
    records, go_on = kept_records_before(engine, 15, 100, _mine)
    assert [r["seq"] for r in records] == [1, 3, 5, 7, 9, 11, 13]
    assert go_on is None  # the first record was reached


def test_a_filtered_page_that_runs_out_of_scan_says_where_to_go_on(engine: Engine) -> None:
    """A page that read `scan` records without filling names the seq to page on from."""
    records, go_on = kept_records_before(engine, None, 10, _mine, scan=6)
    assert [r["seq"] for r in records] == [15, 17, 19]
    assert go_on == 15
    rest, go_on = kept_records_before(engine, go_on, 10, _mine, scan=100)
    assert [r["seq"] for r in rest] == [1, 3, 5, 7, 9, 11, 13]
    assert go_on is None
