"""The bubblewrap command line of a function's sandbox.

Every namespace is unshared, nested user namespaces are disabled, the
environment is cleared, only the system libraries, the Python runtime (its
site-packages hidden), Donjon's sandbox runtime and the function's bundle are
mounted, all read-only, and /tmp is a private, size-capped tmpfs.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RUNTIME_DIR", "SandboxSpec", "bwrap_argv", "python_executable"]

RUNTIME_DIR = Path(__file__).parent / "runtime"
_SANDBOX_UID = 65534
#: The sandbox's own private, size-capped tmpfs; never the host's /tmp.
SANDBOX_TMP = "/tmp"  # nosec B108
_SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")


@dataclass(frozen=True)
class SandboxSpec:
    """What one sandbox gets: its bundle and its limits."""

    bundle: Path
    tmp_mb: int
    #: Invocation mode keeps CAP_SYS_ADMIN inside the sandbox's own user
    #: namespace in the zygote only, to give each call a fresh /tmp; each
    #: call's process drops every capability before the handler runs.
    per_call_tmp: bool
    seccomp_fd: int | None = None


def python_executable() -> Path:
    """The base interpreter (not a venv's), which the sandbox can mount."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidate = Path(sys.base_prefix) / "bin" / version
    return candidate if candidate.exists() else Path(sys.base_prefix) / "bin" / "python3"


def _system_mounts() -> list[str]:
    args: list[str] = []
    for d in _SYSTEM_DIRS:
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    return args


def _python_mounts() -> list[str]:
    prefix = Path(sys.base_prefix).resolve()
    args: list[str] = []
    if not any(str(prefix).startswith(d + "/") or str(prefix) == d for d in _SYSTEM_DIRS):
        args += ["--ro-bind", str(prefix), str(prefix)]
    purelib = sysconfig.get_paths(vars={"base": str(prefix), "platbase": str(prefix)})["purelib"]
    if os.path.isdir(purelib):
        args += ["--tmpfs", purelib, "--remount-ro", purelib]
    return args


def bwrap_argv(spec: SandboxSpec, control_fd: int) -> list[str]:
    """The full argv: bwrap, its options, then the interpreter and the runtime."""
    argv = [
        "bwrap",
        "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net",
        "--unshare-uts", "--unshare-cgroup",
        "--disable-userns",
        "--die-with-parent", "--new-session",
        "--uid", str(_SANDBOX_UID), "--gid", str(_SANDBOX_UID),
        "--hostname", "donjon",
        "--clearenv",
        "--setenv", "HOME", SANDBOX_TMP,
        "--setenv", "TMPDIR", SANDBOX_TMP,
        "--setenv", "LANG", "C.UTF-8",
        "--setenv", "PATH", "/usr/bin:/bin",
        "--cap-drop", "ALL",
    ]
    if spec.per_call_tmp:
        argv += ["--cap-add", "CAP_SYS_ADMIN", "--cap-add", "CAP_SETPCAP"]
    argv += _system_mounts()
    argv += _python_mounts()
    argv += [
        "--ro-bind", str(RUNTIME_DIR), "/opt/donjon/donjon_runtime",
        "--ro-bind", str(spec.bundle), "/fn",
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(spec.tmp_mb * 1024 * 1024), "--perms", "1777", "--tmpfs", SANDBOX_TMP,
        "--chdir", "/fn",
    ]
    if spec.seccomp_fd is not None:
        argv += ["--seccomp", str(spec.seccomp_fd)]
    argv += [
        str(python_executable()), "-I", "-S", "-B",
        "/opt/donjon/donjon_runtime/boot.py", str(control_fd),
    ]
    return argv
