"""How the seccomp compiler turns the names it is given into rules: a name it cannot
resolve stops the filter (and the node's start) instead of leaving the call allowed."""

from __future__ import annotations

import ctypes
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
