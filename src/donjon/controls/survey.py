"""Every control on this host, looked at for real: a sandbox probe, cgroupfs, /proc."""

from __future__ import annotations

import importlib.util
import os
import shutil

from donjon._subprocess import CommandError, run
from donjon.config import Settings
from donjon.controls.model import Control
from donjon.sandbox import SandboxHost, SandboxUnavailable, detect_resource_control
from donjon.sandbox.budget import node_budget
from donjon.sandbox.callgroups import CALL_PIDS
from donjon.sandbox.cgroupfs import v2_root
from donjon.sandbox.limits import ResourceControl, ResourceMode
from donjon.sandbox.probe import NAMESPACES, SandboxReport, probe_sandbox
from donjon.sandbox.runtime import landlock

__all__ = ["survey"]

_CGROUP_FIX = (
    "run Donjon as root on a host with a writable cgroup hierarchy: cgroup v2 with the "
    "memory and pids controllers (systemd: Delegate=yes for Donjon's unit), or cgroup v1"
)


def survey(settings: Settings) -> list[Control]:
    """Every control, in `CONTROL_NAMES` order, present or missing with its fix."""
    out = _sandbox(settings)
    out += _resources(settings, detect_resource_control())
    out.append(
        Control(
            "rlimits",
            True,
            "per worker: RLIMIT_AS (the function's memory), RLIMIT_NOFILE, RLIMIT_CORE 0, "
            "RLIMIT_CPU (one-call workers), RLIMIT_NPROC (where no pids cgroup)",
        )
    )
    out.append(_egress(settings))
    out.append(_data_dir(settings))
    return out


def _bwrap_version(bwrap: str) -> str:
    try:
        return run([bwrap, "--version"], timeout=10).strip()
    except CommandError as e:
        return f"version unknown ({e.message[:200]})"


def _sandbox(settings: Settings) -> list[Control]:
    bwrap = shutil.which("bwrap")
    out = [
        Control("bubblewrap", True, f"{_bwrap_version(bwrap)} at {bwrap}")
        if bwrap
        else Control(
            "bubblewrap",
            False,
            "bwrap is not installed",
            "run scripts/setup.sh, or: apt-get install bubblewrap",
        )
    ]
    report: SandboxReport | None = None
    host: SandboxHost | None = None
    why, fix = "no sandbox could be started", "install bubblewrap"
    if bwrap:
        try:
            host = SandboxHost.detect(settings.data_dir, settings.sandbox)
            report = probe_sandbox(host)
        except SandboxUnavailable as e:
            why, fix = e.message, e.hint
    for name in NAMESPACES:
        own = report is not None and report.namespaces.get(name, False)
        detail = "the sandbox's own" if own else (why if report is None else "shared with the host")
        if own and name == "net":  # runtime/network.py: each worker makes its own as well
            detail += ", and one per worker (a call's loopback is its own)"
        out.append(Control(f"namespace.{name}", own, detail, "" if own else fix))
    seccomp = report is not None and report.seccomp == "2"
    out.append(
        Control(
            "seccomp",
            seccomp,
            "a filter in force in the sandbox (and a stricter one per call, which reports"
            " process creation to the supervisor for the child_processes policy)"
            if seccomp
            else (why if report is None else f"Seccomp {report.seccomp} in the sandbox"),
            "" if seccomp else "a kernel with CONFIG_SECCOMP_FILTER; " + fix,
        )
    )
    nnp = report is not None and report.no_new_privs
    out.append(
        Control("no-new-privs", nnp, "set" if nnp else why, "" if nnp else fix),
    )
    out.append(_sandbox_user(host, why, fix))
    abi = landlock.abi_version()
    out.append(
        Control(
            "landlock",
            abi >= 1,
            f"ABI {abi}: a domain per worker" if abi >= 1 else "not available in this kernel",
            "" if abi >= 1 else "a kernel with Landlock (5.13+, lsm=landlock)",
        )
    )
    return out


