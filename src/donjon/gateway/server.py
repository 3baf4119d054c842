"""Serving the gateway with uvicorn: HTTPS unless told --unsafe-http."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import math
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from donjon.config import Settings
from donjon.controls import enforce
from donjon.controls.space import disk_space
from donjon.datadir import check_data_dir
from donjon.errors import Error
from donjon.gateway.accept_gate import AcceptGate, ConnectRate
from donjon.gateway.app import create_app
from donjon.gateway.assembly import open_node
from donjon.gateway.capacity import InFlightLimit, audit_connect_refusals, audit_sheds
from donjon.gateway.connections import protocol_for
from donjon.gateway.crash_stop import stop_now
from donjon.gateway.early_shed import early_shed_for
from donjon.gateway.heap import freeze_started_heap
from donjon.gateway.lag_shed import LagShed
from donjon.gateway.node import Node
from donjon.gateway.open_files import raise_open_files
from donjon.gateway.tls import finish_renewal
from donjon.gateway.tls_context import (
    CertificateError,
    ServedTls,
    load_pair,
    served_tls,
    server_context,
)
from donjon.private_memory import keep_memory_private
from donjon.store.database_marker import check_database
from donjon.store.node_lock import hold_database_lock, hold_node_lock

__all__ = ["PortInUse", "bind_listener", "check_port_free", "node_held", "serve"]

log = logging.getLogger("donjon")


class PortInUse(Error):
    """Something else listens on the address the gateway was asked to serve on."""

    title = "Port in use"


def bind_listener(host: str, port: int) -> socket.socket:
    """The gateway's listening socket, bound here so a busy port is one clear error.

    uvicorn is handed the bound socket, so nothing can take the port between
    the check and the serving.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise Error(f"cannot serve on {host}: {e.strerror}", hint="pass --host an address") from e
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # As uvicorn does: a restart may bind while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"port in use: {host}:{port} already has a listener",
                hint="stop what listens there (`ss -ltnp`), or pick another --port",
            ) from e
        raise Error(f"cannot listen on {host}:{port}: {e.strerror}") from e
    return sock


def check_port_free(host: str, port: int) -> None:
    """Raise `PortInUse` unless `host:port` can be listened on now."""
    bind_listener(host, port).close()


_CERT_CHECK_TICKS = 20


