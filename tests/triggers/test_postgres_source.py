"""The PostgreSQL source against a real PostgreSQL: NOTIFY in, one envelope per notification,
reconnection after the backend is killed, outages audited once."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable

import pytest

from donjon.audit import AuditEvent
from donjon.manifest.event_triggers import PostgresSpec
from donjon.triggers.envelope import Envelope
from donjon.triggers.postgres_source import PostgresListener, event_of
from harness import free_port
from postgres_support import PostgresServer, postgres_server

#: The loopback servers these tests stand up are internal addresses: opened to the sources
#: as an admin opens an internal network (triggers/source_address.py).
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)

__all__ = ["postgres_server"]  # the fixture, used by name below

SPEC = PostgresSpec(dsn="orders-db", channel="orders")


class Sink:
    """What the listener is given: a vault of one secret, a submit and an audit log."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.envelopes: list[Envelope] = []
        self.records: list[AuditEvent] = []

    async def open_secret(self, name: str) -> str:
        assert name == "orders-db"
        return self.dsn

    async def submit(self, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return f"id-{len(self.envelopes)}"

    async def record(self, event: AuditEvent) -> None:
        self.records.append(event)

    def actions(self) -> list[str]:
        return [r.action for r in self.records]


async def _until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _notify(server: PostgresServer, payload: str) -> None:
    def go() -> None:
        with server.connect() as conn:
            conn.execute("SELECT pg_notify('orders', %s)", (payload,))

    await asyncio.to_thread(go)


async def _with_listener(sink: Sink, body: Callable[[PostgresListener], Awaitable[None]]) -> None:
    listener = PostgresListener(
        "orders-fn", SPEC, sink.open_secret, sink.submit, sink.record, LOOPBACK
    )
    task = asyncio.create_task(listener.run())
    try:
        await body(listener)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def _listeners(server: PostgresServer) -> list[int]:
    """The backends that LISTEN now (pg_stat_activity shows the LISTEN as their last query)."""
    with server.connect() as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %%'"
        ).fetchall()
    return [int(r[0]) for r in rows]


def _listening(server: PostgresServer) -> int:
    return len(_listeners(server))


@pytest.mark.slow
def test_each_notification_is_one_envelope_with_its_payload(
    postgres_server: PostgresServer,
) -> None:
    """A JSON payload is the event as is, a text payload is wrapped; source and type say
    postgres, and each delivery has its own id."""
    sink = Sink(postgres_server.dsn())

    async def body(listener: PostgresListener) -> None:
        await _until(lambda: _listening(postgres_server) == 1, "the LISTEN")
        await _notify(postgres_server, '{"order": 42}')
        await _notify(postgres_server, "plain text")
        await _until(lambda: len(sink.envelopes) == 2, "two envelopes")
        assert listener.delivered == 2

    asyncio.run(_with_listener(sink, body))
    first, second = sink.envelopes
    assert json.loads(first.event) == {"order": 42}
    assert json.loads(second.event) == {"payload": "plain text"}
    assert (first.function, first.trigger, first.source) == (
        "orders-fn",
        "postgres",
        "postgres://orders",
    )
    assert first.delivery_id != second.delivery_id
    assert sink.records == []  # no outage


@pytest.mark.slow
def test_a_killed_backend_is_reconnected_and_delivery_goes_on(
    postgres_server: PostgresServer,
) -> None:
    """pg_terminate_backend on the listener's connection: one outage record, a recovery
    record, and a NOTIFY sent after the reconnection is delivered."""
    sink = Sink(postgres_server.dsn())

    async def body(listener: PostgresListener) -> None:
        await _until(lambda: _listening(postgres_server) == 1, "the LISTEN")

        def kill() -> None:
            with postgres_server.connect() as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN %%'"
                )

        await asyncio.to_thread(kill)
        await _until(lambda: "trigger.source.available" in sink.actions(), "the recovery")
        await _until(lambda: _listening(postgres_server) == 1, "the LISTEN again")
        await _notify(postgres_server, '{"after": "reconnect"}')
        await _until(lambda: len(sink.envelopes) == 1, "the envelope after the reconnection")

    asyncio.run(_with_listener(sink, body))
    assert json.loads(sink.envelopes[0].event) == {"after": "reconnect"}
    assert sink.actions() == ["trigger.source.unavailable", "trigger.source.available"]
    down = sink.records[0]
    assert (down.target, down.outcome, down.detail["trigger"]) == ("orders-fn", "error", "postgres")
    assert down.detail["source"] == "postgres channel orders"


@pytest.mark.slow
def test_an_unreachable_database_is_one_outage_however_many_attempts() -> None:
    """A DSN nothing answers on: retried with backoff, audited once, its password kept out
    of the reason."""
    dsn = f"postgresql://app:hunter2-pw@127.0.0.1:{free_port()}/orders?connect_timeout=2"
    sink = Sink(dsn)

    async def body(listener: PostgresListener) -> None:
        await _until(lambda: listener.health.failures >= 3, "three failed attempts")

    asyncio.run(_with_listener(sink, body))
    assert sink.actions() == ["trigger.source.unavailable"]
    reason = str(sink.records[0].detail["reason"])
    assert "OperationalError" in reason
    assert "hunter2-pw" not in json.dumps(sink.records[0].detail)


def test_a_dsn_that_does_not_parse_is_an_outage_without_its_text() -> None:
    """A DSN libpq cannot parse (a bare % in its password, which libpq's message would
    quote): an outage naming the secret, never the DSN's text."""
    sink = Sink(f"postgresql://app:pa%zz-hunter2@127.0.0.1:{free_port()}/orders")

    async def body(listener: PostgresListener) -> None:
        await _until(lambda: listener.health.failures >= 2, "two failed attempts")

    asyncio.run(_with_listener(sink, body))
    assert sink.actions() == ["trigger.source.unavailable"]
    reason = str(sink.records[0].detail["reason"])
    assert "secret orders-db does not hold a PostgreSQL connection string" in reason
    assert "hunter2" not in reason


