"""Attack: a `postgres` trigger whose DSN (a developer writes its secret) names a server of
the developer's own, which speaks the wire protocol and then misbehaves.

libpq reads a message whole before handing it on, and a result's rows whole before a
query returns: one notification of 256 MiB grew the node by 1.6 GB and was submitted as
an event of 256 MiB; rows that never ended grew it by 700 MB in the ten seconds the lock's
query was given. A gigabyte is the node's end, and every tenant's. The listener's
connection now goes through a relay that passes on at most `MAX_AHEAD` bytes past the
listener's last step (triggers/postgres_relay.py).

The same server also asks for what the node holds of its own: its PGPASSWORD, its client
certificate, its Kerberos credentials, a file of its host named as a root certificate
(source_address.py keeps each out); and it misbehaves in time: a LISTEN never answered,
a connection broken at once, a flood of notifications to a full queue.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from donjon.audit import AuditEvent
from donjon.manifest.event_triggers import PostgresSpec
from donjon.triggers import postgres_source
from donjon.triggers.envelope import Envelope
from donjon.triggers.postgres_relay import MAX_AHEAD
from donjon.triggers.postgres_source import PostgresListener
from donjon.triggers.queue.interface import QueueFull
from donjon.triggers.source_address import SourceAddressRefused, pin_dsn
from donjon.triggers.source_health import Backoff
from harness import LiveNode, run_cli, start_node
from pg_wire_support import HUGE, HostilePostgres, self_signed

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
#: What the server may get to send past what the relay passes on: the sockets' buffers.
SLACK = 16 << 20


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """The listener's checks every second, each answer awaited two seconds."""
    monkeypatch.setattr(postgres_source, "IDLE_CHECK_S", 1.0)
    monkeypatch.setattr(postgres_source, "CONNECT_TIMEOUT_S", 2)


def _until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return found


def _listen(
    server: HostilePostgres,
    extra: str = "",
    with_password: bool = True,
    until: Callable[[], bool] | None = None,
    submit: Callable[[Envelope], Awaitable[str]] | None = None,
) -> tuple[list[AuditEvent], list[Envelope]]:
    """Run a listener on `server` until `until()` (by default: its first record or
    envelope), at most 30 s; its records and envelopes."""
    records: list[AuditEvent] = []
    envelopes: list[Envelope] = []

    async def open_secret(name: str) -> str:
        return server.dsn(extra, with_password)

    async def take(envelope: Envelope) -> str:
        envelopes.append(envelope)
        return "id"

    async def record(event: AuditEvent) -> None:
        records.append(event)

    async def go() -> None:
        spec = PostgresSpec(dsn="orders-db", channel="orders")
        listener = PostgresListener(
            "orders-fn", spec, open_secret, submit or take, record, LOOPBACK
        )
        task = asyncio.create_task(listener.run())
        deadline = time.monotonic() + 30
        done = until or (lambda: bool(records or envelopes))
        while not done() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    return records, envelopes


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[HostilePostgres]:
    hostile = HostilePostgres(str(request.param))
    yield hostile
    hostile.close()


@pytest.mark.slow
@pytest.mark.parametrize("server", ["huge_payload", "huge_rows"], indirect=True)
def test_a_message_of_hundreds_of_mib_is_never_read_whole(
    server: HostilePostgres, quick: None
) -> None:
    """A notification of 256 MiB, or rows that never end: the relay passes on `MAX_AHEAD`
    bytes, the listener's check times out, and its outage says why. Nothing is submitted."""
    records, envelopes = _listen(server)
    assert envelopes == []
    assert records, "no outage was recorded"
    assert records[0].action == "trigger.source.unavailable"
    assert f"more than {MAX_AHEAD} bytes" in str(records[0].detail["reason"])
    sent = _until(lambda: server.sent, "the server's count")
    assert max(sent) < SLACK < HUGE, sent


