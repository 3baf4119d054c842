"""Checking, before serving, that the sandbox really works on this host."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from donjon._subprocess import CommandError, run
from donjon.sandbox.errors import SandboxUnavailable
from donjon.sandbox.host import SandboxHost
from donjon.sandbox.profile import SandboxSpec, bwrap_argv
from donjon.sandbox.seccomp import compile_filters

__all__ = ["check_sandbox"]

_PROBE = (
    "import os,socket\n"
    "assert os.getuid() == 1000\n"
    "assert os.stat('/usr').st_uid != os.getuid()\n"
    "assert not os.path.exists('/etc/passwd')\n"
    "try:\n"
    "    socket.create_connection(('127.0.0.1', 22), timeout=0.5)\n"
    "    raise SystemExit('network reachable')\n"
    "except OSError:\n"
    "    pass\n"
    "print('ok')\n"
)


def check_sandbox(host: SandboxHost) -> str:
    """Run a probe in a real sandbox, as the sandbox user, seccomp filter included;
    raise `SandboxUnavailable` if anything is off."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed; Donjon never runs a function unsandboxed",
            hint="run scripts/setup.sh, or: apt-get install bubblewrap",
        )
    seccomp_fd = compile_filters().sandbox_fd()
    with tempfile.TemporaryDirectory(prefix="donjon-probe-") as tmp:
        Path(tmp, "probe.py").write_text(_PROBE)
        spec = SandboxSpec(bundle=Path(tmp), tmp_mb=1, seccomp_fd=seccomp_fd)
        os.chmod(tmp, 0o755)  # nosec B103 - the sandbox user must reach the probe
        argv = bwrap_argv(spec, host, control_fd=0)
        # Replace the runtime entry with the probe script.
        argv = [*argv[: argv.index("/opt/donjon/donjon_runtime/boot.py")], "/fn/probe.py"]
        try:
            out = run(argv, timeout=30, pass_fds=(seccomp_fd,))
        except CommandError as e:
            raise SandboxUnavailable(
                f"bubblewrap cannot create its namespaces here: {e.message[-500:]}",
                hint="user and network namespaces must be enabled "
                "(kernel.unprivileged_userns_clone)",
            ) from e
        finally:
            os.close(seccomp_fd)
    if out.strip() != "ok":
        raise SandboxUnavailable(
            f"bubblewrap cannot create its namespaces here: the probe said {out.strip()[-500:]!r}"
        )
    return bwrap
