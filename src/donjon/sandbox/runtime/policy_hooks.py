"""The runtime policies a worker applies to itself (`child_processes` is watch.py's).

- tmp_write block (`tmp_read_only`): /tmp and /dev/shm remounted read-only in
  the worker's mount namespace, before the call filter and any function code
  (the worker still holds CAP_SYS_ADMIN then; afterwards nothing in it can
  mount). With both read-only the worker has no writable file system at all.
- read_own_code block (`hide_bundle`): once the handler is imported, the
  worker enters a further Landlock domain that handles reading files and
  directories and grants them beneath every entry of / but /fn (and beneath
  /fn/.deps, the vendored dependencies, which import lazily). Without
  Landlock the block cannot be kept: the worker fails to start, so the
  deploy is refused with the reason (it never runs unprotected). What was
  open before stays readable (descriptors opened during the import), and the
  handler's bytecode is in memory: this hides the files, not the program.
- alert for tmp_write and read_own_code (`CallWatch`): a Python audit hook
  (sys.addaudithook, added before the import, never removable) notes the
  first write under /tmp or /dev/shm and the first read of /fn during a call,
  and statvfs of /tmp and /dev/shm before and after each call catches writes
  the hook does not see. Best effort: the function's own code runs in this
  interpreter and can write or read through ctypes or a raw system call, and
  reach the hook's state; the report travels in the call's reply head, which
  the function could write itself. The host keeps it only as an alert.

Imports nothing from donjon (this runs inside the sandbox).
"""

from __future__ import annotations

import ctypes
import os
import sys

from . import lowlevel

#: Not typing's: importing typing costs a sandbox start 3-8 ms (mypy reads this as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_REMOUNT = 32
_TMP_DIRS = ("/tmp", "/dev/shm")  # nosec B108 - the worker's own tmpfs mounts
_BUNDLE = "/fn"
_DEPS = "/fn/.deps"
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

_libc = lowlevel.libc("mount")  # looked up once, in the supervisor


def tmp_read_only() -> None:
    """Remount the worker's /tmp and /dev/shm read-only (tmp_write: block)."""
    for target in _TMP_DIRS:
        flags = _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV
        if _libc.mount(None, target.encode(), None, flags, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"remount({target}, ro): {os.strerror(err)}")


def hide_bundle(landlock_abi: int) -> None:
    """Make /fn (but /fn/.deps) unreadable to this process and all it starts."""
    from . import landlock

    if landlock_abi < 1:
        raise OSError(
            95,
            "read_own_code: block needs Landlock (Linux 5.13 or later, with landlock in the"
            " kernel's lsm= list); use alert or allow on this node",
        )
    allowed = [f"/{name}" for name in sorted(os.listdir("/")) if name != _BUNDLE[1:]]
    if os.path.isdir(_DEPS):
        allowed.append(_DEPS)
    landlock.restrict_reads(allowed)


class CallWatch:
    """Best-effort alerts for tmp_write and read_own_code, per call (see the module)."""

    def __init__(self, policies: dict[str, str]) -> None:
        self._tmp = policies.get("tmp_write") == "alert"
        self._code = policies.get("read_own_code") == "alert"
        self._active = False
        self._seen: dict[str, str] = {}
        self._usage: list[tuple[int, int]] = []
        if self._tmp or self._code:
            sys.addaudithook(self._hook)

    def begin(self) -> None:
        if not (self._tmp or self._code):
            return
        self._seen = {}
        self._usage = _tmp_usage() if self._tmp else []
        self._active = True

    def report(self) -> dict[str, dict[str, str]]:
        """For the reply head: {"policy": {policy: what was seen}}, or {} if nothing."""
        if not self._active:
            return {}
        self._active = False
        if self._tmp and "tmp_write" not in self._seen and _tmp_usage() != self._usage:
            self._seen["tmp_write"] = "the call's /tmp or /dev/shm changed"
        return {"policy": dict(self._seen)} if self._seen else {}

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self._active:
            return
        try:
            if event == "open":
                self._on_open(args[0], args[1], args[2])
            elif event in ("os.listdir", "os.scandir") and self._code:
                self._on_read(args[0], "list")
        except Exception:  # an audit hook must never fail the call
            return

    def _on_open(self, path: Any, mode: Any, flags: Any) -> None:
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if writing and self._tmp and "tmp_write" not in self._seen:
            full = _absolute(path)
            if full is not None and any(_beneath(full, d) for d in _TMP_DIRS):
                self._seen["tmp_write"] = f"open {full} for writing"
        if not writing and self._code:
            self._on_read(path, "open")

    def _on_read(self, path: Any, how: str) -> None:
        if "read_own_code" in self._seen:
            return
        full = _absolute(path)
        if full is not None and _beneath(full, _BUNDLE) and not _beneath(full, _DEPS):
            self._seen["read_own_code"] = f"{how} {full}"


def _absolute(path: Any) -> str | None:
    if path is None or isinstance(path, int):
        return None
    text = os.fsdecode(os.fspath(path))
    return os.path.normpath(os.path.join(os.getcwd(), text))


def _beneath(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


def _tmp_usage() -> list[tuple[int, int]]:
    out = []
    for d in _TMP_DIRS:
        try:
            st = os.statvfs(d)
        except OSError:
            continue
        out.append((st.f_blocks - st.f_bfree, st.f_files - st.f_ffree))
    return out
