"""The one wrapper through which Donjon runs other programs.

argv lists only, never a shell; a failure carries the program's stderr.
`run` runs a program to its end (pip, the sandbox probe), `run_async` from the event
loop, holding no thread (the vault's key provider, once per call); `start` starts a
long-lived one (the scan helper, `donjon serve` under `donjon up`);
`start_async` starts one from the event loop, `spawn` from any thread without
copying the caller (bubblewrap for each sandbox: sandbox/spawn.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from donjon.errors import Error

__all__ = ["MAX_OUTPUT", "CommandError", "run", "run_async", "spawn", "start", "start_async"]

#: What `run_async` reads of a program's stdout, and of its stderr, at most.
MAX_OUTPUT = 1024 * 1024


class CommandError(Error):
    """A program Donjon ran failed."""

    title = "Command failed"


def run(
    argv: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600.0,
    pass_fds: Sequence[int] = (),
    hint: str = "",
    input: str | None = None,
) -> str:
    """Run `argv` to completion and return its stdout; raise `CommandError` on failure.

    `input`, if given, is written to its stdin (else stdin is inherited)."""
    args = [str(a) for a in argv]
    try:
        done = subprocess.run(
            args,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            pass_fds=tuple(pass_fds),
            input=input,
        )
    except FileNotFoundError as e:
        raise CommandError(f"{args[0]} is not installed", hint=hint) from e
    except subprocess.TimeoutExpired as e:
        raise CommandError(f"{args[0]} did not finish within {timeout:.0f}s", hint=hint) from e
    except OSError as e:
        raise CommandError(f"{args[0]} could not start: {e.strerror}", hint=hint) from e
    if done.returncode != 0:
        raise _failed(args[0], done.returncode, done.stderr, done.stdout, hint)
    return done.stdout


def _failed(program: str, code: int, stderr: str, stdout: str, hint: str) -> CommandError:
    """A program's non-zero exit, with the end of its stderr (else of its stdout)."""
    tail = stderr.strip()[-2000:] or stdout.strip()[-2000:]
    return CommandError(f"{program} failed (exit {code}): {tail}", hint=hint)


class _TooMuchOutput(Exception):
    pass


async def run_async(
    argv: Sequence[str | Path],
    *,
    input: str,
    timeout: float,
    hint: str = "",
    max_output: int = MAX_OUTPUT,
) -> str:
    """`run` from the event loop: `input` written to its stdin, its stdout returned, and no
    thread held while it runs (a program that hung held one of the loop's few default
    threads each, which the stores and the admin API wait for). It leads a session of its
    own, killed whole at `timeout`, or as soon as it prints more than `max_output` bytes
    on stdout or stderr (read into the node's memory); `CommandError` then, as on a
    non-zero exit."""
    args = [str(a) for a in argv]
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError as e:
        raise CommandError(f"{args[0]} is not installed", hint=hint) from e
    except OSError as e:
        raise CommandError(f"{args[0]} could not start: {e.strerror}", hint=hint) from e
    to_in, from_out, from_err = proc.stdin, proc.stdout, proc.stderr
    if to_in is None or from_out is None or from_err is None:  # pragma: no cover - all piped
        raise CommandError(f"{args[0]} started without its pipes", hint=hint)
    feed = asyncio.ensure_future(_feed(to_in, input.encode()))
    read_out = asyncio.ensure_future(_read_at_most(from_out, max_output))
    read_err = asyncio.ensure_future(_read_at_most(from_err, max_output))
    pipes: list[asyncio.Future[Any]] = [feed, read_out, read_err]
    try:
        async with asyncio.timeout(timeout):
            _, out, err = await asyncio.gather(feed, read_out, read_err)
            code = await proc.wait()
    except TimeoutError:
        raise CommandError(f"{args[0]} did not finish within {timeout:.0f}s", hint=hint) from None
    except _TooMuchOutput:
        raise CommandError(f"{args[0]} printed more than {max_output} bytes", hint=hint) from None
    finally:
        if proc.returncode is None or not all(p.done() for p in pipes):
            await _end(proc, pipes)
    stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    if code != 0:
        raise _failed(args[0], code, stderr, stdout, hint)
    return stdout


#: The ends of programs cut short that outlived `END_WAIT_S`, until their pipes close.
_ENDING: set[asyncio.Future[None]] = set()
#: How long the caller of a program cut short waits for its end.
END_WAIT_S = 5.0