def _sandbox_user(host: SandboxHost | None, why: str, fix: str) -> Control:
    if host is None:
        return Control("sandbox-user", False, why, fix)
    if host.uid is None:
        return Control("sandbox-user", True, f"Donjon's own user (uid {os.getuid()}, not root)")
    who = f"host uid {host.uid}, gid {host.gid}"
    if host.id_range is not None:
        who = "a host uid and gid per function from {}-{}".format(*host.id_range)
    return Control("sandbox-user", True, f"{who}; interpreter {host.python}")


def _resources(settings: Settings, resources: ResourceControl) -> list[Control]:
    mode = resources.mode
    if mode is ResourceMode.RLIMIT:
        have: set[str] = set()
    elif mode is ResourceMode.CGROUP_V2:
        have = resources.v2_controllers()
    else:
        have = set(resources.hierarchies)
    detail = resources.describe()
    root = v2_root()
    if mode is not ResourceMode.CGROUP_V2 and root is not None:
        detail += f"; cgroup v2 at {root} lacks the memory and pids controllers (hybrid host)"
    out = [
        Control(
            "cgroup",
            mode is not ResourceMode.RLIMIT,
            detail,
            "" if mode is not ResourceMode.RLIMIT else _CGROUP_FIX,
        )
    ]
    what = {
        "memory": "a memory ceiling per sandbox and per call (the OOM killer's scope)",
        "pids": "a process ceiling per sandbox and per call",
        "cpu": "a CPU quota per sandbox",
    }
    for controller, detail in what.items():
        present = controller in have
        out.append(
            Control(
                f"cgroup.{controller}",
                present,
                detail if present else f"no {controller} controller for Donjon's cgroup",
                "" if present else _CGROUP_FIX,
            )
        )
    per_call = "memory" in have
    out.append(
        Control(
            "cgroup.per-call",
            per_call,
            f"a memory and a pids cgroup per call (pids.max {CALL_PIDS})"
            if per_call
            else "no per-call cgroups: calls of a sandbox share its limits",
            "" if per_call else _CGROUP_FIX,
        )
    )
    budget = node_budget(settings.sandbox)
    for kind, present, figure, source in (
        ("memory", "memory" in have, f"{budget.memory_bytes >> 20} MiB", budget.memory_source),
        ("pids", "pids" in have, str(budget.pids), budget.pids_source),
    ):
        out.append(
            Control(
                f"budget.{kind}",
                present,
                f"{figure} over all of the node's sandboxes ({source})"
                if present
                else f"no node-wide {kind} budget without the cgroup {kind} controller",
                "" if present else _CGROUP_FIX,
            )
        )
    is_root = os.geteuid() == 0
    out.append(
        Control(
            "oom-protection",
            is_root,
            "supervisors at oom_score_adj -1000, workers +1000"
            if is_root
            else "not root: oom_score_adj left as is",
            "" if is_root else "run `donjon serve` as root",
        )
    )
    return out


def _egress(settings: Settings) -> Control:
    """The egress proxy: in force where this build has it (donjon.egress.proxy), with
    what `settings.egress` lets through."""
    egress = settings.egress
    networks = ", ".join(str(n) for n in egress.allow_networks) or "none"
    limits = (
        f"internal networks allowed: {networks}; DNS: {egress.dns or 'the system resolver'}; "
        f"per call: {egress.max_connections_per_call} connections, "
        f"{egress.max_bytes_per_call >> 20} MiB, {egress.max_connection_s:g} s each"
    )
    if importlib.util.find_spec("donjon.egress.proxy") is None:
        return Control(
            "egress-proxy",
            False,
            "not in this build: functions have no network at all (" + limits + ")",
        )
    return Control(
        "egress-proxy",
        True,
        "granted host:port only, through the node's proxy (a socket per sandbox); " + limits,
    )


def _data_dir(settings: Settings) -> Control:
    d = settings.data_dir
    if not settings.initialised:
        return Control("data-dir", False, f"{d} is not initialised", "donjon init")
    mode = d.stat().st_mode & 0o777
    if mode != 0o700:
        return Control("data-dir", False, f"{d} has mode {mode:o}", f"chmod 700 {d}")
    return Control("data-dir", True, f"{d} (mode 700)")