class _GatewayServer(uvicorn.Server):
    """uvicorn's server, stopped by SIGTERM or SIGINT without re-raising the signal.

    uvicorn re-raises the signal once it has shut down, which under asyncio's
    runner becomes a KeyboardInterrupt inside the closing lifespan (a traceback
    for a plain Ctrl-C). Here the signal is only recorded: `serve` returns and
    the command says how it stopped. A second Ctrl-C still forces the exit; a
    SIGTERM on top of a Ctrl-C (`donjon up` passing the stop on) does not.
    """

    stop_signal: int | None = None
    #: Seconds calls in flight get once told to stop; then `end_calls` ends them.
    grace_s: float = 10.0
    end_calls: Callable[[], Awaitable[None]] | None = None
    #: Said once the node has started and the server listens (`serve`'s `announce`).
    announce: Callable[[], None] | None = None

    #: The certificate and key being served, re-read when they change on disk
    #: (`donjon tls renew`): checked every `_CERT_CHECK_TICKS` ticks of 0.1 s.
    cert_files: tuple[Path, Path] | None = None
    _cert_stamp: tuple[tuple[int, int, int], ...] = ()
    #: The files as they were when their pair was last refused: said once, not each check.
    _refused_stamp: tuple[tuple[int, int, int], ...] = ()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:  # the node and its app are up: full collections skip all that
            freeze_started_heap()
            if self.announce is not None:
                self.announce()

    async def on_tick(self, counter: int) -> bool:
        if self.cert_files is not None and counter % _CERT_CHECK_TICKS == 0:
            self._reload_certificate()
        return await super().on_tick(counter)

    def _reload_certificate(self) -> None:
        if self.cert_files is None:
            return
        try:
            stamp = tuple(
                (s.st_ino, s.st_size, s.st_mtime_ns) for s in (p.stat() for p in self.cert_files)
            )
        except OSError:
            return  # mid-rename: the next check sees both files
        if not self._cert_stamp:
            self._cert_stamp = stamp
            return
        if stamp in (self._cert_stamp, self._refused_stamp) or self.config.ssl is None:
            return
        certfile, keyfile = self.cert_files
        try:
            # Checked and loaded on a context of its own first: a pair refused half-way
            # (a certificate loaded, its key not) must not leave the served one without
            # its key. New handshakes get the new pair; connections open keep theirs.
            server_context(certfile, keyfile)
            load_pair(self.config.ssl, certfile, keyfile)
        except CertificateError as e:
            self._refused_stamp = stamp
            log.warning(
                "the renewed certificate %s could not be loaded (%s); still serving "
                "the previous one",
                certfile,
                e.message,
            )
            return
        self._cert_stamp = stamp
        log.info("serving the renewed certificate %s", certfile)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn waits for calls in flight (up to its own, longer, timeout, then
        # cancels them mid-await: a traceback and no audit record). Past the grace
        # period the node ends their sandboxes instead, so each call ends the way a
        # crashed sandbox does: answered, audited.
        ender = asyncio.get_running_loop().create_task(self._end_calls_after_grace())
        try:
            await super().shutdown(sockets)
        finally:
            ender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ender

    async def _end_calls_after_grace(self) -> None:
        await asyncio.sleep(self.grace_s)
        if self.server_state.tasks and self.end_calls is not None:
            log.warning(
                "stopping: ending %d call(s) still running after the %gs grace period",
                len(self.server_state.tasks),
                self.grace_s,
            )
            await self.end_calls()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT and self.stop_signal == signal.SIGINT:
            self.force_exit = True
        if self.stop_signal is None or sig == signal.SIGINT:
            self.stop_signal = sig
        self.should_exit = True


class _TlsDeadlines:
    """An event loop whose servers check each new connection at accept (`gate`:
    accept_gate.py) and bound the TLS handshake and the closing exchange.

    Left to the loop's defaults (60 s and 30 s), a client that opens TCP and never
    finishes the handshake, or never answers close_notify, holds its socket that long.
    With a gate the server is made without TLS and the gate starts TLS on each
    connection it lets through, with the same deadlines.
    """

    tls_timeout_s: float = 10.0
    gate: AcceptGate | None = None

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        if self.gate is not None and args:
            context = kwargs.pop("ssl", None)
            args = (self.gate.wrap(args[0], context, self.tls_timeout_s), *args[1:])
        elif kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", self.tls_timeout_s)
            kwargs.setdefault("ssl_shutdown_timeout", self.tls_timeout_s)
        # A mixin: mypy cannot see the loop class it is mixed into.
        server: asyncio.Server = await super().create_server(*args, **kwargs)  # type: ignore[misc]
        return server


def _loop_factory(
    tls_timeout_s: float, gate: AcceptGate | None = None
) -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop (as uvicorn would pick) or asyncio's loop, with the gate and TLS deadlines."""
    base: type[asyncio.AbstractEventLoop]
    try:
        import uvloop

        base = uvloop.Loop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop on Linux
        base = asyncio.SelectorEventLoop

    class GatewayLoop(_TlsDeadlines, base):  # type: ignore[valid-type,misc]  # base: a variable
        pass

    def new_loop() -> asyncio.AbstractEventLoop:
        loop = GatewayLoop()
        loop.tls_timeout_s = tls_timeout_s
        loop.gate = gate
        return loop

    return new_loop


def serve(
    settings: Settings,
    host: str,
    port: int,
    *,
    tls_cert: Path | None,
    tls_key: Path | None,
    unsafe_http: bool,
    announce: Callable[[], None] | None = None,
    unsafe_fewer_controls: bool = False,
) -> int | None:
    """Serve until SIGTERM or SIGINT; return the signal that stopped it (None: it ended).

    `announce` is called once the node has started and the server listens: a busy port,
    a data dir not initialised, a missing control or a node whose start failed (its
    database, audit writer, sandboxes, scanner) is refused before "serving" is said.
    """
    # Before any key or secret is read: none of them may reach a core file or another process.
    keep_memory_private()
    # Before anything is opened: the connection and egress bounds are shares of it.
    raise_open_files()
    # One node per data dir and per database, refused before it binds, sweeps or opens
    # anything of either (store/node_lock.py).
    with node_held(settings, on_lost=stop_now):
        # The pair is checked before the node opens anything: a refused one changes nothing.
        tls = None if unsafe_http else _served_tls(settings, tls_cert, tls_key)
        return _open_and_serve(
            settings, host, port, tls, unsafe_http, announce, unsafe_fewer_controls
        )


def _served_tls(settings: Settings, tls_cert: Path | None, tls_key: Path | None) -> ServedTls:
    """--tls-cert/--tls-key, or the data dir's pair (a renewal cut short finished first)."""
    if tls_cert is not None and tls_key is not None:
        return served_tls(tls_cert, tls_key)
    if not settings.initialised:  # said as the node's opening says it, not as a missing file
        raise Error(f"{settings.data_dir} is not initialised", hint="run `donjon init`")
    finish_renewal(settings.tls_cert_path, settings.tls_key_path)
    return served_tls(settings.tls_cert_path, settings.tls_key_path)


@contextlib.contextmanager
def node_held(settings: Settings, on_lost: Callable[[], None] | None = None) -> Iterator[None]:
    """This process holds the data dir and its database inside the block (store/node_lock.py),
    or `NodeBusy` is raised before anything of either is opened: `serve` for its life, `up`
    while it initialises and mints its key (a refused `up` changes nothing). `on_lost`: what
    to do if another node took the database while its lock was lost (`DatabaseLock`)."""
    check_data_dir(settings.data_dir)  # before anything in it is opened (donjon/datadir.py)
    if settings.data_dir.is_dir():  # the database its state is in, not another
        own_file = settings.database is None
        check_database(settings.data_dir, settings.database_shown, own_file=own_file)
    lock = hold_node_lock(settings.data_dir) if settings.data_dir.is_dir() else None
    database = None
    try:
        if lock is not None and settings.initialised:
            database = hold_database_lock(
                settings.database_url,
                settings.sqlite_path,
                settings.data_dir,
                settings.database_shown,
                on_lost,
            )
        yield
    finally:
        if database is not None:
            database.release()
        if lock is not None:
            lock.release()


def _open_and_serve(
    settings: Settings,
    host: str,
    port: int,
    tls: ServedTls | None,
    unsafe_http: bool,
    announce: Callable[[], None] | None,
    unsafe_fewer_controls: bool,
) -> int | None:
    """`serve` once the data dir is this process's: bind, open the node, check, serve."""
    listener = bind_listener(host, port)
    node = None
    try:
        node = open_node(settings)
        node.spawn_scanner()  # its start overlaps the controls check and the node's start
        # Refuse to serve without a working sandbox (a real probe), or with fewer controls
        # than this node requires (donjon.controls: its baseline, DONJON_REQUIRE_CONTROLS).
        node.controls_waived = enforce(settings, unsafe_fewer_controls=unsafe_fewer_controls)
        node.plain_http = unsafe_http
    except BaseException as e:
        if node is not None:
            node.close_spawned()
        listener.close()
        if isinstance(e, Error) and _data_dir_full(settings) is not None:
            raise start_failed(settings, e) from e
        raise
    try:
        return _serve_node(settings, node, listener, host, port, tls, unsafe_http, announce)
    finally:
        # The node's start takes the helper; a serve that ends before it (uvicorn could not
        # load the certificate, a signal before the lifespan) must not leave it running,
        # nor its listening socket open.
        node.close_spawned()
        listener.close()


def _serve_node(
    settings: Settings,
    node: Node,
    listener: socket.socket,
    host: str,
    port: int,
    tls: ServedTls | None,
    unsafe_http: bool,
    announce: Callable[[], None] | None = None,
) -> int | None:
    """`serve`'s part once the node is open and its controls checked."""
    limits = settings.connections
    # Only requests whose head is complete count against capacity; idle and
    # half-sent connections are bounded by the protocol's deadlines and caps.
    # (Large bodies go out in pieces, the loop free between them: hot_route.py's GatewayApp.)
    app = InFlightLimit(
        create_app(node), limits.max_in_flight, limits.max_loop_lag_s, audit_sheds(node.denials)
    )
    # A share of the invoke calls shed in proportion to the loop's lag (lag_shed.py).
    lag_shed = (
        LagShed(limits.lag_target_s, limits.lag_interval_s) if limits.max_loop_lag_s else None
    )
    if unsafe_http:
        log.warning(
            "UNSAFE: serving plain HTTP (--unsafe-http); credentials cross the network in clear"
        )
    # Proxy headers (X-Forwarded-For/-Proto) only from the configured proxies; none by default.
    trusted = list(settings.trusted_proxies)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        # uvicorn's lines go through the node's own logging (obs/logging.py): JSON, redacted.
        log_config=None,
        access_log=False,
        lifespan="on",
        server_header=False,
        ws="none",
        http=protocol_for(limits, settings.trusted_proxies, early_shed_for(node, lag_shed)),
        limit_concurrency=None,
        timeout_keep_alive=limits.keepalive_timeout_s,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted,
        # The node's own context (tls_context.py), not one uvicorn makes from the files.
        ssl_context_factory=None if tls is None else (lambda _config, _default: tls.context),
        # uvicorn's own deadline, a backstop should ending the sandboxes not end a call.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s) + 15,
    )
    server = _GatewayServer(config)
    server.grace_s = settings.shutdown_grace_s
    server.announce = announce
    if tls is not None:
        server.cert_files = (tls.cert_path, tls.key_path)
        server._reload_certificate()  # the pair as loaded: later changes are renewals
    server.end_calls = node.end_calls
    # New connections per client address, checked at accept: over the rate, closed
    # before the TLS handshake (accept_gate.py); trusted proxies exempt.
    gate = AcceptGate(
        ConnectRate(
            limits.connect_rate,
            limits.connect_burst,
            tuple(ipaddress.ip_network(net) for net in trusted),
        ),
        audit_connect_refusals(node.denials, node.metrics),
    )
    with asyncio.Runner(loop_factory=_loop_factory(limits.handshake_timeout_s, gate)) as runner:
        try:
            runner.run(server.serve(sockets=[listener]))
        except SystemExit:  # uvicorn's exit when the app's start failed: say why, plainly
            if node.start_failure is not None:
                raise start_failed(settings, node.start_failure) from None
            raise
    return server.stop_signal