async def _end(proc: asyncio.subprocess.Process, pipes: list[asyncio.Future[Any]]) -> None:
    """Kill `proc` and whatever it started (its session), and reap it: its exit is known
    once its pipes are read to their end, at once unless something that left its session
    holds them; the caller waits END_WAIT_S for that at most (then it goes on alone)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pipe in pipes:
        pipe.cancel()
    ending = asyncio.ensure_future(_reap(proc, pipes))
    _ENDING.add(ending)
    ending.add_done_callback(_ENDING.discard)
    await asyncio.wait([ending], timeout=END_WAIT_S)


async def _reap(proc: asyncio.subprocess.Process, pipes: list[asyncio.Future[Any]]) -> None:
    await asyncio.gather(*pipes, return_exceptions=True)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            while await stream.read(64 * 1024):
                pass
    await proc.wait()


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    """Write `data` and close; a program that exits without reading it is not an error here."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(data)
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()


async def _read_at_most(stream: asyncio.StreamReader, most: int) -> bytes:
    data = bytearray()
    while chunk := await stream.read(64 * 1024):
        data += chunk
        if len(data) > most:
            raise _TooMuchOutput
    return bytes(data)


def start(
    argv: Sequence[str | Path],
    *,
    env: dict[str, str] | None = None,
    pipes: bool = True,
    die_with_parent: bool = False,
    hint: str = "",
) -> subprocess.Popen[bytes]:
    """Start a long-lived program.

    With `pipes` (a helper speaking over its stdin/stdout; stderr is inherited) it
    leads a session of its own, so it and whatever it forks can be killed together
    (``os.killpg(proc.pid, SIGKILL)``). Without, it shares the terminal and the
    session (a server the user may stop with Ctrl-C). `die_with_parent`: the program is
    sent SIGTERM when this process ends, however it ends (a SIGKILL of `donjon up` left
    its `serve` running, holding the node's data dir and port)."""
    args = [str(a) for a in argv]
    try:
        if not pipes:
            guard = _terminated_with(os.getpid()) if die_with_parent else None
            return subprocess.Popen(args, env=env, preexec_fn=guard)  # noqa: PLW1509 - no lock: prctl, getppid
        return subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
    except OSError as e:
        raise CommandError(f"{args[0]} could not start: {e.strerror}", hint=hint) from e


def _terminated_with(parent: int) -> Callable[[], None]:
    """In the child, between fork and exec: SIGTERM once `parent` ends (PR_SET_PDEATHSIG),
    and an exit at once if it ended before that was set. (Imported here, before the fork:
    the CLI's other commands do not load ctypes.)"""
    from donjon.sandbox.runtime.lowlevel import PR_SET_PDEATHSIG, prctl

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)

    return arm


#: All of the node's environment a sandbox launcher (bubblewrap) is given. It runs as
#: the sandbox's host uid, which can read its /proc/PID/environ; the node's environment
#: may hold credentials (a database or Redis URL, an API key, cloud keys) it has no use
#: for. The function inside gets the profile's own environment (--clearenv).
LAUNCH_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE")


def launch_environment() -> dict[str, str]:
    """The environment of a program started by `start_async` or `spawn`: LAUNCH_ENV only."""
    return {k: v for k in LAUNCH_ENV if (v := os.environ.get(k)) is not None}


async def start_async(
    argv: Sequence[str | Path],
    *,
    pass_fds: Sequence[int] = (),
    before_exec: Callable[[], None] | None = None,
    hint: str = "",
) -> asyncio.subprocess.Process:
    """Start a long-lived program from the event loop: no stdin or stdout, stderr piped
    (the caller reads it to explain a failure), `pass_fds` kept open in the child,
    `before_exec` run in the child between fork and exec (joining a cgroup, say), and
    only `launch_environment()` of the node's environment."""
    args = [str(a) for a in argv]
    try:
        return await asyncio.create_subprocess_exec(
            *args,
            pass_fds=tuple(pass_fds),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=before_exec,
            env=launch_environment(),
        )
    except FileNotFoundError as e:
        raise CommandError(f"{args[0]} is not installed", hint=hint) from e
    except (OSError, subprocess.SubprocessError) as e:
        raise CommandError(f"{args[0]} could not start: {e}", hint=hint) from e


def spawn(
    argv: Sequence[str | Path], *, pass_fds: Sequence[int] = (), hint: str = ""
) -> subprocess.Popen[bytes]:
    """Start a long-lived program with no pre-exec step, so by vfork: the caller's memory
    is not copied, and the child starts in the calling thread's cgroups. stdin and
    stdout are /dev/null, stderr is piped, `pass_fds` are kept open in the child; its
    environment is `launch_environment()`."""
    args = [str(a) for a in argv]
    try:
        return subprocess.Popen(
            args,
            pass_fds=tuple(pass_fds),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=launch_environment(),
        )
    except FileNotFoundError as e:
        raise CommandError(f"{args[0]} is not installed", hint=hint) from e
    except (OSError, subprocess.SubprocessError) as e:
        raise CommandError(f"{args[0]} could not start: {e}", hint=hint) from e
