"""Database events: `postgres: {dsn: SECRET, channel: orders}`, one call per NOTIFY.

A listener per trigger opens the DSN held in the trigger's vault secret (the
node's, never the function's), connects with psycopg 3 (async, autocommit),
runs ``LISTEN <channel>`` and submits each notification: its payload is the
event (the JSON it holds, or ``{"payload": "<text>"}`` when it is not JSON).

PostgreSQL keeps no notification for a listener that is not connected: while
the connection is down (the server restarting, a network cut, the backend
terminated), NOTIFYs sent are lost for this trigger. Delivery is therefore
at most once across a disconnect, and exactly what the server sent while
connected otherwise, less any the node refused (its function's queue full,
`limits.queued`; its schema): each is counted, the first of a run of them (and every
`LOG_EVERY`-th) logged, and the first of a run is audited at once as
`trigger.event.dropped` (alerted) and the run's count when it ends. A disconnect is
an outage (source_health.py): the listener reconnects with a capped exponential
backoff, started again only once a connection has served (a notification delivered,
a check answered; a server that broke each connection at once was reconnected to
twice a second, two audit records each time); the outage is alerted and audited
once, and its end audited too. Every `IDLE_CHECK_S` the listener asks the server
(``SELECT 1``, `CONNECT_TIMEOUT_S` to answer), so a silently dead connection is
noticed, and a rotated DSN is taken up; notifications that arrive meanwhile are
kept by psycopg and delivered next.

The connection goes through a relay of the node's (postgres_relay.py), which passes on
at most `MAX_AHEAD` bytes of the server's past the listener's last step: libpq reads
a message whole, so a server of the developer's own set the node's memory otherwise.

With several nodes, each runs a listener, but only one LISTENs: the one whose
connection holds the trigger's session advisory lock (``pg_try_advisory_lock``
on a key from the function's name and the channel). The others wait, trying
the lock every `STANDBY_S`; when the leader's connection ends, its lock goes
with it and another node takes over (NOTIFYs sent in between are lost, as in
any disconnect). Without the lock every node would run every notification. The
key needs no secret, so any user of the database could take it first: a standby
whose lock is held by a session of another database role than its own says so as
an outage (alerted) until the lock is its own.

Each event's delivery id is ``<listener backend pid>.<session>.<n>``: the pid of
the server process that listened, a random token for that connection, and a
counter of its notifications. It names the delivery, not the payload: NOTIFY
carries no id of its own, so a handler that must be idempotent puts one in the
payload.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, LiteralString

import psycopg
from psycopg import sql

from donjon import boundedjson
from donjon.audit import AuditEvent
from donjon.egress.addresses import IPNetwork
from donjon.errors import Error
from donjon.manifest.event_triggers import PostgresSpec
from donjon.triggers.envelope import Envelope, Submit
from donjon.triggers.postgres_relay import Relays, relayed
from donjon.triggers.queue.interface import QueueFull
from donjon.triggers.source_address import pin_dsn
from donjon.triggers.source_errors import SourceSettingsError
from donjon.triggers.source_health import MAX_REASON, Backoff, Record, SourceHealth
from donjon.vault.redact import Redactor

__all__ = ["IDLE_CHECK_S", "LOG_EVERY", "STANDBY_S", "PostgresListener", "event_of"]

log = logging.getLogger("donjon.sources")

#: Seconds between the listener's checks of its connection (and of its DSN).
IDLE_CHECK_S = 30.0
#: Seconds a connection attempt, or a check of the connection, may take.
CONNECT_TIMEOUT_S = 10
#: Seconds between a standby listener's tries at the trigger's lock.
STANDBY_S = 2.0
#: Of a run of lost notifications, every how many is logged as a warning (and the first).
LOG_EVERY = 10_000

OpenSecret = Callable[[str], Awaitable[str]]

#: The roles of the sessions holding a bigint advisory lock (its high and low 32 bits),
#: other than this session's role (a holder without a session, a prepared transaction,
#: counts as another).
_STRANGE_HOLDERS = """
SELECT coalesce(a.usename::text, '(no session)') FROM pg_locks l
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid
  AND a.usename IS DISTINCT FROM current_user
