"""The one wrapper through which Donjon runs other programs.

argv lists only, never a shell; a failure carries the program's stderr.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from donjon.errors import Error

__all__ = ["CommandError", "run", "start"]


class CommandError(Error):
    """A program Donjon ran failed."""

    title = "Command failed"


def run(
    argv: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600.0,
    hint: str = "",
) -> str:
    """Run `argv` to completion and return its stdout; raise `CommandError` on failure."""
    args = [str(a) for a in argv]
    try:
        done = subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as e:
        raise CommandError(f"{args[0]} is not installed", hint=hint) from e
    except subprocess.TimeoutExpired as e:
        raise CommandError(f"{args[0]} did not finish within {timeout:.0f}s", hint=hint) from e
    if done.returncode != 0:
        tail = done.stderr.strip()[-2000:] or done.stdout.strip()[-2000:]
        raise CommandError(f"{args[0]} failed (exit {done.returncode}): {tail}", hint=hint)
    return done.stdout


def start(argv: Sequence[str | Path], *, env: dict[str, str] | None = None,
          hint: str = "") -> subprocess.Popen[bytes]:
    """Start a long-lived helper speaking over its stdin/stdout pipes (stderr is inherited).

    It leads a session of its own, so it and whatever it forks can be killed together
    (``os.killpg(proc.pid, SIGKILL)``)."""
    args = [str(a) for a in argv]
    try:
        return subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
            start_new_session=True,
        )
    except OSError as e:
        raise CommandError(f"{args[0]} could not start: {e.strerror}", hint=hint) from e
