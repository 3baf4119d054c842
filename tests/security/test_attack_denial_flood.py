"""Invariant 7 without denial of wallet: a flood of bad credentials cannot grow the log per request.

Each anonymous 401 used to append a durable record (2.7 KB of database a
request). Denials are now aggregated per source and window: the first is a
record of its own, the rest are counted and written as one record when the
window closes or the node stops, so the count stays exact.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from donjon.store.tables import audit_log
from harness import LiveNode, fresh_source, run_cli, start_node

FLOOD = 300


def _bad_key() -> str:
    return f"dj_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"


def _flood(node: LiveNode, source: str, count: int) -> None:
    with node.client(_bad_key(), source=source) as c:
        for _ in range(count):
            r = c.get("/v1/functions")
            assert r.status_code == 401, r.text


def _denials(records: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    return [
        r for r in records if r["action"] == "auth.denied" and r["detail"].get("client") == source
    ]


def _api_records(node: LiveNode) -> list[dict[str, Any]]:
    with node.client() as c:
        r = c.get("/v1/audit", params={"n": 10_000})
    assert r.status_code == 200, r.text
    records: list[dict[str, Any]] = r.json()
    return records


def _db_records(data_dir: Path) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite:///{data_dir / 'donjon.db'}")
    try:
        with engine.connect() as conn:
            return [
                json.loads(bytes(raw))
                for raw in conn.execute(
                    select(audit_log.c.record).order_by(audit_log.c.seq)
                ).scalars()
            ]
    finally:
        engine.dispose()


@pytest.fixture
def long_window_node(tmp_path: Path) -> Iterator[LiveNode]:
    """A node whose denial window outlasts the test: only a stop flushes it."""
    live = start_node(tmp_path / "data", {"DONJON_AUDIT_DENIAL_WINDOW_S": "3600"})
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def short_window_node(tmp_path: Path) -> Iterator[LiveNode]:
    live = start_node(tmp_path / "data", {"DONJON_AUDIT_DENIAL_WINDOW_S": "1"})
    try:
        yield live
    finally:
        live.stop()


def test_bad_credential_flood_writes_a_bounded_number_of_records(
    long_window_node: LiveNode,
) -> None:
    """300 bad keys from one client: one record while the flood lasts, one aggregate at stop."""
    node, source = long_window_node, fresh_source()
    before = len(_api_records(node))
    _flood(node, source, FLOOD)
    during = _api_records(node)
    # The first denial is on record at once, the other 299 only counted so far
    # (the admin's own audit reads add nothing).
    assert len(_denials(during, source)) == 1
    assert len(during) - before <= 2, during[before:]
    node.stop()
    records = _db_records(node.data_dir)
    denials = _denials(records, source)
    assert len(denials) == 2, denials
    assert sum(r["detail"]["count"] for r in denials) == FLOOD
    assert denials[1]["detail"]["aggregated"] is True
    assert run_cli(node.env(), "audit", "verify").returncode == 0


def test_denials_counted_in_a_window_are_written_when_it_closes(
    short_window_node: LiveNode,
) -> None:
    """With a 1 s window, the aggregate record appears without a stop and the sum is exact."""
    node, source = short_window_node, fresh_source()
    _flood(node, source, 50)
    deadline = time.monotonic() + 60
    total = 0
    while time.monotonic() < deadline:
        total = sum(r["detail"]["count"] for r in _denials(_api_records(node), source))
        if total >= 50:
            break
        time.sleep(0.2)
    assert total == 50