def test_an_at_sign_left_in_the_password_keeps_the_password_out_of_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A password holding an @ not percent-encoded: libpq splits the URL at the first @,
    so the rest of the password became the host, and the resolver's error quoted it
    (`failed to resolve host 'tail-of-pw@127.0.0.1'`) into the outage's audit record and
    the log. Such a DSN is refused like one that does not parse, its text never quoted."""
    sink = Sink(f"postgresql://app:hunter2@tail-of-pw@127.0.0.1:{free_port()}/orders")

    async def body(listener: PostgresListener) -> None:
        await _until(lambda: listener.health.failures >= 2, "two failed attempts")

    with caplog.at_level(logging.DEBUG, logger="donjon.sources"):
        asyncio.run(_with_listener(sink, body))
    assert sink.actions() == ["trigger.source.unavailable"]
    assert "tail-of-pw" not in json.dumps(sink.records[0].detail)
    assert "tail-of-pw" not in caplog.text
    assert "secret orders-db" in str(sink.records[0].detail["reason"])


@pytest.mark.slow
def test_a_missing_secret_is_an_outage_not_a_crash(postgres_server: PostgresServer) -> None:
    """The trigger's secret not in the vault: the source reports it and keeps trying."""
    sink = Sink(postgres_server.dsn())

    async def gone(name: str) -> str:
        from donjon.vault.errors import SecretNotFound

        raise SecretNotFound(f"no secret named {name}")

    async def body(listener: PostgresListener) -> None:
        await _until(lambda: listener.health.failures >= 2, "two failed attempts")

    listener_sink = sink
    listener_sink.open_secret = gone  # type: ignore[method-assign]  # the DSN removed
    asyncio.run(_with_listener(listener_sink, body))
    assert sink.actions() == ["trigger.source.unavailable"]
    assert "no secret named orders-db" in str(sink.records[0].detail["reason"])


@pytest.mark.slow
def test_of_several_nodes_one_listens_and_another_takes_over(
    postgres_server: PostgresServer,
) -> None:
    """Two listeners of one trigger (two nodes): one LISTENs, the other waits without an
    outage, a NOTIFY runs once; when its connection is killed one of them takes the lock and
    a NOTIFY again runs once."""
    sink = Sink(postgres_server.dsn())

    async def go() -> None:
        pair = [
            PostgresListener(
                "orders-fn", SPEC, sink.open_secret, sink.submit, sink.record, LOOPBACK
            )
            for _ in range(2)
        ]
        tasks = [asyncio.create_task(listener.run()) for listener in pair]
        try:
            await _until(lambda: _listening(postgres_server) == 1, "one LISTEN")
            await asyncio.sleep(0.5)  # the other is connected, waiting for the lock
            assert _listening(postgres_server) == 1
            assert sorted(listener.leading for listener in pair) == [False, True]
            # The lock held by a session of its own role (another node's listener): no outage.
            assert sink.actions() == []
            await _notify(postgres_server, '{"n": 1}')
            await _until(lambda: len(sink.envelopes) == 1, "the first envelope")
            (first,) = _listeners(postgres_server)

            def kill() -> None:
                with postgres_server.connect() as conn:
                    conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE query LIKE 'LISTEN %%'"
                    )

            await asyncio.to_thread(kill)
            await _until(
                lambda: _listeners(postgres_server) not in ([], [first]), "a new LISTEN", 60
            )
            assert _listening(postgres_server) == 1
            await _notify(postgres_server, '{"n": 2}')
            await _until(lambda: len(sink.envelopes) == 2, "the second envelope")
            await asyncio.sleep(0.5)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(go())
    assert [json.loads(e.event) for e in sink.envelopes] == [{"n": 1}, {"n": 2}]


@pytest.mark.slow
def test_a_rotated_dsn_is_taken_up_at_the_next_check(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the DSN secret changes, the listener reconnects with the new one at its next
    check (no outage recorded) and delivers on the new connection."""
    monkeypatch.setattr("donjon.triggers.postgres_source.IDLE_CHECK_S", 0.2)
    sink = Sink(postgres_server.dsn())

    async def body(listener: PostgresListener) -> None:
        await _until(lambda: _listening(postgres_server) == 1, "the LISTEN")
        (first,) = _listeners(postgres_server)
        sink.dsn = postgres_server.dsn() + "&application_name=rotated"  # `secret rotate`
        await _until(lambda: _listeners(postgres_server) not in ([], [first]), "a new LISTEN")
        with postgres_server.connect() as conn:
            names = conn.execute(
                "SELECT application_name FROM pg_stat_activity WHERE query LIKE 'LISTEN %%'"
            ).fetchall()
        assert names == [("rotated",)]  # connected with the new DSN
        await _notify(postgres_server, '{"after": "rotation"}')
        await _until(lambda: len(sink.envelopes) == 1, "the envelope")

    asyncio.run(_with_listener(sink, body))
    assert sink.records == []
    assert json.loads(sink.envelopes[0].event) == {"after": "rotation"}


def test_event_of_payloads() -> None:
    """JSON payloads pass as they are; anything else is {"payload": text}."""
    assert event_of('{"a": 1}') == b'{"a": 1}'
    assert event_of("[1]") == b"[1]"
    assert json.loads(event_of("")) == {"payload": ""}
    assert json.loads(event_of("{oops")) == {"payload": "{oops"}
    deep = "[" * 1000 + "]" * 1000
    assert json.loads(event_of(deep)) == {"payload": deep}
