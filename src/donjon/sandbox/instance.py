"""One running sandbox (its supervisor and workers) seen from the gateway.

Warm calls go over the worker's persistent channel (`_warm_call`; warmlink.py,
warmchannel.py), invocation calls over a socket each (`_call`). What the
supervisor says comes in on the control channel (control.py); why a call
ended without its answer is told by endings.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from donjon._subprocess import CommandError
from donjon.deadlines import Deadlines, deadlines
from donjon.sandbox.boot import InstanceConfig, boot_message, import_failure, send_boot
from donjon.sandbox.callgroups import (
    protect_from_oom_killer,
    sandbox_processes,
)
from donjon.sandbox.channel import ChannelClosed, send_with_fd
from donjon.sandbox.control import ControlChannel
from donjon.sandbox.egresslink import EgressOpener, SandboxNetwork
from donjon.sandbox.endings import CallEndings
from donjon.sandbox.errors import (
    FunctionCrashed,
    FunctionTimeout,
    SandboxError,
    SandboxUnavailable,
)
from donjon.sandbox.host import SandboxHost
from donjon.sandbox.instance_cgroups import InstanceCgroups
from donjon.sandbox.limits import ResourceControl, ResourceMode
from donjon.sandbox.policy_events import CallPolicyEvents
from donjon.sandbox.preload import stdlib_imports
from donjon.sandbox.profile import SandboxSpec, bwrap_argv
from donjon.sandbox.replies import CallResult, reply_head, reply_result
from donjon.sandbox.seccomp import Filters
from donjon.sandbox.spawn import SandboxProcess, make_and_start
from donjon.sandbox.subcalls import SubCall, exchange
from donjon.sandbox.warmchannel import WarmChannel
from donjon.sandbox.warmlink import ChannelEnded, ChannelViolation

__all__ = ["CallResult", "Instance", "InstanceConfig"]

_START_TIMEOUT_S = 30.0
_GRACE_S = 1.0


class Instance:
    """A sandbox process and its control channel."""

    def __init__(
        self,
        config: InstanceConfig,
        resources: ResourceControl,
        filters: Filters,
        host: SandboxHost,
        egress: EgressOpener | None = None,
    ) -> None:
        self.config = config
        self._egress = egress
        self._network = SandboxNetwork()
        self._resources = resources
        self._filters = filters
        self._host = host
        self._proc: SandboxProcess | None = None
        self._ctrl: socket.socket | None = None
        self._cgroups = InstanceCgroups(config, resources)
        self._endings = CallEndings(config, self._cgroups, resources)
        self._next_id = 0
        self._stderr = b""
        self.active = 0
        self.last_used = time.monotonic()
        self.closed = False
        #: Takes no new call, and closes once its calls end: a secret granted to its
        #: function changed, and its process may hold the old value (pool.recycle).
        self.recycled = False
        self._closing: set[asyncio.Future[None]] = set()
        #: what calls in flight did that a runtime policy watches
        self._policy_events = CallPolicyEvents(config.policies)
        self._control = ControlChannel(self._policy_events)
        self._inbox = self._control.inbox
        self._exits = self._control.exits
        #: warm: the persistent channel to the worker, the page its supervisor reads,
        #: and (egress granted) the worker's relay, which gets each call's token
        self._warm: WarmChannel | None = None
        #: The loop and its timeouts of calls (deadlines.py), known once started.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines: Deadlines | None = None

    # -- life cycle -------------------------------------------------------------

    async def start(self) -> None:
        """Spawn the sandbox and wait until the handler is imported."""
        self._host.pin(self.config.bundle, self)  # its staged copy (host.py) until closed
        self._loop = asyncio.get_running_loop()
        self._deadlines = deadlines()
        # Its proxy socket first (granted egress only): it is bound into the sandbox.
        self._network = await SandboxNetwork.open(self._egress, self.config, self._host)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._ctrl = ours
        if self.config.warm:
            self._warm = WarmChannel()
        handed = self._warm.handed if self._warm is not None else []
        preload = asyncio.ensure_future(asyncio.to_thread(stdlib_imports, self.config.bundle))
        seccomp_fd = self._filters.sandbox_fd()
        spec = SandboxSpec(
            bundle=self.config.bundle,
            tmp_mb=self.config.tmp_mb,
            seccomp_fd=seccomp_fd,
            function=self.config.function,
            egress_dir=self._network.socket_dir,
        )
        await self._spawn(spec, theirs, seccomp_fd)
        self._control.attach(ours, self._took_fds, self._on_eof)
        try:
            hello = await asyncio.wait_for(self._inbox.get(), _START_TIMEOUT_S)
            if hello.get("op") != "hello":
                raise ChannelClosed(f"the sandbox ended while booting ({hello.get('op')})")
            # Before any worker exists: they are forked from the supervisor, and raise theirs.
            processes = sandbox_processes(self._proc.pid) if self._proc is not None else []
            protect_from_oom_killer(processes)
            slot_fds = await asyncio.to_thread(self._cgroups.make_call_groups, processes)
            config = boot_message(
                self.config,
                self._filters,
                egress=self._network.link is not None,
                preload=list(await preload),
                slot_width=self._cgroups.slot_width,
                slots=len(slot_fds),
                process_ceiling=self._cgroups.process_ceiling(),
            )
            try:
                send_boot(ours, config, handed, slot_fds)
            finally:
                if self._warm is not None:
                    self._warm.handed_over()
            ready = await asyncio.wait_for(self._inbox.get(), _START_TIMEOUT_S)
        except BaseException as e:  # whatever went wrong, nothing is left running
            await self.close()
            if not isinstance(e, TimeoutError | ChannelClosed | OSError):
                raise
            raise SandboxUnavailable(
                f"the sandbox of {self.config.function} did not start: {e} "
                f"{self._stderr.decode(errors='replace').strip()}".strip()
            ) from e
        self._control.starting = False
        if ready.get("op") != "ready":
            await self.close()
            raise import_failure(ready)
        if self._warm is not None and not self._warm.connect(
            self._on_link_broken, egress=bool(self.config.egress)
        ):
            await self.close()
            raise SandboxUnavailable(f"the sandbox of {self.config.function} has no relay")

    async def _spawn(self, spec: SandboxSpec, theirs: socket.socket, seccomp_fd: int) -> None:
        """Make the cgroup, then start bubblewrap inside it; closes the descriptors it is given.

        The cgroup is made (off the event loop, with the argv) before the
        sandbox starts, and bubblewrap starts inside it (spawn.py): its
        limits hold from the first instruction, and the cgroup namespace it
        makes is rooted at the sandbox's own cgroup.
        """
        try:
            # In its cgroup from its first instruction (spawn.py: without a fork on v1).
            self._proc = await make_and_start(
                lambda: bwrap_argv(spec, self._host, theirs.fileno()),
                self._cgroups.make,
                [theirs.fileno(), seccomp_fd],
                v1=self._resources.mode is ResourceMode.CGROUP_V1,
            )
        except CommandError as e:  # bwrap missing, or joining the cgroup failed
            await self.close()
            raise SandboxUnavailable(f"the sandbox could not be started: {e.message}") from e
        except BaseException:
            await self.close()
            raise
        finally:
            theirs.close()
            os.close(seccomp_fd)

    def _took_fds(self, data: bytes, fds: list[int]) -> None:
        """Only ever the warm worker's relay, while the sandbox starts; else closed."""
        if self._warm is not None:
            self._warm.take_relay(data, fds, self._control.starting and bool(self.config.egress))
            return
        for fd in fds:
            os.close(fd)

    def _on_link_broken(self, why: str) -> None:
        """The warm worker wrote outside a call, or its channel ended: the sandbox goes."""
        self.closed = True
        self._close_soon()

    def _on_eof(self) -> None:
        self.closed = True

    async def close(self) -> None:
        """Kill the sandbox (die-with-parent takes everything inside with it)."""
        self.closed = True
        if self._warm is not None:
            self._warm.close()
        if self._ctrl is not None:
            self._control.detach()
            self._ctrl.close()
            self._ctrl = None
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(Exception):
                if self._proc.stderr is not None:
                    self._stderr = (await asyncio.wait_for(self._proc.stderr.read(), 2))[-4000:]
            await self._proc.wait()
        await self._cgroups.release()
        if self._warm is not None:
            self._warm.release_page()
        self._host.unpin(self.config.bundle, self)  # nothing of it runs: may be collected
        await self._network.close()
        # Every process of the sandbox is gone: calls still waiting to hear so end now.
        self._control.settle()

    # -- calls ----------------------------------------------------------------

    async def call(
        self,
        meta: bytes,
        event: bytes,
        timeout_s: float,
        release: Callable[[], None] | None = None,
        subcalls: SubCall | None = None,
        request_id: str = "",
    ) -> CallResult:
        """Run one invocation; raise a `SandboxError` subclass on failure.

        `release` is called once, when the call's processes are gone. A warm
        call returns after that; an invocation returns its answer at once and
        stays counted (`active`, and its caller's slot) until its worker is
        reaped, whatever the function wrote early. `subcalls` answers the
        handler's `context.invoke` requests (subcalls.py); none: refused.
        `request_id` names the call to the egress proxy (egresslink.py).
        """
        if self.closed or self._ctrl is None:
            if release is not None:
                release()
            raise FunctionCrashed("the function's sandbox is gone")
        self._next_id += 1
        call_id = self._next_id
        self._policy_events.open(call_id)
        try:
            return await self._call(call_id, meta, event, timeout_s, release, subcalls, request_id)
        except SandboxError as e:
            if not e.policy_events:  # what the supervisor saw, when the reply said nothing
                e.policy_events = self._policy_events.of(call_id, None)
            raise
        finally:
            self._policy_events.close(call_id)

    async def _call(
        self,
        call_id: int,
        meta: bytes,
        event: bytes,
        timeout_s: float,
        release: Callable[[], None] | None,
        subcalls: SubCall | None,
        request_id: str,
    ) -> CallResult:
        ctrl = self._ctrl
        if ctrl is None:  # checked by `call`; closed since, it cannot be
            raise FunctionCrashed("the function's sandbox is gone")
        if self.config.warm:
            return await self._warm_call(
                call_id, meta, event, timeout_s, release, subcalls, request_id
            )
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        exit_fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._exits[call_id] = exit_fut
        self.active += 1
        started = time.monotonic()
        later = False
        try:
            # The call's egress token (granted egress only) goes to its relay, never to it.
            token = self._network.begin(call_id, request_id or str(call_id), self._stop_call)
            msg = json.dumps({"op": "call", "id": call_id, "timeout": timeout_s, "token": token})
            try:
                await send_with_fd(ctrl, msg.encode(), theirs.fileno())
            except OSError:
                raise FunctionCrashed("the function's sandbox is gone") from None
            theirs.close()
            report: dict[str, Any] = {}
            try:
                # asyncio.timeout, unlike wait_for, makes no task per call.
                async with asyncio.timeout(timeout_s + _GRACE_S):
                    head, body = await exchange(ours, meta, event, subcalls)
                    # A reply may come early (function code can write one): the
                    # call is over only once the supervisor says its processes are.
                    if exit_fut.done():
                        report = await exit_fut
                    else:
                        later = True
            except TimeoutError:
                await self.close()
                raise FunctionTimeout(f"the function ran past its {timeout_s:g}s timeout") from None
            except asyncio.CancelledError:
                later = self._cancelled()
                raise
            except (ChannelClosed, OSError):
                # Once its processes are gone (the report), whatever ended it.
                gone = await self._why_gone(exit_fut, timeout_s, call_id, started)
                raise self._network.blocked(call_id) or gone from None
            self._check_ended(call_id, report, timeout_s)
            return self._answer(call_id, head, body)
        finally:
            theirs.close()
            if later:
                self._end_later(call_id, ours, exit_fut, release, started + timeout_s)
            else:
                self._end(call_id, ours, release)

    async def _warm_call(
        self,
        call_id: int,
        meta: bytes,
        event: bytes,
        timeout_s: float,
        release: Callable[[], None] | None,
        subcalls: SubCall | None,
        request_id: str,
    ) -> CallResult:
        """One call on the warm worker's persistent channel (warmlink.py).

        The supervisor is not on the way: it reads the call and its deadline
        from the call page, kills the worker past that deadline and reports
        only a worker that died.
        """
        warm, loop, timeouts = self._warm, self._loop, self._deadlines
        link = warm.link if warm is not None else None
        if warm is None or link is None or loop is None or timeouts is None:
            raise FunctionCrashed("the function's sandbox is gone")
        exit_fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._exits[call_id] = exit_fut
        self.active += 1
        started = time.monotonic()
        try:
            # The call's egress token (granted egress only) goes to its relay, never to it.
            token = self._network.begin(call_id, request_id or str(call_id), self._stop_call)
            if warm.begin(call_id, started + timeout_s, token) and self._ctrl is not None:
                with contextlib.suppress(OSError):  # full queue: it wakes by itself soon
                    self._ctrl.send(b'{"op":"wake"}')
            try:
                async with timeouts.timeout(timeout_s + _GRACE_S):
                    head, body = await link.call(meta, event, subcalls)
            except TimeoutError:
                await self.close()
                raise FunctionTimeout(f"the function ran past its {timeout_s:g}s timeout") from None
            except asyncio.CancelledError:
                self._cancelled()
                raise
            except ChannelViolation as e:
                error: SandboxError = self._network.blocked(call_id) or FunctionCrashed(
                    f"the function's reply broke the call protocol: {e}"
                )
                await self.close()  # the function's fault: its sandbox goes, with the call
                raise error from None
            except (ChannelEnded, OSError):
                self.closed = True  # the channel is gone: this sandbox takes no more calls
                gone = await self._why_gone(exit_fut, timeout_s, call_id, started, link.replied)
                error = self._network.blocked(call_id) or gone
                await self.close()
                raise error from None
            warm.page.end()
            blocked = self._network.blocked(call_id)
            if blocked is not None:
                # Its worker is told to die (`_stop_call`) but replied before the kill
                # landed: the sandbox goes now, so no next call reaches that worker.
                self.closed = True
                await self.close()
                raise blocked
            self._check_ended(call_id, {}, timeout_s)
            return self._answer(call_id, head, body)
        finally:
            self._end(call_id, None, release)

    def _answer(self, call_id: int, raw_head: bytes, body: bytes) -> CallResult:
        """The call's result (or the error it reports), with its policy events."""
        head = reply_head(raw_head)
        return reply_result(head, body, self._policy_events.of(call_id, head))

    def _check_ended(self, call_id: int, report: dict[str, Any], timeout_s: float) -> None:
        """Raise if a call that replied was still ended: by its egress policy, or at its
        deadline (its processes ran on after the reply; the answer is not used)."""
        error = self._network.blocked(call_id) or self._endings.timed_out_after_reply(
            report, timeout_s
        )
        if error is not None:
            raise error

    def _end(
        self, call_id: int, sock: socket.socket | None, release: Callable[[], None] | None
    ) -> None:
        """The call's processes are gone: it stops counting."""
        self.active -= 1
        self.last_used = time.monotonic()
        self._exits.pop(call_id, None)
        self._network.end(call_id)
        if sock is not None:
            sock.close()
        if release is not None:
            release()

    def _end_later(
        self,
        call_id: int,
        sock: socket.socket,
        exit_fut: asyncio.Future[dict[str, Any]],
        release: Callable[[], None] | None,
        deadline: float,
    ) -> None:
        """End the call when the supervisor reports its worker reaped.

        The supervisor kills the worker at `deadline`; should no report come
        even a grace period later, the whole sandbox is closed.
        """
        loop = asyncio.get_running_loop()
        backstop = loop.call_later(
            max(0.0, deadline - time.monotonic()) + 2 * _GRACE_S, self._overdue, exit_fut
        )

        def ended(_: asyncio.Future[dict[str, Any]]) -> None:
            backstop.cancel()
            self._end(call_id, sock, release)

        exit_fut.add_done_callback(ended)

    def _stop_call(self, call_id: int) -> None:
        """End one call now (its runtime policy blocked it): the supervisor kills its worker."""
        if self._ctrl is None or call_id not in self._exits:
            return
        try:
            self._ctrl.send(json.dumps({"op": "end", "id": call_id}).encode())
        except OSError:  # the supervisor's queue is full or it is gone: the sandbox goes
            self._close_soon()

    def _overdue(self, exit_fut: asyncio.Future[dict[str, Any]]) -> None:
        if not exit_fut.done():
            self._close_soon()

    def _close_soon(self) -> None:
        task = asyncio.ensure_future(self.close())  # close() settles every pending call
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _cancelled(self) -> bool:
        """Its caller gave up on a call: a warm sandbox goes (its worker may be mid-call);
        an invocation's call ends later (True), when its worker is reaped."""
        if self.config.warm:
            self.closed = True
            self._close_soon()
            return False
        return True

    async def _why_gone(
        self,
        exit_fut: asyncio.Future[dict[str, Any]],
        timeout_s: float,
        call_id: int,
        started: float,
        replied: bool = False,
    ) -> SandboxError:
        # The call's socket closed without a whole reply; its processes may
        # still run: wait for the supervisor's report, at most to the deadline
        # (a warm worker that closed its channel and runs on is killed there).
        left = started + timeout_s + 2 * _GRACE_S - time.monotonic()
        try:
            async with asyncio.timeout(max(left, _GRACE_S)):
                report = await exit_fut
        except (TimeoutError, OSError):
            await self.close()
            return FunctionCrashed("the function's process ended without an answer")
        return await self._endings.without_answer(report, timeout_s, replied)
