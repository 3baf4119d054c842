"""Starting bubblewrap inside its sandbox's cgroups without forking the gateway.

A sandbox must be in its cgroups from its first instruction. The simple way
is a pre-exec step: fork, the child joins, then execs. But a fork copies the
gateway's page tables (8-30 ms measured here for a process of 20-200 MB, and
uvloop always forks), and it is on every cold start's critical path.

On cgroup v1 there is a cheaper way that keeps the guarantee. A thread is
moved on its own by writing "0" to a cgroup's `tasks` (cgroupfs.open_joins),
and a new process starts in the cgroups of the thread that made it. So one
dedicated thread of the gateway joins the sandbox's cgroups, starts the
launcher with vfork (subprocess without a pre-exec step: no copy of the
gateway), and moves back to where it came from. The new process is in the
sandbox's cgroups before it runs its first instruction, as before.

While the thread is away, nothing else is in the sandbox's fresh cgroups but
the process it starts (which has only exec'd setpriv by the time the thread
moves back), so no limit there can be reached and name the gateway; user
memory is charged to the gateway's main thread's cgroup throughout (v1
charges an address space to its owner), only the thread's few kernel
allocations of the moment are the sandbox's. If the thread cannot move back,
the sandbox is refused and every later start takes the fork path. The thread
lives as long as the gateway: bubblewrap's --die-with-parent follows the
thread that started it (PR_SET_PDEATHSIG), as it followed the event loop's.

cgroup v2 has no per-thread move for domain cgroups (writing "0" to
cgroup.procs would move the whole gateway), and with rlimits only there is
nothing to join: both keep the pre-exec fork (`start_async`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from donjon._subprocess import CommandError, spawn, start_async
from donjon.sandbox.cgroupfs import ROOT, ResourceMode, join_before_exec, open_joins
from donjon.sandbox.errors import SandboxUnavailable
from donjon.sandbox.limits import Cgroup

__all__ = ["SandboxProcess", "make_and_start", "start_sandbox"]


class SandboxProcess(Protocol):
    """What Instance uses of bubblewrap's process (asyncio.subprocess.Process has it)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    @property
    def stderr(self) -> asyncio.StreamReader | None: ...

    def send_signal(self, sig: int) -> None: ...

    async def wait(self) -> int: ...


class _Spawned:
    """A process started off the event loop, watched through a pidfd."""

    def __init__(self, popen: subprocess.Popen[bytes], stderr: asyncio.StreamReader) -> None:
        self._popen = popen
        self._stderr = stderr

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    @property
    def stderr(self) -> asyncio.StreamReader:
        return self._stderr

    def send_signal(self, sig: int) -> None:
        if self._popen.poll() is None:
            self._popen.send_signal(sig)

    async def wait(self) -> int:
        if (code := self._popen.poll()) is not None:
            return code
        try:
            pidfd = os.pidfd_open(self._popen.pid)
        except OSError:  # no pidfd (Linux < 5.3): a thread waits
            return await asyncio.to_thread(self._popen.wait)
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(pidfd, readable)
        try:
            if self._popen.poll() is None:
                await exited
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        return self._popen.wait()


class _StderrProtocol(asyncio.StreamReaderProtocol):
    """The launcher's stderr: the transport closes (and with it the pipe) at its end."""

    def eof_received(self) -> bool:
        super().eof_received()
        return False  # a StreamReaderProtocol keeps the transport open: this one does not


class _NoHome(Exception):
    """This thread's own cgroups could not be found or opened: no way back after a join."""


class _Spawner:
    """The one thread that starts sandboxes inside their cgroups (cgroup v1)."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="donjon-spawn")
        #: the thread's own cgroup in each hierarchy, by the hierarchy's mount point
        self._home: dict[Path, Path] = {}
        #: set once the thread could not move back (or find its way back): fork from then on
        self.broken = False

    def _home_of(self, d: Path) -> Path:
        """This thread's own cgroup in `d`'s hierarchy (read once, in the thread)."""
        mount = ROOT / d.relative_to(ROOT).parts[0]
        if mount not in self._home:
            controllers = set(mount.resolve().name.split(","))
            for line in Path("/proc/thread-self/cgroup").read_text().splitlines():
                _, names, path = line.split(":", 2)
                if set(names.split(",")) == controllers:
                    home = mount / path.lstrip("/")
                    break
            else:
                raise OSError(f"this thread has no cgroup in {mount}")
            # /proc names it relative to this thread's cgroup namespace: make sure the
            # directory found through the mount holds this thread, or never leave.
            if str(threading.get_native_id()) not in (home / "tasks").read_text().split():
                raise OSError(f"{home} does not list this thread")
            self._home[mount] = home
        return self._home[mount]

    def _start(
        self, argv: list[str], pass_fds: Sequence[int], cgroup: Cgroup
    ) -> subprocess.Popen[bytes]:
        try:
            home = open_joins([self._home_of(d) for d in cgroup.dirs])
        except (OSError, ValueError) as e:
            raise _NoHome(str(e)) from e
        try:
            joins = cgroup.join_fds()
            try:
                for fd in joins:
                    os.write(fd, b"0")  # this thread only: it has left the gateway's cgroups
                return spawn(argv, pass_fds=pass_fds)  # vfork: born in the thread's cgroups
            finally:
                for fd in joins:
                    os.close(fd)
        finally:
            try:
                for fd in home:
                    os.write(fd, b"0")
            except OSError:
                self.broken = True  # nothing may start from a thread left in a sandbox
            for fd in home:
                os.close(fd)

    def _make_then_start(
        self, make: Callable[[], tuple[list[str], Cgroup | None]], pass_fds: Sequence[int]
    ) -> tuple[list[str], Cgroup | None, subprocess.Popen[bytes] | None]:
        """`make` the argv and the cgroup, then start in it; no process (None) when the
        cgroup is not v1's or this thread cannot leave and come back (`_NoHome`)."""
        argv, cgroup = make()
        if cgroup is None or cgroup.mode is not ResourceMode.CGROUP_V1 or self.broken:
            return argv, cgroup, None
        try:
            return argv, cgroup, self._start(argv, pass_fds, cgroup)
        except _NoHome:
            self.broken = True  # never left its cgroups: fork from now on
            return argv, cgroup, None
        except OSError as e:  # the sandbox's cgroup could not be joined
            raise CommandError(f"{argv[0]} could not join its cgroup: {e}") from e

    async def start(
        self, argv: list[str], pass_fds: Sequence[int], cgroup: Cgroup
    ) -> SandboxProcess:
        loop = asyncio.get_running_loop()
        popen = await loop.run_in_executor(self._thread, self._start, argv, pass_fds, cgroup)
        return await self.adopt(popen)

    async def adopt(self, popen: subprocess.Popen[bytes]) -> SandboxProcess:
        """The launcher this thread started, watched from the event loop."""
        loop = asyncio.get_running_loop()
        if self.broken or popen.stderr is None:
            with contextlib.suppress(OSError):
                popen.send_signal(signal.SIGKILL)
            await asyncio.to_thread(popen.wait)
            raise SandboxUnavailable(
                "the sandbox launcher's thread could not go back to the gateway's cgroups",
                hint="later sandboxes start by a fork of the gateway; check the node's cgroups",
            )
        # The transport alone owns the pipe from here: Popen's file object and uvloop's
        # handle both closing the descriptor would close a number some other thread may
        # hold by then (seen: EBADF in a concurrent start's cgroup join and scandir).
        pipe, popen.stderr = popen.stderr, None
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: _StderrProtocol(reader), pipe)
        return _Spawned(popen, reader)


