"""A sandbox's way out, seen from the gateway: nothing, or its channel to the egress proxy.

A sandbox of a function granted egress (`permissions.egress`) gets, when it
starts, a unix socket of its own from the node's egress proxy
(`EgressProxy.open_sandbox`, egress/), whose directory is bound into that
sandbox only (profile.py); each call gets a token (`begin_call`) that the
supervisor hands to the relay in the call's network namespace, never to the
function; the token is revoked when the call's processes are gone
(`end_call`), and the socket closed with the sandbox.

The proxy is typed here by the part of its interface the sandbox uses
(`EgressOpener`, `SandboxEgressLink`), so the sandbox package does not import
the egress package: `donjon.egress.EgressProxy` and `SandboxEgress` fit them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from donjon.sandbox.errors import FunctionBlocked, SandboxUnavailable

if TYPE_CHECKING:
    from donjon.sandbox.boot import InstanceConfig
    from donjon.sandbox.host import SandboxHost

__all__ = ["EgressOpener", "SandboxEgressLink", "SandboxNetwork"]

log = logging.getLogger(__name__)


class SandboxEgressLink(Protocol):
    """One sandbox's channel to the proxy (egress/proxy.py's `SandboxEgress`)."""

    @property
    def socket_dir(self) -> Path: ...

    def begin_call(
        self, request_id: str, on_refused: Callable[[str], None] | None = None
    ) -> str: ...

    async def end_call(self, token: str) -> None: ...

    async def close(self) -> None: ...


class EgressOpener(Protocol):
    """The node's egress proxy (egress/proxy.py's `EgressProxy`), as the pool uses it."""

    async def open_sandbox(
        self,
        function: str,
        version: int,
        egress: Sequence[str],
        egress_attempts: str = "alert",
        owner_uid: int | None = None,
        owner_gid: int | None = None,
    ) -> SandboxEgressLink: ...


class SandboxNetwork:
    """What one sandbox has of the network: with no grant, nothing (`link` None)."""

    def __init__(self, link: SandboxEgressLink | None = None) -> None:
        self.link = link
        self._ending: set[asyncio.Future[None]] = set()
        #: call id -> its token, while the call's processes may run
        self._tokens: dict[int, str] = {}
        #: call id -> why the proxy's `egress_attempts: block` ended it
        self._blocked: dict[int, str] = {}

    @classmethod
    async def open(
        cls, proxy: EgressOpener | None, config: InstanceConfig, host: SandboxHost
    ) -> SandboxNetwork:
        """The channel of a sandbox of `config` when it is granted egress; none otherwise.

        The socket belongs to the host uid the sandbox runs as (0600 in a 0700
        directory): no other function's sandbox can open it.
        """
        if not config.egress:
            return cls()
        if proxy is None:  # deny by default: a grant never means direct network access
            raise SandboxUnavailable(
                f"{config.function} is granted egress but this node runs no egress proxy",
                hint="start the node with its egress proxy (donjon serve does)",
            )
        uid, gid = host.ids_for(config.function)
        link = await proxy.open_sandbox(
            config.function,
            config.version,
            config.egress,
            config.egress_attempts,
            owner_uid=uid,
            owner_gid=gid,
        )
        return cls(link)

    @property
    def socket_dir(self) -> Path | None:
        return self.link.socket_dir if self.link is not None else None

    def begin(self, call_id: int, request_id: str, stop: Callable[[int], None]) -> str | None:
        """The call's token (None: no egress). Should the function's policy block a
        refused attempt, `stop(call_id)` ends the call, which then fails with the reason."""
        if self.link is None:
            return None

        def refused(reason: str) -> None:
            if call_id in self._tokens and call_id not in self._blocked:
                self._blocked[call_id] = reason
                stop(call_id)

        token = self.link.begin_call(request_id, refused)
        self._tokens[call_id] = token
        return token

    def blocked(self, call_id: int) -> FunctionBlocked | None:
        """The error of a call its egress policy ended, if it was."""
        reason = self._blocked.get(call_id)
        if reason is None:
            return None
        return FunctionBlocked(
            f"the call was ended by its egress_attempts policy (block): {reason}",
            hint="grant the destination in permissions.egress, or set"
            " policies.egress_attempts: alert",
        )

    def end(self, call_id: int) -> None:
        """The call's processes are gone: its token is revoked, its connections closed."""
        token = self._tokens.pop(call_id, None)
        self._blocked.pop(call_id, None)
        if self.link is None or token is None:
            return
        task = asyncio.ensure_future(self.link.end_call(token))
        self._ending.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Future[None]) -> None:
        self._ending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("ending a call's egress failed: %s", task.exception())

    async def close(self) -> None:
        """The sandbox is gone: its calls' tokens (those still open too), then its socket."""
        link, self.link = self.link, None
        for task in list(self._ending):
            with contextlib.suppress(Exception):
                await task
        if link is None:
            return
        tokens = list(self._tokens.values())
        self._tokens.clear()
        self._blocked.clear()
        for token in tokens:
            try:
                await link.end_call(token)
            except Exception as e:  # the socket still goes
                log.warning("ending a call's egress failed: %s", e)
        await link.close()
