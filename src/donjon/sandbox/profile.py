"""The bubblewrap command line of a function's sandbox.

Every namespace is unshared, nested user namespaces are disabled, the
environment is cleared, only the system libraries, the Python runtime (its
site-packages hidden), Donjon's sandbox runtime and the function's bundle are
mounted, all read-only; so are /, /proc and /dev. /tmp is a private,
size-capped tmpfs (and each worker gets a fresh one of its own).
"""

from __future__ import annotations

import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from donjon.sandbox.host import SandboxHost

__all__ = ["EGRESS_DIR", "SANDBOX_TMP", "SandboxSpec", "bwrap_argv"]

#: The uid and gid inside the sandbox. Not 65534, which is the kernel's
#: overflow id: files of host users the sandbox cannot map show as 65534,
#: so the sandbox visibly owns none of them.
_SANDBOX_UID = 1000
#: The sandbox's own private, size-capped tmpfs; never the host's /tmp.
SANDBOX_TMP = "/tmp"  # nosec B108
#: Where a sandbox granted egress finds its proxy socket (runtime/network.py's EGRESS_DIR).
EGRESS_DIR = "/run/donjon-egress"
_SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
#: The host's configuration kept under /usr, covered by an empty read-only tmpfs: software
#: built into /usr/local keeps its settings, passwords and tokens in /usr/local/etc (npm's
#: global npmrc, a locally built daemon's), some distributions vendor defaults in /usr/etc.
#: /usr is mounted for its programs and libraries, which need neither.
_HOST_CONFIG_DIRS = ("/usr/local/etc", "/usr/etc")


@dataclass(frozen=True)
class SandboxSpec:
    """What one sandbox gets: its bundle and its limits."""

    bundle: Path
    tmp_mb: int
    seccomp_fd: int | None = None
    #: Whose sandbox: each function runs as a host uid of its own (host.py).
    function: str = ""
    #: Granted egress: the host directory holding this sandbox's proxy socket, bound
    #: read-only at /run/donjon-egress (runtime/network.py); None: no way out at all.
    egress_dir: Path | None = None


def _system_mounts() -> list[str]:
    args: list[str] = []
    for d in _SYSTEM_DIRS:
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    return args


def _host_config_covers() -> list[str]:
    """An empty read-only tmpfs over each host configuration directory /usr holds."""
    args: list[str] = []
    for d in _HOST_CONFIG_DIRS:
        if os.path.isdir(d) and not os.path.islink(d):
            args += ["--tmpfs", d, "--remount-ro", d]
    return args


def _under_system_dirs(path: Path) -> bool:
    return any(str(path) == d or str(path).startswith(d + "/") for d in _SYSTEM_DIRS)


def _python_mounts(python: Path) -> list[str]:
    """The interpreter's prefix read-only, with every site-packages of it hidden."""
    prefix = python.resolve().parent.parent
    args: list[str] = []
    if not _under_system_dirs(prefix):
        args += ["--ro-bind", str(prefix), str(prefix)]
    paths = sysconfig.get_paths(vars={"base": str(prefix), "platbase": str(prefix)})
    version = python.name.removeprefix("python")
    hidden = {
        paths["purelib"],
        paths["platlib"],
        f"{prefix}/lib/python3/dist-packages",
        f"{prefix}/local/lib/python{version}/dist-packages",
        f"{prefix}/lib/python{version}/dist-packages",
    }
    for path in sorted(hidden):
        if os.path.isdir(path):
            args += ["--tmpfs", path, "--remount-ro", path]
    return args


def bwrap_argv(spec: SandboxSpec, host: SandboxHost, control_fd: int) -> list[str]:
    """The full argv: bwrap, its options, then the interpreter and the runtime."""
    argv = [
        *host.launcher(spec.function),
        "bwrap",
        "--unshare-user",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--uid",
        str(_SANDBOX_UID),
        "--gid",
        str(_SANDBOX_UID),
        "--hostname",
        "donjon",
        "--clearenv",
        "--setenv",
        "HOME",
        SANDBOX_TMP,
        "--setenv",
        "TMPDIR",
        SANDBOX_TMP,
        "--setenv",
        "LANG",
        "C.UTF-8",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        # The supervisor (pid 1, runs no function code) keeps these inside the
        # sandbox's own user namespace, to give each worker private mounts, a pid
        # namespace and a network namespace with its loopback up (CAP_NET_ADMIN);
        # every worker drops all capabilities first thing.
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CAP_SYS_ADMIN",
        "--cap-add",
        "CAP_NET_ADMIN",
        "--cap-add",
        "CAP_SETPCAP",
        "--as-pid-1",
    ]
    argv += _system_mounts()
    argv += _host_config_covers()
    argv += _python_mounts(host.python)
    argv += [
        "--ro-bind",
        str(host.runtime),
        "/opt/donjon/donjon_runtime",
        "--ro-bind",
        str(host.bundle_path(spec.bundle)),
        "/fn",
        *(["--ro-bind", str(spec.egress_dir), EGRESS_DIR] if spec.egress_dir else []),
        # Writable only in the supervisor's view: each worker lowers its own
        # priority with the OOM killer, then remounts /proc read-only in its own
        # mount namespace before any function code (runtime/isolation.py).
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--remount-ro",
        "/dev",
        "--size",
        str(spec.tmp_mb * 1024 * 1024),
        "--perms",
        "1777",
        "--tmpfs",
        SANDBOX_TMP,
        "--remount-ro",
        "/",
        "--chdir",
        "/fn",
    ]
    if spec.seccomp_fd is not None:
        argv += ["--seccomp", str(spec.seccomp_fd)]
    argv += [
        str(host.python),
        "-I",
        "-S",
        "-B",
        "/opt/donjon/donjon_runtime/boot.py",
        str(control_fd),
    ]
    return argv