_spawners: dict[int, _Spawner] = {}


def _the_spawner() -> _Spawner:
    """The process's one spawning thread, made at its first start on cgroup v1 (a fork
    of this process, which has no such thread, makes its own)."""
    pid = os.getpid()
    if pid not in _spawners:
        _spawners[pid] = _Spawner()
    return _spawners[pid]


async def start_sandbox(
    argv: list[str], pass_fds: Sequence[int], cgroup: Cgroup | None
) -> SandboxProcess:
    """Start bubblewrap's launcher inside `cgroup` (None: rlimits only) from its first
    instruction: by the spawning thread on cgroup v1, else by a pre-exec join.
    Raises CommandError if it cannot start."""
    if cgroup is not None and cgroup.mode is ResourceMode.CGROUP_V1:
        spawner = _the_spawner()
        if not spawner.broken:
            try:
                return await spawner.start(argv, pass_fds, cgroup)
            except _NoHome:
                spawner.broken = True  # never left its cgroups: fork from now on
            except OSError as e:  # the sandbox's cgroup could not be joined
                raise CommandError(f"{argv[0]} could not join its cgroup: {e}") from e
    joins = cgroup.join_fds() if cgroup is not None else []
    try:
        return await start_async(
            argv, pass_fds=pass_fds, before_exec=join_before_exec(joins) if joins else None
        )
    finally:
        for fd in joins:
            os.close(fd)


async def make_and_start(
    argv: Callable[[], list[str]],
    cgroup: Callable[[], Cgroup | None],
    pass_fds: Sequence[int],
    *,
    v1: bool,
) -> SandboxProcess:
    """`_make_and_start`, which a cancellation does not cut short: the threads it uses run
    on, passing descriptor numbers the caller closes once this returns and making the
    cgroup the caller removes, so a cancelled start raises only once they are done, with
    the launcher they started, if any, killed."""
    start = asyncio.ensure_future(_make_and_start(argv, cgroup, pass_fds, v1=v1))
    try:
        return await asyncio.shield(start)
    except asyncio.CancelledError:
        while not start.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({start})
        if not start.cancelled() and start.exception() is None:
            proc = start.result()
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            await proc.wait()
        raise


async def _make_and_start(
    argv: Callable[[], list[str]],
    cgroup: Callable[[], Cgroup | None],
    pass_fds: Sequence[int],
    *,
    v1: bool,
) -> SandboxProcess:
    """Build the argv and make the sandbox's cgroup (both touch the disk: off the event
    loop), then start the launcher in it (`start_sandbox`). On cgroup v1 (`v1`) the
    spawning thread does all three in one hop, one wake-up of one thread where a cold
    start waited out two more; elsewhere, or once that thread is broken, two threads
    make them side by side first. Raises SandboxUnavailable if the cgroup cannot be
    made, CommandError if the launcher cannot start."""

    def made() -> Cgroup | None:
        try:
            return cgroup()
        except Exception as e:
            raise SandboxUnavailable(f"the sandbox's cgroup could not be made: {e}") from e

    spawner = _the_spawner() if v1 else None
    if spawner is not None and not spawner.broken:
        loop = asyncio.get_running_loop()
        args, group, popen = await loop.run_in_executor(
            spawner._thread, spawner._make_then_start, lambda: (argv(), made()), pass_fds
        )
        if popen is not None:
            return await spawner.adopt(popen)
    else:
        # Both finish before either's failure is raised: a cgroup made after the caller
        # cleaned up would be nobody's (an argv that fails at once must not outrun it).
        built, group_made = await asyncio.gather(
            asyncio.to_thread(argv), asyncio.to_thread(made), return_exceptions=True
        )
        if isinstance(built, BaseException):
            raise built
        if isinstance(group_made, BaseException):
            raise group_made
        args, group = built, group_made
    return await start_sandbox(args, pass_fds, group)
