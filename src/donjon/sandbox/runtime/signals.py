"""The signal functions and numbers the runtime uses, from `_signal`, the C half of `signal`.

Importing `signal` converts its constants into three enums, about 2.7 M
instructions (callgrind) of every sandbox start, spent before the first
worker exists; the runtime needs plain numbers and two functions, which
`_signal` has as they are (`signal` re-exports them with enum results).
A function's own `import signal` is untouched: it wraps the same handlers.

Imports nothing from donjon (this runs inside the sandbox).
"""

TYPE_CHECKING = False  # not typing's (mypy reads this as True)
if TYPE_CHECKING:
    from signal import (
        SIG_BLOCK,
        SIG_DFL,
        SIG_SETMASK,
        SIGCHLD,
        SIGKILL,
        pthread_sigmask,
        set_wakeup_fd,
        signal,
        valid_signals,
    )
else:
    from _signal import (
        SIG_BLOCK,
        SIG_DFL,
        SIG_SETMASK,
        SIGCHLD,
        SIGKILL,
        pthread_sigmask,
        set_wakeup_fd,
        signal,
        valid_signals,
    )

__all__ = [
    "SIGCHLD",
    "SIGKILL",
    "SIG_BLOCK",
    "SIG_DFL",
    "SIG_SETMASK",
    "pthread_sigmask",
    "set_wakeup_fd",
    "signal",
    "valid_signals",
]