@pytest.mark.parametrize("server", ["huge_length"], indirect=True)
def test_a_server_that_fails_each_connection_at_once_is_retried_with_growing_delays(
    server: HostilePostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that lets the listener in, answers its LISTEN and breaks the connection
    (a notification declared 2 GiB long, which libpq refuses): the backoff was reset at
    every connection made, so the listener reconnected every half second for ever, two
    audit records (available, unavailable) each time. The backoff now starts again only
    once a connection has served (a notification or a check of it answered)."""
    resets: list[int] = []

    class Counted(Backoff):
        def reset(self) -> None:
            resets.append(1)
            super().reset()

    monkeypatch.setattr(postgres_source, "Backoff", lambda: Counted(first=0.01, cap=0.05))
    _listen(server, until=lambda: server.connections >= 5)
    assert server.connections >= 5
    assert resets == []


@pytest.mark.parametrize("server", ["flood"], indirect=True)
def test_a_flood_of_notifications_to_a_full_queue_is_not_a_log_line_each(
    server: HostilePostgres, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that sends small notifications as fast as it can while the function's
    queue is full: each was lost with a warning of its own (452,000 lines in 8 s), the
    node's log growing at the developer's pace. Now a run of losses is logged at its
    first and at every `LOG_EVERY`-th, and audited at its first, as before."""
    lost: list[int] = []

    async def full(envelope: Envelope) -> str:
        lost.append(1)
        raise QueueFull("the queue of orders-fn is full", 10)

    monkeypatch.setattr(postgres_source, "LOG_EVERY", 1000)
    with caplog.at_level(logging.WARNING, logger="donjon.sources"):
        records, _ = _listen(server, until=lambda: len(lost) >= 5000, submit=full)
    warnings = [r for r in caplog.records if "is lost" in r.getMessage()]
    assert len(lost) >= 5000
    assert 1 <= len(warnings) <= 1 + len(lost) // 1000
    assert [r.action for r in records] == ["trigger.event.dropped"]


@pytest.mark.parametrize("server", ["mute_listen"], indirect=True)
def test_a_listen_never_answered_is_an_outage_not_a_silent_hang(
    server: HostilePostgres, quick: None
) -> None:
    """A server that lets the listener in and takes its lock, then never answers its
    LISTEN: the listener waited for ever, its trigger silent and its health "available".
    Now every query is given `CONNECT_TIMEOUT_S`, and the outage names what went
    unanswered."""
    records, _ = _listen(server)
    assert records, "no outage was recorded"
    assert records[0].action == "trigger.source.unavailable"
    assert "did not answer LISTEN" in str(records[0].detail["reason"])


@pytest.mark.parametrize("server", ["cleartext"], indirect=True)
def test_a_server_without_tls_gets_no_password_when_the_dsn_requires_tls(
    server: HostilePostgres,
) -> None:
    """`sslmode=require` and a server that answers "no TLS" and asks for the password in
    clear: libpq refuses, the password is never sent, the outage says so."""
    records, _ = _listen(server, "sslmode=require")
    assert server.passwords == []
    assert "SSL was required" in str(records[0].detail["reason"])
    assert "pw-hunter2" not in json.dumps(records[0].detail)


@pytest.mark.parametrize("server", ["cleartext"], indirect=True)
def test_the_nodes_pgpassword_is_never_sent_for_a_dsn_without_a_password(
    server: HostilePostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node's environment holds PGPASSWORD (how an admin may give the node its store's
    password): libpq used it for any DSN without a password of its own, and a developer's
    server that asked for the password in clear was sent it. Now a DSN's password is its
    own or none, and the outage says none was supplied."""
    monkeypatch.setenv("PGPASSWORD", "node-store-password")
    records, _ = _listen(server, with_password=False)
    assert server.passwords == []
    assert "no password supplied" in str(records[0].detail["reason"])


@pytest.mark.parametrize("server", ["gss"], indirect=True)
def test_the_nodes_kerberos_credentials_are_never_offered(server: HostilePostgres) -> None:
    """A server that asks for GSSAPI (Kerberos) authentication: libpq answered it with the
    node's own credentials (its default ticket cache, where an admin's kinit or keytab puts
    the node's principal), so a DSN naming a server that trusts that principal logged in as
    the node. A trigger's connection now refuses GSSAPI, and says so."""
    records, _ = _listen(server)
    reason = str(records[0].detail["reason"])
    assert "GSSAPI continuation" not in reason, reason
    assert "gss" in reason, reason
    assert server.passwords == []


def test_a_dsn_asking_for_kerberos_is_refused() -> None:
    """`gssencmode=require` or a `require_auth` that lets GSSAPI in: refused, naming why,
    before anything is dialled."""
    for dsn in (
        "host=127.0.0.1 port=1 gssencmode=require",
        "host=127.0.0.1 port=1 require_auth=gss",
        "host=127.0.0.1 port=1 require_auth=scram-sha-256,sspi",
    ):
        with pytest.raises(SourceAddressRefused, match="Kerberos"):
            asyncio.run(pin_dsn(dsn, LOOPBACK, "the DSN"))
    pinned = asyncio.run(pin_dsn("host=127.0.0.1 require_auth=!password", LOOPBACK, "it"))
    assert "gssencmode=disable" in pinned
    assert "require_auth=!password,!gss,!sspi " in pinned


@pytest.mark.parametrize("server", ["tls"], indirect=True)
def test_a_root_certificate_path_on_the_nodes_host_is_never_read(
    server: HostilePostgres, tmp_path: Path
) -> None:
    """`sslrootcert=<a FIFO on the node's host>` (systemd keeps some under /run): libpq
    opened it on the node's event loop, which then waited for ever for a writer; every
    tenant's requests with it. Any path was read (and which exist and hold certificates
    told by the outage's reason). Only `sslrootcert=system` is taken; here a thread
    stands in as the FIFO's writer, so that a test of the old code ends."""
    server.tls = self_signed(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    opened: list[bool] = []
    stop = threading.Event()

    def writer() -> None:  # opening for writing succeeds only once a reader has it open
        while not stop.is_set():
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                time.sleep(0.05)
                continue
            opened.append(True)

    threading.Thread(target=writer, daemon=True).start()
    try:
        records, _ = _listen(server, f"sslmode=verify-ca sslrootcert={fifo}")
    finally:
        stop.set()
    assert opened == []
    assert "sslrootcert" in str(records[0].detail["reason"])


@pytest.mark.parametrize("server", ["tls"], indirect=True)
def test_the_nodes_own_client_certificate_is_never_presented(
    server: HostilePostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node's user has a client certificate where libpq looks by default
    (~/.postgresql/postgresql.crt: how the node may log in to its own store's database).
    libpq presented it to every trigger's server that asked: a DSN naming the node's own
    database server (on a network the admin opened) with the node's role logged in as the
    node. A trigger's connection sends no client certificate."""
    home = tmp_path / "home"
    (home / ".postgresql").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    # The server trusts the node's certificate (it is the node's own database server).
    server.tls = self_signed(home / ".postgresql")
    _listen(server, "sslmode=require")
    assert server.connections >= 1
    assert server.client_certs == []


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    env = {"DONJON_EGRESS_ALLOW_NETWORKS": "127.0.0.0/8"}
    node = start_node(tmp_path_factory.mktemp("pg-server-node"), env)
    yield node
    node.stop()


@pytest.mark.slow
@pytest.mark.parametrize("server", ["huge_rows"], indirect=True)
def test_a_node_reads_no_endless_answer_from_a_developers_server(
    live: LiveNode, server: HostilePostgres, tmp_path: Path
) -> None:
    """On a real node: the trigger's outage is audited with why, the server got to send
    a bounded part of its rows, and the node goes on serving."""
    run_cli(live.env(), "secret", "set", "hostile-db", input=server.dsn())
    fn = tmp_path / "hostile-pg"
    fn.mkdir()
    (fn / "donjon.yaml").write_text(
        "name: hostile-pg\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\n"
        "triggers:\n  - postgres: {dsn: hostile-db, channel: orders}\n"
    )
    (fn / "main.py").write_text("def handler(event, context):\n    return event\n")
    live.deploy(fn)

    def outage() -> dict[str, Any] | None:
        # The outage that names the bound: on a loaded machine an attempt may end first
        # for another reason (its connection's check timing out), and the next one shows it.
        with live.client() as c:
            records: list[dict[str, Any]] = c.get("/v1/audit", params={"n": 2000}).json()
        found = [
            r
            for r in records
            if r["action"] == "trigger.source.unavailable"
            and f"more than {MAX_AHEAD} bytes" in json.dumps(r)
        ]
        return found[-1] if found else None

    record = _until(outage, "the outage record naming the bound")
    assert "pw-hunter2" not in json.dumps(record)
    sent = _until(lambda: server.sent, "the server's count")
    assert max(sent) < SLACK < HUGE, sent
    with live.client() as c:
        assert c.get("/v1/functions").status_code == 200
    run_cli(live.env(), "rm", "hostile-pg")
