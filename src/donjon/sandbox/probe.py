"""Checking, before serving, that the sandbox really works on this host."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from donjon._subprocess import CommandError, run
from donjon.sandbox.errors import SandboxUnavailable
from donjon.sandbox.host import SandboxHost
from donjon.sandbox.profile import SandboxSpec, bwrap_argv
from donjon.sandbox.seccomp import compile_filters

__all__ = ["NAMESPACES", "SandboxReport", "check_sandbox", "probe_sandbox"]

#: The namespaces every sandbox has of its own (bwrap's names; /proc/self/ns/ names).
NAMESPACES = {
    "user": "user",
    "pid": "pid",
    "net": "net",
    "ipc": "ipc",
    "uts": "uts",
    "cgroup": "cgroup",
    "mount": "mnt",
}

_PROBE = (
    "import json,os,socket\n"
    "assert os.getuid() == 1000\n"
    "assert os.stat('/usr').st_uid != os.getuid()\n"
    "assert not os.path.exists('/etc/passwd')\n"
    "try:\n"
    "    socket.create_connection(('127.0.0.1', 22), timeout=0.5)\n"
    "    raise SystemExit('network reachable')\n"
    "except OSError:\n"
    "    pass\n"
    "names = ('cgroup', 'ipc', 'mnt', 'net', 'pid', 'user', 'uts')\n"
    "ns = {n: os.readlink('/proc/self/ns/' + n) for n in names}\n"
    "status = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l)\n"
    "print(json.dumps({'ok': True, 'ns': ns, 'seccomp': status['Seccomp'].strip(),\n"
    "    'no_new_privs': status['NoNewPrivs'].strip(), 'cap_eff': status['CapEff'].strip()}))\n"
)


@dataclass(frozen=True)
class SandboxReport:
    """What a probe saw inside a real sandbox, against the host's own view."""

    bwrap: str
    #: Namespace (bwrap's name) -> is it the sandbox's own (not the host's)?
    namespaces: dict[str, bool]
    #: /proc/self/status: Seccomp 2 is a filter in force; NoNewPrivs 1.
    seccomp: str
    no_new_privs: bool


def check_sandbox(host: SandboxHost) -> str:
    """Run a probe in a real sandbox, as the sandbox user, seccomp filter included;
    raise `SandboxUnavailable` if anything is off."""
    report = probe_sandbox(host)
    shared = [n for n, own in report.namespaces.items() if not own]
    if shared:
        raise SandboxUnavailable(
            "the sandbox shares the host's " + ", ".join(shared) + " namespace(s)",
            hint="user namespaces must be enabled (kernel.unprivileged_userns_clone)",
        )
    if report.seccomp != "2" or not report.no_new_privs:
        raise SandboxUnavailable(
            f"the sandbox's seccomp filter is not in force (Seccomp {report.seccomp})",
            hint="the kernel must have CONFIG_SECCOMP_FILTER",
        )
    return report.bwrap


def probe_sandbox(host: SandboxHost) -> SandboxReport:
    """Run the probe in a real sandbox and report what it saw; `SandboxUnavailable` if it
    could not run or saw the sandbox's basics broken (its user, files, network)."""
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
    try:
        seen = json.loads(out)
        host_ns = {n: os.readlink(f"/proc/self/ns/{n}") for n in NAMESPACES.values()}
        return SandboxReport(
            bwrap=bwrap,
            namespaces={
                name: seen["ns"][proc] != host_ns[proc] for name, proc in NAMESPACES.items()
            },
            seccomp=str(seen["seccomp"]),
            no_new_privs=str(seen["no_new_privs"]) == "1",
        )
    except (ValueError, KeyError, TypeError, OSError):
        raise SandboxUnavailable(
            f"bubblewrap cannot create its namespaces here: the probe said {out.strip()[-500:]!r}"
        ) from None
