"""A `postgres` trigger's connection, relayed through the node so that what its server
sends is held to `MAX_AHEAD` bytes past the listener's last step.

libpq reads a message whole before it hands it on, and the rows of a result whole
before the query returns, whatever their size: a server of the developer's own (the
trigger's secret names it) that sent one notification of 256 MiB, or rows that never
ended, grew the node's memory by gigabytes (helper-194), and every tenant's functions
ended with it. PostgreSQL itself sends nothing near that: a notification's payload is
under 8000 bytes, the listener's queries answer a row or a few.

So libpq connects to a relay on loopback (one per host of the DSN, each taking
connections only until the listener's is made), and the relay to the address
`pin_dsn` checked. Everything is passed on as it is, TLS included (libpq still
checks the server's certificate against the DSN's host name), but the relay passes the
server's bytes on only while fewer than `MAX_AHEAD` have gone since the listener last
took a step (`step`: a notification delivered, an answer read). Past that it stops
reading from the server (`stalled`) until the next step; a message bigger than
`MAX_AHEAD`, which no step can follow, holds the listener until its check of the
connection times out, and it reconnects saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["MAX_AHEAD", "Relays", "relayed"]

#: The most bytes of the server's passed on past the listener's last step.
MAX_AHEAD = 1 << 20
_CHUNK = 64 << 10


class _Relay:
    """One host's relay: 127.0.0.1:`port` to `address`:`upstream_port`."""

    def __init__(self, owner: Relays, address: str, upstream_port: int) -> None:
        self._owner = owner
        self._address = address
        self._upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def close_door(self) -> None:
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        self.close_door()
        await asyncio.sleep(0)  # a connection accepted just now registers its task
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:  # a peer that stopped reading holds a close's flush
            writer.transport.abort()
        self._writers.clear()
        await asyncio.sleep(0)  # the aborted transports' sockets are closed

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            try:
                up_reader, upstream = await asyncio.wait_for(
                    asyncio.open_connection(self._address, self._upstream_port),
                    self._owner.connect_timeout,
                )
            except (OSError, TimeoutError) as e:
                why = str(e) or "timed out"
                self._owner.error = f"{self._address} port {self._upstream_port}: {why}"
                return
            up_writer = upstream
            self._writers.add(upstream)
            await asyncio.gather(
                self._pump(reader, upstream, bounded=False),
                self._pump(up_reader, writer, bounded=True),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:  # cancelled too (the listener stopping): both sockets closed
            writer.close()
            if up_writer is not None:
                up_writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, bounded: bool
    ) -> None:
        owner = self._owner
        while True:
            while bounded and owner.room <= 0:
                owner.stalled = True
                owner.moved.clear()
                await owner.moved.wait()
            data = await reader.read(min(_CHUNK, owner.room) if bounded else _CHUNK)
            if not data:
                writer.close()  # the other side's end is passed on
                return
            if bounded:
                owner.room -= len(data)
            writer.write(data)
            await writer.drain()


class Relays:
    """The relays of one connection; what the server sent past the listener's last step."""

    def __init__(self, connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self.room = MAX_AHEAD
        self.moved = asyncio.Event()
        #: Whether the server got to send `MAX_AHEAD` bytes past a step.
        self.stalled = False
        #: Why the relay could not reach the server, if it could not.
        self.error = ""
        self._relays: list[_Relay] = []

    def step(self) -> None:
        """The listener took a notification or an answer: `MAX_AHEAD` more may come."""
        self.room = MAX_AHEAD
        self.stalled = False
        self.moved.set()

    async def open(self, address: str, port: int) -> int:
        """A relay to `address`:`port`; its own port on 127.0.0.1."""
        relay = _Relay(self, address, port)
        self._relays.append(relay)
        await relay.start()
        return relay.port

    def close_door(self) -> None:
        """The listener's connection is made: no other is taken."""
        for relay in self._relays:
            relay.close_door()

    async def close(self) -> None:
        for relay in self._relays:
            await relay.close()

    def why(self, error: BaseException) -> str | None:
        """What the relay saw go wrong when the connection failed with `error`, for the
        outage's reason (None: nothing)."""
        if self.stalled:
            return (
                f"the server sent more than {MAX_AHEAD} bytes that were neither a whole "
                "notification nor an answer (PostgreSQL sends no message near that size); "
                "the connection was closed"
            )
        if self.error:
            return f"{type(error).__name__}: could not connect to {self.error}"
        return None


@contextlib.asynccontextmanager
async def relayed(pinned: str, connect_timeout: float) -> AsyncIterator[tuple[str, Relays]]:
    """`pinned` (`pin_dsn`'s DSN, its hosts at checked `hostaddr`s) made to go through a
    relay per host, and the relays, closed on exit."""
    params = conninfo_to_dict(pinned)
    addresses = str(params["hostaddr"]).split(",")
    ports = str(params.get("port") or "5432").split(",")
    if len(ports) == 1:
        ports *= len(addresses)
    relays = Relays(connect_timeout)
    try:
        mine = [await relays.open(a, int(p)) for a, p in zip(addresses, ports, strict=True)]
        params["hostaddr"] = ",".join("127.0.0.1" for _ in mine)
        params["port"] = ",".join(str(port) for port in mine)
        yield make_conninfo("", **params), relays
    finally:
        await relays.close()
