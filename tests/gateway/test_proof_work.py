"""Whole-log audit work (proofs, consistency proofs, an export's prefix) runs on threads of
its own, a few at a time: never on the event loop's default executor, which the sandboxes'
start, the end of each call and the stores wait for."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from starlette.requests import Request
from starlette.responses import Response

from donjon.audit.export import check_export
from donjon.audit.proofs import check_document
from donjon.gateway.alerts_api import list_alerts
from donjon.gateway.audit_api import (
    audit_checkpoints,
    audit_consistency,
    audit_export,
    audit_proof,
    audit_tail,
)
from donjon.gateway.node import Node
from donjon.gateway.proof_work import AuditReads, AuditReadsBusy, ProofsBusy, ProofWork
from donjon.gateway.timeline_api import audit_timeline
from donjon.identity import Principal, Role
from donjon.identity.policy_eval import Policy
from proof_support import BuiltLog, build_log


class _Watched(ThreadPoolExecutor):
    """A default executor that counts what it is handed."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.handed: list[str] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.handed.append(getattr(fn, "__name__", repr(fn)))
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[BuiltLog]:
    built = build_log(tmp_path / "audit.db", 40, (20, 40))
    yield built
    built.engine.dispose()


def _node(log: BuiltLog, tmp_path: Path) -> Node:
    pub = tmp_path / "audit-signing.pub"
    pub.write_text(str(log.key.verifier) + "\n")
    settings = SimpleNamespace(audit_signing_pub_path=pub)
    stand_in = SimpleNamespace(
        settings=settings,
        engine=log.engine,
        policy=Policy(),
        proof_work=ProofWork(),
        audit_reads=AuditReads(),
        alerts=None,
    )
    return cast(Node, stand_in)


def _request(path: str, query: str) -> Request:
    scope = {"type": "http", "method": "GET", "path": path, "query_string": query.encode()}
    return Request({**scope, "headers": []})


async def _body(response: Response) -> str:
    if hasattr(response, "body_iterator"):
        chunks = [c if isinstance(c, bytes) else c.encode() async for c in response.body_iterator]
        return b"".join(chunks).decode()
    return bytes(response.body).decode()


def test_proof_routes_leave_the_default_executor_alone(log: BuiltLog, tmp_path: Path) -> None:
    """The checkpoints (each signature checked: up to 10,000 a page), a proof, a consistency
    proof and an export's prefix are built, valid, and the loop's default executor was
    handed none of that work."""
    node = _node(log, tmp_path)
    admin = Principal("1", "admin", Role.ADMIN)
    watched = _Watched()
    calls = (
        (audit_checkpoints, "/v1/audit/checkpoints", "n=10000"),
        (audit_proof, "/v1/audit/proof", "seq=7&size=40"),
        (audit_consistency, "/v1/audit/consistency", "old=20&new=40"),
        (audit_export, "/v1/audit/export", "since=30"),
    )

    async def run() -> list[str]:
        asyncio.get_running_loop().set_default_executor(watched)
        bodies = []
        for handler, path, query in calls:
            handed = len(watched.handed)
            response = await handler(_request(path, query), node, admin, "r1")
            assert watched.handed[handed:] == [], (path, watched.handed[handed:])
            bodies.append(await _body(response))
        return bodies

    checkpoints, proof, consistency, export = asyncio.run(run())
    assert [c["size"] for c in json.loads(checkpoints)] == [20, 40]
    check_document(json.loads(proof), log.key.verifier)
    check_document(json.loads(consistency), log.key.verifier)
    assert "records 30..40" in check_export(export.splitlines(), log.key.verifier).summary


def test_proof_work_refuses_past_its_places_and_one_callers_share() -> None:
    """One slot and three waiting: a caller holds two places at most, four fill the node;
    the rest are ProofsBusy (503, Retry-After) until the work ends, whether or not its
    client still waits; the work runs on the proof threads."""
    work = ProofWork(slots=1, waiting=3)
    gate = threading.Event()
    threads: list[str] = []

    def held() -> str:
        threads.append(threading.current_thread().name)
        gate.wait(60)
        return "done"

    async def run() -> None:
        first = [asyncio.ensure_future(work.run("key:a", held)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(ProofsBusy, match="of your audit proofs"):
            await work.run("key:a", held)
        more = [asyncio.ensure_future(work.run("key:b", held)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(ProofsBusy, match=r"^4 audit proofs") as busy:
            await work.run("key:c", held)
        assert busy.value.retry_after_s > 0 and work.admitted == 4
        first[0].cancel()  # its client went away: the place is held until the work ends
        with pytest.raises(ProofsBusy):
            await work.run("key:c", held)
        gate.set()
        assert [await f for f in [*first[1:], *more]] == ["done"] * 3
        while work.admitted:  # the cancelled one's work ends too
            await asyncio.sleep(0.01)
        assert await work.run("key:c", lambda: "again") == "again"

    asyncio.run(run())
    assert threads and all(name.startswith("donjon-proofs") for name in threads)


def test_audit_pages_leave_the_default_executor_alone(log: BuiltLog, tmp_path: Path) -> None:
    """`GET /v1/audit`, the timeline and the alerts (an index of the log's alert records),
    read by the admin and by an auditor scoped to one function (each page filtered for
    it: up to 20,000 alerts read for one page), run on the audit read threads: the loop's
    default executor, which sandbox starts wait for, was handed none of that work."""
    node = _node(log, tmp_path)
    admin = Principal("1", "admin", Role.ADMIN)
    scoped = Principal("2", "reader", Role.AUDITOR, functions=frozenset({"probe"}))
    watched = _Watched()
    calls = (
        (audit_tail, "/v1/audit", "n=10000"),
        (audit_timeline, "/v1/audit/timeline", "n=1000"),
        (list_alerts, "/v1/alerts", "n=1000"),
    )

    async def run() -> list[int]:
        asyncio.get_running_loop().set_default_executor(watched)
        statuses = []
        for principal in (admin, scoped):
            for handler, path, query in calls:
                handed = len(watched.handed)
                response = await handler(_request(path, query), node, principal, "r1")
                assert watched.handed[handed:] == [], (path, watched.handed[handed:])
                statuses.append(response.status_code)
        return statuses

    assert asyncio.run(run()) == [200] * 6


def test_audit_reads_refuse_past_one_callers_share() -> None:
    """Two threads and six waiting: a caller holds two places at most, the rest of its
    reads are AuditReadsBusy (503, Retry-After) while another caller is still served."""
    reads = AuditReads(slots=2, waiting=6)
    gate = threading.Event()

    def held() -> str:
        gate.wait(60)
        return "read"

    async def run() -> None:
        mine = [asyncio.ensure_future(reads.run("key:a", held)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(AuditReadsBusy, match="of your audit reads") as busy:
            await reads.run("key:a", held)
        assert busy.value.retry_after_s > 0
        other = asyncio.ensure_future(reads.run("key:b", held))
        await asyncio.sleep(0)
        gate.set()
        assert [await f for f in [*mine, other]] == ["read"] * 3

    asyncio.run(run())