"""


def event_of(payload: str) -> bytes:
    """The handler's event for a notification's payload: its JSON, or the text wrapped."""
    try:
        boundedjson.loads(payload)
    except (ValueError, boundedjson.JSONTooDeep):  # too deep for a handler to be given
        return json.dumps({"payload": payload}).encode()
    return payload.encode()


def _audited_reason(error: Error) -> str:
    """What the audit record of a dropped notification says of why: a full queue's message
    (the node's own words), else the refusal's kind only. A refusal's message may quote the
    payload (an input_schema's names the refused value and field: a row's card number, an
    email), and the audit log is append-only: it must hold none of an event's values."""
    if isinstance(error, QueueFull):
        return error.message
    return f"{error.title} ({type(error).__name__}; the node's log has the detail)"


class PostgresListener:
    """Listens on one trigger's channel until cancelled."""

    def __init__(
        self,
        function: str,
        spec: PostgresSpec,
        open_secret: OpenSecret,
        submit: Submit,
        record: Record,
        allow_networks: Sequence[IPNetwork] = (),
    ) -> None:
        self.function = function
        self.spec = spec
        self._allow_networks = allow_networks
        self._open_secret = open_secret
        self._submit = submit
        self._record = record
        self.health = SourceHealth(record, function, "postgres", f"postgres channel {spec.channel}")
        self._redact = Redactor({})
        #: The relays of the connection (postgres_relay.py): what its server sends is bounded.
        self._relays = Relays(CONNECT_TIMEOUT_S)
        #: Notifications submitted.
        self.delivered = 0
        #: Notifications the node refused (its queue full, say): lost, each counted.
        self.dropped = 0
        #: Those lost since the last one the node took (a run of refusals).
        self._dropping = 0
        #: The session advisory lock that one listener of this trigger holds, whichever
        #: node it runs on: a 64-bit key from the function's name and the channel.
        self.lock_key = int.from_bytes(
            hashlib.blake2b(f"donjon:{function}:{spec.channel}".encode(), digest_size=8).digest(),
            "big",
            signed=True,
        )
        #: Started again once a connection has served (a notification or a check answered),
        #: not when one is made: a server that broke each connection at once was
        #: reconnected to twice a second.
        self._backoff = Backoff()
        #: Whether this listener's connection holds the lock (it LISTENs) now.
        self.leading = False

    async def run(self) -> None:
        while True:
            try:
                dsn = (await self._open_secret(self.spec.dsn)).strip()
                self._redact = Redactor({self.spec.dsn: dsn, **_password(self.spec.dsn, dsn)})
                what = f"the DSN in secret {self.spec.dsn}"
                pinned = await pin_dsn(dsn, self._allow_networks, what)
                async with (
                    relayed(pinned, CONNECT_TIMEOUT_S) as (via, self._relays),
                    await psycopg.AsyncConnection.connect(
                        via, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
                    ) as conn,
                ):
                    self._relays.close_door()
                    await self.health.succeeded()
                    if await self._lead(conn, dsn):
                        listen = sql.SQL("LISTEN {}").format(sql.Identifier(self.spec.channel))
                        await self._ask(conn, "LISTEN", listen)
                        await self._listen(conn, dsn)
            except Exception as e:  # a lost connection, a bad DSN, a missing secret: retried
                await self.health.failed(self._relays.why(e) or self._reason(e))
            self._relays = Relays(CONNECT_TIMEOUT_S)
            self.leading = False
            await asyncio.sleep(self._backoff.next())

    async def _lead(self, conn: psycopg.AsyncConnection[Any], dsn: str) -> bool:
        """Wait until this connection holds the trigger's advisory lock (True), or the DSN
        changes (False). One node of several listens; the others wait their turn here."""
        rounds = 0
        while True:
            cur = await self._ask(
                conn, "the lock's query", "SELECT pg_try_advisory_lock(%s)", (self.lock_key,)
            )
            rounds += 1
            if rounds > 1:  # a standby that has waited a round: its connection served
                self._backoff.reset()
            row = await cur.fetchone()
            if row is not None and row[0] is True:
                self.leading = True
                await self.health.succeeded()  # the end of a stranger's hold, if there was one
                return True
            await self._check_holder(conn)
            await asyncio.sleep(STANDBY_S)
            if (await self._open_secret(self.spec.dsn)).strip() != dsn:
                return False

    async def _check_holder(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """While the lock is held elsewhere: by a session of this listener's own database
        role, a listener on another node, that is the standby's normal wait; by any other
        role, a stranger who computed the (documented) key and silences the trigger, every
        NOTIFY lost: an outage, alerted, until the lock is this listener's."""
        high, low = (self.lock_key >> 32) & 0xFFFFFFFF, self.lock_key & 0xFFFFFFFF
        cur = await self._ask(
            conn, "the query of the lock's holders", _STRANGE_HOLDERS, (high, low)
        )
        strangers = [str(r[0]) for r in await cur.fetchall()]
        if strangers:
            await self.health.failed(
                f"the lock of channel {self.spec.channel} is held by a session of role "
                f"{strangers[0]}, not by a listener of this trigger; its notifications are lost"
            )

    async def _listen(self, conn: psycopg.AsyncConnection[Any], dsn: str) -> None:
        """Submit notifications until the connection fails or the DSN changes."""
        session = f"{conn.info.backend_pid}.{secrets.token_hex(4)}"
        n = 0
        while True:
            async for notify in conn.notifies(timeout=IDLE_CHECK_S):
                n += 1
                self._relays.step()
                self._backoff.reset()
                await self._deliver(notify.payload, f"{session}.{n}")
            # Every IDLE_CHECK_S: is the server still there? (A silently cut connection
            # would otherwise wait for TCP to give up, many minutes.)
            await self._ask(conn, "its check (SELECT 1)", "SELECT 1")
            self._backoff.reset()
            if (await self._open_secret(self.spec.dsn)).strip() != dsn:
                log.info(
                    "%s: the DSN of channel %s changed; reconnecting",
                    self.function,
                    self.spec.channel,
                )
                return

    async def _ask(
        self,
        conn: psycopg.AsyncConnection[Any],
        what: str,
        query: LiteralString | sql.Composed,
        params: tuple[int, ...] = (),
    ) -> psycopg.AsyncCursor[Any]:
        """`query`'s answer, in at most `CONNECT_TIMEOUT_S` (else `TimeoutError` naming
        `what`); a step of the relay's. A server that never answered the LISTEN held the
        listener for ever, its trigger silent and its health "available"."""
        try:
            cur = await asyncio.wait_for(conn.execute(query, params or None), CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise TimeoutError(
                f"the server did not answer {what} in {CONNECT_TIMEOUT_S} s"
            ) from None
        self._relays.step()
        return cur

    async def _deliver(self, payload: str, delivery_id: str) -> None:
        envelope = Envelope(
            function=self.function,
            event=event_of(payload),
            trigger="postgres",
            source=f"postgres://{self.spec.channel}",
            type="org.postgresql.notify",
            delivery_id=delivery_id,
            subject=self.spec.channel,
        )
        try:
            await self._submit(envelope)
        except Error as e:  # NOTIFY cannot be asked again: the loss is counted and audited
            await self._dropped(delivery_id, e.summary(), _audited_reason(e))
            return
        except Exception:  # a defect, not an outage of the database: logged, listening goes on
            log.exception("%s: a notification on %s is lost", self.function, self.spec.channel)
            await self._dropped(delivery_id, "internal error", "internal error")
            return
        self.delivered += 1
        if self._dropping:  # the run of refusals ended: its count on the record
            dropped, self._dropping = self._dropping, 0
            await self._report_dropped(delivery_id, "the node takes notifications again", dropped)

    async def _dropped(self, delivery_id: str, reason: str, audited: str) -> None:
        """A notification refused by the node (its function's queue full, its schema...):
        lost, since NOTIFY cannot be asked again. Every one is counted; the first of a run,
        and every `LOG_EVERY`-th, is logged (with `reason`, the refusal's `summary`: a
        schema's refusal names the field, never the value), the others at debug level: a
        server that sent notifications as fast as it could to a full queue wrote a warning
        each, 452,000 in 8 s. The first of a run is audited at once (`trigger.event.dropped`
        with `audited`, a reason that holds nothing of the payload; alerted by the
        monitor's `event_sources` rule) and the run's count when it ends."""
        self.dropped += 1
        self._dropping += 1
        loud = self._dropping == 1 or self._dropping % LOG_EVERY == 0
        log.log(
            logging.WARNING if loud else logging.DEBUG,
            "%s: notification %s on %s was not taken and is lost (%d of this run): %s",
            self.function,
            delivery_id,
            self.spec.channel,
            self._dropping,
            reason,
        )
        if self._dropping == 1:
            await self._report_dropped(delivery_id, audited, 1)

    async def _report_dropped(self, delivery_id: str, reason: str, dropped: int) -> None:
        detail = {
            "trigger": "postgres",
            "source": self.health.source,
            "delivery_id": delivery_id[:128],
            "reason": reason[:MAX_REASON],
            "dropped": dropped,
        }
        try:
            await self._record(
                AuditEvent("system", "trigger.event.dropped", self.function, "refused", detail)
            )
        except Exception:  # the audit writer stopping with the node: the log line stays
            log.exception("%s: the record of a dropped notification was not written", self.function)

    def _reason(self, error: BaseException) -> str:
        text = error.message if isinstance(error, Error) else f"{type(error).__name__}: {error}"
        return self._redact(text.strip())


def _password(name: str, dsn: str) -> dict[str, str]:
    """The DSN's password, to keep it out of reasons. `SourceSettingsError` if the DSN does
    not parse: libpq's message quotes the part it could not read, which may be the password
    (``invalid percent-encoded token: "<password>"``), so it is not passed on; nor does a
    host holding an @ (the tail of a password whose @ is not encoded: its errors quote it)."""
    refused = SourceSettingsError(
        f"secret {name} does not hold a PostgreSQL connection string that parses",
        hint=f"`donjon secret rotate {name}` with a postgresql:// URL or key=value DSN;"
        " in a URL, a % or @ in the password is percent-encoded (%25, %40)",
    )
    try:
        parts = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        raise refused from None
    if "@" in str(parts.get("host") or ""):
        # No host name holds an @: a URL's password with one not percent-encoded, split by
        # libpq at its first @, the rest taken for the host, which its errors quote.
        raise refused
    password = parts.get("password")
    return {"password": str(password)} if password else {}
