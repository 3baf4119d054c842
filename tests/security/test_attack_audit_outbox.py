"""The audit outbox on a live node (audit/changes.py): a change whose record could not be
appended is not left out of the log until the next start, and a node killed while it
appends the outbox at start loses nothing. Kills and checks: tests/crash_support.py."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from crash_support import _tree, audited, kill_node, query, records, send, verify_intact
from donjon.store.audit_outbox import row_mac
from donjon.vault import AUDIT_OUTBOX_PURPOSE, MasterKey
from harness import LiveNode, start_node

pytestmark = pytest.mark.slow  # nodes of their own, killed on purpose


def _write(node: LiveNode, sql: str, *args: object) -> None:
    with sqlite3.connect(node.data_dir / "donjon.db") as conn:
        conn.execute(sql, args)


def _left(node: LiveNode, rows: list[tuple[str, str, float]]) -> None:
    """Rows (id, event, created_at) as a node of this host, SIGKILLed long ago, left them:
    no owner, and the MAC that node made with the data dir's master key."""
    key = MasterKey.load(node.data_dir / "master.key").derive(AUDIT_OUTBOX_PURPOSE)
    with sqlite3.connect(node.data_dir / "donjon.db") as conn:
        conn.executemany(
            "INSERT INTO audit_outbox (id, event, created_at, mac) VALUES (?, ?, ?, ?)",
            [(i, event, at, row_mac(key, i, None, event)) for i, event, at in rows],
        )


def test_record_refused_past_the_retries_is_appended_while_the_node_serves(
    tmp_path: Path,
) -> None:
    """A key revocation whose record the log refuses for longer than the node retries
    (APPEND_RETRY_S) fails; once the log takes records again, the running node appends
    it, marked recovered, without a restart."""
    node = start_node(tmp_path / "data", {"DONJON_AUDIT_OUTBOX_DRAIN_S": "0.5"})
    try:
        key = node.create_key("victim", "invoker")
        _write(  # the audit writer's transactions holding a revocation fail, as a full disk
            node,
            "CREATE TRIGGER refuse BEFORE INSERT ON audit_log WHEN instr(NEW.record,"
            " CAST('\"key.revoke\"' AS BLOB)) > 0 BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        answer = send(node, "DELETE", f"/v1/keys/{key['id']}")
        assert answer is None or answer.status_code >= 500, answer.text
        assert query(node, "SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = ?", key["id"])[
            0
        ][0]
        assert query(node, "SELECT count(*) FROM audit_outbox")[0][0] == 1
        _write(node, "DROP TRIGGER refuse")
        deadline = time.monotonic() + 30
        while not audited(node, "key.revoke", f"key:{key['id']}"):
            assert time.monotonic() < deadline, "the record waits for the next start"
            time.sleep(0.2)
        (record,) = audited(node, "key.revoke", f"key:{key['id']}")
        assert record["detail"]["recovered"] is True
        while query(node, "SELECT count(*) FROM audit_outbox")[0][0]:  # deleted once appended
            assert time.monotonic() < deadline, "the appended record's row is kept"
            time.sleep(0.2)
        verify_intact(node)
    finally:
        node.stop()


#: Rows an earlier node left in the outbox for the attack below to be killed amid.
LEFT = 400


def test_node_killed_while_appending_the_outbox_at_start_loses_nothing(tmp_path: Path) -> None:
    """A node SIGKILLed while its start appends the records a crash left in the outbox
    (some appended, some not, one perhaps claimed): the next start appends every one
    before it serves; a record may be repeated."""
    node = start_node(tmp_path / "data")
    node.stop()
    event = {"actor": "key:a", "action": "role.apply", "outcome": "ok", "detail": {}}
    _left(
        node,
        [
            (f"r{i:04d}", json.dumps({**event, "target": f"role:r{i:04d}"}), 1.0)
            for i in range(LEFT)
        ],
    )
    starting = threading.Thread(target=_start_quietly, args=(node,), daemon=True)
    starting.start()
    deadline = time.monotonic() + 120
    while True:  # the moment the start has appended some and not all
        assert time.monotonic() < deadline, "the start never appended the outbox"
        try:
            left = query(node, "SELECT count(*) FROM audit_outbox")[0][0]
        except sqlite3.OperationalError:
            continue
        if 0 < left < LEFT - 20:
            kill_node(node, _tree(node.proc.pid))
            break
    starting.join(120)
    assert 0 < left < LEFT
    node.serve_again()  # healthy: it serves
    assert query(node, "SELECT count(*) FROM audit_outbox")[0][0] == 0
    targets = {r["target"] for r in records(node, "role.apply")}
    assert targets == {f"role:r{i:04d}" for i in range(LEFT)}
    verify_intact(node)
    node.stop()


def test_a_damaged_outbox_row_neither_stops_the_node_nor_holds_back_the_others(
    tmp_path: Path,
) -> None:
    """A row of the outbox edited into no record, before a record a crash left there: the
    node starts, appends that record, and says in the log that the damaged row held none
    (one such row made every start fail, and every drain, so the others never came)."""
    node = start_node(tmp_path / "data")
    node.stop()
    event = {"actor": "key:a", "action": "role.apply", "target": "role:left", "outcome": "ok"}
    _left(node, [("damaged", '{"actor": "key:a", "act', 1.0), ("left", json.dumps(event), 2.0)])
    node.serve_again()
    try:
        assert audited(node, "role.apply", "role:left")
        assert audited(node, "audit.outbox.unreadable", "outbox:damaged")
        assert query(node, "SELECT count(*) FROM audit_outbox")[0][0] == 0
        verify_intact(node)
    finally:
        node.stop()


def test_a_row_slid_into_the_outbox_is_not_signed_as_a_change(tmp_path: Path) -> None:
    """Whoever can write the database (not the master key) inserts a well-formed record into
    the outbox: the node's drain does not append it as a change it made, but as a row it
    did not write, flagged, with what it claimed; the change records it wrote still go in."""
    node = start_node(tmp_path / "data", {"DONJON_AUDIT_OUTBOX_DRAIN_S": "0.5"})
    try:
        forged = {"actor": "key:0badc0de", "action": "key.revoke", "target": "key:framed"}
        _write(
            node,
            "INSERT INTO audit_outbox (id, event, created_at, owner) VALUES (?, ?, ?, ?)",
            "forged",
            json.dumps({**forged, "outcome": "ok", "detail": {}}),
            time.time(),
            "offline",
        )
        deadline = time.monotonic() + 30
        while query(node, "SELECT count(*) FROM audit_outbox")[0][0]:
            assert time.monotonic() < deadline, "the drain never took the row"
            time.sleep(0.2)
        assert audited(node, "key.revoke", "key:framed") == []
        (flagged,) = audited(node, "audit.outbox.unauthenticated", "outbox:forged")
        assert flagged["detail"]["claimed"]["actor"] == "key:0badc0de"
        key = node.create_key("after", "invoker")  # a change's own record still goes in
        assert audited(node, "key.create", f"key:{key['id']}")
        verify_intact(node)
    finally:
        node.stop()


def _start_quietly(node: LiveNode) -> None:
    """`serve_again`, which the attack kills before it is healthy."""
    with contextlib.suppress(AssertionError, OSError):
        node.serve_again()


@pytest.fixture(scope="session", autouse=True)
def hostile_warm_copies() -> None:
    """Overrides tests/security/conftest.py's: this module starts nodes of its own, so the
    session's shared node (and its hostile functions) is not started for it."""
