"""How the seccomp compiler turns the names it is given into rules: a name it cannot
resolve stops the filter (and the node's start) instead of leaving the call allowed."""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from pathlib import Path
from typing import Any, cast

import pytest

from donjon.config import load_settings
from donjon.controls import survey
from donjon.sandbox import SandboxUnavailable, seccomp

_NO_SUCH_CALL = "donjon_no_such_call"
#: Calls of Linux 6.8 to 6.17 that libseccomp 2.5 (Debian 12's) does not know.
_NEWER_CALLS = ("statmount", "listmount", "mseal", "getxattrat", "open_tree_attr", "file_setattr")


def _deny(*names: str) -> bytes:
    return seccomp._Compiler().compile(names, namespaces=False, families=False, deny_newns=False)


def test_an_unknown_name_in_a_deny_list_is_an_error_naming_it() -> None:
    """A deny rule for a name libseccomp does not know is refused with the name, not
    dropped (dropped, the filter would allow the call it was meant to deny)."""
    with pytest.raises(SandboxUnavailable, match=_NO_SUCH_CALL) as caught:
        _deny("ptrace", _NO_SUCH_CALL)
    assert "libseccomp" in caught.value.hint


@pytest.mark.parametrize("name", _NEWER_CALLS)
def test_calls_newer_than_libseccomp_are_denied_by_number(name: str) -> None:
    """Each call Donjon numbers itself makes a rule, whether libseccomp knows it or not."""
    assert _deny(name) != _deny()


@pytest.mark.skipif(platform.machine() != "x86_64", reason="an ARM-only call, lacking on x86_64")
def test_a_call_this_architecture_lacks_is_left_out() -> None:
    """A name libseccomp knows from another architecture is no error here: no process
    can make the call, so the filter has nothing to deny."""
    assert _deny("arm_fadvise64_64") == _deny()


def test_doctor_reports_the_unknown_name_and_the_sandbox_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a name libseccomp does not know in the deny list, `donjon doctor`'s survey
    reports the seccomp control missing with that name, so `serve` refuses to start."""
    monkeypatch.setattr(seccomp, "DENIED_ALWAYS", (*seccomp.DENIED_ALWAYS, _NO_SUCH_CALL))
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    controls = {c.name: c for c in survey(load_settings({"DONJON_DATA_DIR": str(data)}))}
    assert not controls["seccomp"].present
    assert _NO_SUCH_CALL in controls["seccomp"].detail
    assert "libseccomp" in controls["seccomp"].fix


#: Linux numbers a new call alike on every architecture from this one on (alpha aside).
_FIRST_UNIFORM = 424


class _OlderLibseccomp:
    """libseccomp as a release older than the calls from `_FIRST_UNIFORM` on knows it
    (Debian 11's and Ubuntu 20.04's 2.5.1 knows none past Linux 5.9): every call numbered
    from there on is unknown to it; everything else is the real library."""

    def __init__(self, lib: Any) -> None:
        self._real: Any = lib  # the ctypes library: its functions are looked up by name

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def seccomp_syscall_resolve_name(self, name: bytes) -> int:
        nr: int = self._real.seccomp_syscall_resolve_name(name)
        return -1 if nr >= _FIRST_UNIFORM else nr


def test_an_older_libseccomp_compiles_the_same_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    """A libseccomp 2.5 that does not know the listed calls of Linux 5.1 to 5.14
    (mount_setattr, quotactl_fd, memfd_secret, ...) still makes the same filters: each is
    denied by its number, and the node starts as it did before names were checked."""
    expected = seccomp.compile_filters()
    real_init = seccomp._Compiler.__init__

    def older(self: seccomp._Compiler) -> None:
        real_init(self)
        self._lib = cast(ctypes.CDLL, _OlderLibseccomp(self._lib))

    monkeypatch.setattr(seccomp._Compiler, "__init__", older)
    older_filters = seccomp.compile_filters()
    assert older_filters.sandbox == expected.sandbox
    assert (older_filters.call, older_filters.call_watch) == (expected.call, expected.call_watch)
    assert older_filters.process_calls == expected.process_calls


def _errno_of_getpid_under(program: bytes) -> int:
    """In a child with `program` loaded as its seccomp filter: getpid's errno (0 if the
    call ran)."""
    libc = ctypes.CDLL(None, use_errno=True)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: load the filter, try the call, write its errno, leave
        os.close(read)
        code = 1
        try:
            buffer = ctypes.create_string_buffer(program, len(program))
            fprog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
            if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 and (
                libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) == 0
            ):
                ctypes.set_errno(0)
                answer = libc.syscall(_GETPID)
                os.write(write, str(ctypes.get_errno() if answer < 0 else 0).encode())
                code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child could not load the filter"
    return int(said)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_GETPID = 39  # x86_64's number


@pytest.mark.skipif(platform.machine() != "x86_64", reason="getpid's number is x86_64's")
def test_calls_numbered_past_the_newest_named_answer_enosys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every number from the first no named call uses is refused with ENOSYS (a call a
    later kernel adds: a library falls back as on a kernel without it). Shown with the
    bound moved onto a call that exists (getpid), since on this kernel the numbers past
    the real bound answer ENOSYS anyway."""

    def compile_unnamed() -> bytes:
        return seccomp._Compiler().compile(
            (), namespaces=False, families=False, deny_newns=False, unnamed=True
        )

    assert _errno_of_getpid_under(compile_unnamed()) == 0
    monkeypatch.setattr(seccomp, "FIRST_UNNAMED", _GETPID)
    monkeypatch.setattr(seccomp, "UNNAMED_UNTIL", _GETPID + 1)
    assert _errno_of_getpid_under(compile_unnamed()) == errno.ENOSYS


def test_the_unnamed_range_starts_past_every_named_call() -> None:
    """The bound follows the table: a call named there is never in the ENOSYS range (its
    own rule decides it), and the sandbox filter carries the range."""
    assert max(seccomp._NEWER_THAN_LIBSECCOMP.values()) < seccomp.FIRST_UNNAMED
    assert seccomp.UNNAMED_UNTIL > seccomp.FIRST_UNNAMED
    plain = seccomp._Compiler().compile(
        (), namespaces=False, families=False, deny_newns=False, unnamed=False
    )
    assert len(seccomp.compile_filters().sandbox) > len(plain)