class NodeStartFailed(Error):
    """The node could not start (its database, its audit log, its sandboxes...)."""

    title = "Node start failed"


def start_failed(settings: Settings, error: BaseException) -> NodeStartFailed:
    """`donjon serve`'s last word when its node could not start: the cause in one line
    (the log above has the rest) and, when the data dir's filesystem is full, that, with
    the remedy: a full disk fails a start in several places, rarely saying so."""
    if isinstance(error, Error):
        cause, hint = error.message, error.hint
    else:  # a library's error: its first line (SQL errors add a web link on the next)
        first = (str(error).strip().splitlines() or [""])[0][:300]
        cause = f"{type(error).__name__}: {first}" if first else type(error).__name__
        hint = "the log lines above say more"
    room = _data_dir_full(settings)
    if room is not None:
        hint = f"the data dir's filesystem is full ({room}): free space there, then start again"
    return NodeStartFailed(f"the node could not start: {cause}", hint=hint)


def _data_dir_full(settings: Settings) -> str | None:
    """The data dir's room ("0 B free of 24.0 MiB on ...") if its filesystem is full (under
    1 MiB), else None. The error is not asked: SQLite starting on a full disk fails with a
    "disk I/O error", which says nothing of room, and an ENOSPC elsewhere (/tmp) is not
    the data dir's."""
    space = disk_space(settings.data_dir)
    if space is None or not space.full:
        return None
    return space.room()
