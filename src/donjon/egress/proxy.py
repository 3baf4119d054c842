"""The node's egress proxy: one unix socket per sandbox, one token per call.

A sandbox of a function granted egress gets a directory of its own under the
proxy's runtime dir, holding `proxy.sock` (dir 0700, socket 0600, both owned
by the sandbox's host uid); the sandbox binds that directory read-only at
`/run/donjon-egress`. A connection on that socket is the function's, whatever
it says: its first line, `DONJON-EGRESS/1 <token>`, names the call (a token
begun on this sandbox and not yet ended), and the rest is an HTTP proxy
request (session.py). The caps per call (connections, bytes both ways, time
per connection) come from `EgressSettings`; ending a call closes its
connections and writes its aggregated audit records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from donjon.audit.log import AuditLog
from donjon.egress.budget import ConnectionBudget, budget_for
from donjon.egress.calls import Call, CallTable
from donjon.egress.grants import Allowlist, parse_grant_syntax
from donjon.egress.http import MAX_HEAD_BYTES, status_response
from donjon.egress.records import Decision, EgressRecords
from donjon.egress.resolve import Resolver, make_resolver
from donjon.egress.session import SessionContext, serve
from donjon.errors import Error
from donjon.obs import bind_request_id, clear_log_context

if TYPE_CHECKING:  # config.py imports egress/ (its settings' parsers): no cycle at run time
    from donjon.config import EgressSettings

__all__ = ["SOCKET_NAME", "TOKEN_PREFIX", "EgressProxy", "EgressProxyError", "SandboxEgress"]

SOCKET_NAME = "proxy.sock"
TOKEN_PREFIX = b"DONJON-EGRESS/1 "
#: Seconds for the relay's token line; its bytes at most.
TOKEN_TIMEOUT_S = 10.0
MAX_TOKEN_LINE = 128
#: Connections of one sandbox that have not yet named their call; more are closed at once.
MAX_PENDING = 64
#: Seconds an ended call's connections get to finish being cancelled.
CLOSE_WAIT_S = 5.0
#: Sockets bound through /proc/self/fd when the path is longer than this (sun_path is 108).
_MAX_SUN_PATH = 100
POLICY_MODES = ("alert", "block")

log = logging.getLogger("donjon.egress")


class EgressProxyError(Error):
    """The egress proxy could not serve a sandbox."""

    title = "Egress proxy error"


class SandboxEgress:
    """The egress of one sandbox: its socket, its calls, and its function's grants."""

    def __init__(
        self,
        socket_dir: Path,
        table: CallTable,
        ctx: SessionContext,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self.socket_dir = socket_dir
        self._table = table
        self._ctx = ctx
        #: The node's open egress connections (egress/budget.py), shared by its sandboxes.
        self._budget = budget or budget_for(ctx.settings)
        self._server: asyncio.Server | None = None
        self._pending: set[asyncio.Task[None]] = set()  # connections before their token
        self._unknown = Call(
            "sandbox:" + secrets.token_hex(8), table.function, table.version, ""
        )  # refusals that name no call of this sandbox
        self.closed = False

    @property
    def socket_path(self) -> Path:
        return self.socket_dir / SOCKET_NAME

    def begin_call(self, request_id: str, on_refused: Callable[[str], None] | None = None) -> str:
        """A token for the call `request_id` (given to the worker with the call)."""
        if self.closed:
            raise EgressProxyError("the sandbox's egress is closed")
        token, _ = self._table.begin(request_id, on_refused)
        return token

    async def end_call(self, token: str) -> None:
        """End the call: its token stops working, its connections close, its records are written."""
        call = self._table.pop(token)
        if call is not None:
            await self._end(call)

    async def _end(self, call: Call) -> None:
        call.ended = True
        tasks = list(call.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_WAIT_S)
        await self._ctx.records.end_call(call.id)

    async def close(self) -> None:
        """The sandbox ended: stop listening, end every call, remove the socket dir."""
        if self.closed:
            return
        self.closed = True
        if self._server is not None:
            self._server.close()
        for task in list(self._pending):
            task.cancel()
        for call in self._table.pop_all():
            await self._end(call)
        await self._ctx.records.end_call(self._unknown.id)
        await asyncio.to_thread(shutil.rmtree, self.socket_dir, True)

    # -- serving -----------------------------------------------------------------

    async def listen(self, owner_uid: int | None, owner_gid: int | None) -> None:
        sock = _bind(self.socket_dir, owner_uid, owner_gid)
        self._server = await asyncio.start_unix_server(
            self._accept, sock=sock, limit=MAX_HEAD_BYTES
        )

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # This task's context is a copy of the one the socket was opened in (some earlier
        # request's): its log lines carry the id of the call the connection names instead.
        clear_log_context()
        task = asyncio.current_task()
        if task is None or self.closed:  # pragma: no cover - always run as a task
            writer.close()
            return
        function = self._table.function
        refused = self._budget.take(function)  # before anything is read: an open file
        if refused is not None:
            try:
                await self._refuse_unknown(writer, refused, 503)
            finally:  # closed even if the refusal's audit failed
                writer.close()
            return
        try:
            await self._named(task, reader, writer)
        except BaseException:
            writer.close()  # whatever ended it (an audit failure, a cancellation)
            raise
        finally:
            self._budget.give(function)

    async def _named(
        self, task: asyncio.Task[None], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve the connection for the call its token names (refused if none)."""
        if len(self._pending) >= MAX_PENDING:
            await self._refuse_unknown(writer, "too many connections waiting to name their call")
            writer.close()
            return
        self._pending.add(task)
        try:
            call = await self._identify(reader, writer)
        except asyncio.CancelledError:
            writer.close()
            raise
        finally:
            self._pending.discard(task)
        if call is None:
            writer.close()
            return
        bind_request_id(call.request_id)
        call.tasks.add(task)
        try:
            await self._serve(call, reader, writer)
        finally:
            call.tasks.discard(task)

    async def _identify(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Call | None:
        """The call named by the connection's token line; None (refused and audited) if none."""
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"), TOKEN_TIMEOUT_S)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            line = b""
        call = None
        if line.startswith(TOKEN_PREFIX) and len(line) <= MAX_TOKEN_LINE:
            token = line[len(TOKEN_PREFIX) :].strip().decode("ascii", "replace")
            call = self._table.get(token) if token else None
        if call is not None and not call.ended:
            return call
        await self._refuse_unknown(writer, "unknown call token")
        return None

    async def _refuse_unknown(
        self, writer: asyncio.StreamWriter, reason: str, status: int = 403
    ) -> None:
        """Audit (aggregated per sandbox) and answer a connection refused before it named
        its call."""
        table = self._table
        decision = Decision(table.function, table.version, "", "", "denied", reason)
        await self._ctx.records.note(self._unknown.id, decision)
        with contextlib.suppress(OSError):
            writer.write(status_response(status, reason))

    async def _serve(
        self, call: Call, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        settings = self._ctx.settings
        call.connections += 1
        if call.connections > settings.max_connections_per_call:
            reason = (
                f"the call's egress connection limit ({settings.max_connections_per_call}) was"
                " reached"
            )
            await self._ctx.refused(call, self._ctx.decision(call, "", "denied", reason))
            with contextlib.suppress(OSError):
                writer.write(status_response(429, reason))
            writer.close()
            return
        try:
            await serve(self._ctx, call, reader, writer)  # within max_connection_s
        except asyncio.CancelledError:
            writer.close()
            if not call.ended:
                raise


def _bind(directory: Path, uid: int | None, gid: int | None) -> socket.socket:
    """A listening unix socket at `directory`/proxy.sock, 0600 and owned by uid/gid."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        path = str(directory / SOCKET_NAME)
        if len(path) > _MAX_SUN_PATH:  # bind through the directory's descriptor instead
            path = f"/proc/self/fd/{fd}/{SOCKET_NAME}"
        sock.bind(path)
        os.chmod(SOCKET_NAME, 0o600, dir_fd=fd, follow_symlinks=False)
        if uid is not None or gid is not None:
            os.chown(
                SOCKET_NAME,
                uid if uid is not None else -1,
                gid if gid is not None else -1,
                dir_fd=fd,
                follow_symlinks=False,
            )
        sock.listen(128)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise EgressProxyError(
            f"cannot listen on {directory / SOCKET_NAME}: {e.strerror}",
            hint="the egress runtime dir must be writable by the node",
        ) from e
    finally:
        os.close(fd)
    return sock


class EgressProxy:
    """The node's egress proxy, on the node's event loop."""

    def __init__(
        self,
        settings: EgressSettings,
        audit: AuditLog,
        runtime_dir: Path,
        resolver: Resolver | None = None,
        window_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self.runtime_dir = runtime_dir
        self._audit = audit
        self._resolver = resolver
        self.records = EgressRecords(audit, window_s)
        #: Every sandbox's connections together (egress/budget.py).
        self.budget = budget_for(settings)
        self._window_s = window_s
        self._sandboxes: set[SandboxEgress] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Make the runtime dir (removing sockets a stopped node left) and start the flusher."""
        if self._resolver is None:
            self._resolver = make_resolver(self.settings.dns)
        await asyncio.to_thread(_fresh_runtime_dir, self.runtime_dir)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush(), name="egress")

    async def close(self) -> None:
        """Close every sandbox's socket and write every count."""
        for sandbox in list(self._sandboxes):
            await sandbox.close()
        self._sandboxes.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.records.flush(everything=True)

    async def open_sandbox(
        self,
        function: str,
        version: int,
        egress: Sequence[str],
        egress_attempts: str = "alert",
        owner_uid: int | None = None,
        owner_gid: int | None = None,
    ) -> SandboxEgress:
        """A socket for one sandbox of `function`@`version`, allowing exactly `egress`."""
        if self._resolver is None:
            raise EgressProxyError("the egress proxy is not started")
        if egress_attempts not in POLICY_MODES:
            raise EgressProxyError(
                f"policies.egress_attempts must be alert or block, got {egress_attempts!r}"
            )
        # Syntax only (EgressGrantError): a deployed version keeps serving if the admin
        # has since closed a network; its addresses are judged at each dial instead.
        allowlist = Allowlist(parse_grant_syntax(entry) for entry in egress)
        ctx = SessionContext(
            self.settings, allowlist, self._resolver, self.records, self._audit, egress_attempts
        )
        directory = self.runtime_dir / secrets.token_hex(6)
        await asyncio.to_thread(_make_socket_dir, directory, owner_uid, owner_gid)
        sandbox = SandboxEgress(directory, CallTable(function, version), ctx, self.budget)
        try:
            await sandbox.listen(owner_uid, owner_gid)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, directory, True)
            raise
        self._sandboxes.add(sandbox)
        return sandbox

    def forget(self, sandbox: SandboxEgress) -> None:
        self._sandboxes.discard(sandbox)

    async def _flush(self) -> None:
        while True:
            await asyncio.sleep(min(self._window_s / 2, 5.0))
            self._sandboxes = {s for s in self._sandboxes if not s.closed}
            await self.records.flush()


def _fresh_runtime_dir(path: Path) -> None:
    missing = [p for p in [path, *path.parents] if not p.exists()]
    for p in reversed(missing):
        p.mkdir(mode=0o711)
        # Traversable by the sandbox users (to their own socket dir), not listable.
        os.chmod(p, 0o711)  # noqa: S103  # nosec B103 - execute only for others, on purpose
    for child in path.iterdir():
        shutil.rmtree(child, ignore_errors=True)


def _make_socket_dir(path: Path, uid: int | None, gid: int | None) -> None:
    path.mkdir(mode=0o700)
    os.chmod(path, 0o700)
    if uid is not None or gid is not None:
        os.chown(path, uid if uid is not None else -1, gid if gid is not None else -1)
