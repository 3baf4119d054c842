"""The interpreter and platform a bundle's dependencies are vendored for: the sandbox's.

A bundle is built where `donjon deploy` runs, but its compiled wheels must import in
the sandbox, whose interpreter may be another Python version, ABI or C library than
the deployer's. The node tells the CLI its sandbox's target (`GET /v1/runtime`,
computed by `probe_target` from the sandbox's own interpreter), and pip is asked for
wheels of that target (`pip_args`): `--python-version`, `--implementation`, `--abi`
and every `--platform` the sandbox's glibc and machine accept, with
`--only-binary=:all:` (build.py), so nothing is compiled on the deployer's host.

What pip cannot do: it evaluates environment markers (``; python_version < "3.12"``)
for the interpreter it runs under, so a deploy from another Python version may miss
or add a marker-conditional dependency (`marker_mismatch` says when that can happen).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from donjon._subprocess import CommandError, run
from donjon.bundle.archive import BundleError

__all__ = ["RuntimeTarget", "local_target", "probe_target"]

_VERSION_RE = re.compile(r"^3\.[0-9]{1,2}$")
_TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
_MAX_PLATFORMS = 64
#: PEP 600: manylinux_2_X; the legacy names of PEP 513/571/599 are the same glibc's.
_LEGACY = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
#: Oldest glibc a manylinux wheel of each machine may target (PEP 599).
_OLDEST_MINOR = {"x86_64": 5, "i686": 5}
_PROBE = (
    "import json,os,platform,sys,sysconfig;"
    "print(json.dumps({'version':list(sys.version_info[:3]),"
    "'implementation':sys.implementation.name,'abiflags':getattr(sys,'abiflags',''),"
    "'machine':platform.machine(),'platform':sysconfig.get_platform(),"
    "'libc':os.confstr('CS_GNU_LIBC_VERSION') or ''}))"
)


@dataclass(frozen=True)
class RuntimeTarget:
    """An interpreter and the platforms its wheels may be built for."""

    python_version: str  # "3.11"
    implementation: str  # "cp"
    abi: str  # "cp311"
    platforms: tuple[str, ...]  # most specific first

    def pip_args(self) -> list[str]:
        """pip's options that choose wheels for this target (with --only-binary=:all:)."""
        args = [
            "--python-version",
            self.python_version,
            "--implementation",
            self.implementation,
            "--abi",
            self.abi,
        ]
        for platform in self.platforms:
            args += ["--platform", platform]
        return args

    def to_json(self) -> dict[str, Any]:
        return {
            "python_version": self.python_version,
            "implementation": self.implementation,
            "abi": self.abi,
            "platforms": list(self.platforms),
        }

    @classmethod
    def from_json(cls, data: Any) -> RuntimeTarget:
        """A target as the node sent it, checked: each value ends up on pip's command line."""
        hint = "the node's /v1/runtime answer is not a runtime target; is it a Donjon node?"
        if not isinstance(data, dict):
            raise BundleError("the node's runtime target is not an object", hint=hint)
        version, impl, abi, platforms = (
            data.get("python_version"),
            data.get("implementation"),
            data.get("abi"),
            data.get("platforms"),
        )
        if not (isinstance(version, str) and _VERSION_RE.match(version)):
            raise BundleError(f"bad python_version in the runtime target: {version!r}", hint=hint)
        if not isinstance(platforms, list) or not 0 < len(platforms) <= _MAX_PLATFORMS:
            raise BundleError("bad platforms in the runtime target", hint=hint)
        for value in (impl, abi, *platforms):
            if not (isinstance(value, str) and _TAG_RE.match(value)):
                raise BundleError(f"bad tag in the runtime target: {value!r:.80}", hint=hint)
        return cls(version, str(impl), str(abi), tuple(str(p) for p in platforms))


def manylinux_platforms(machine: str, libc: str) -> tuple[str, ...]:
    """The platform tags a glibc `libc` ("glibc 2.36") on `machine` runs, newest first."""
    name, _, version = libc.partition(" ")
    major, _, minor = version.partition(".")
    if name != "glibc" or major != "2" or not minor.isdigit():
        raise BundleError(
            f"the sandbox's C library is {libc or 'unknown'!r}, not glibc 2",
            hint="Donjon vendors manylinux wheels; run the sandbox on a glibc system",
        )
    arch = machine.replace("-", "_").replace(".", "_").lower()
    tags: list[str] = []
    for m in range(int(minor), _OLDEST_MINOR.get(arch, 17) - 1, -1):
        tags.append(f"manylinux_2_{m}_{arch}")
        if m in _LEGACY and (m == 17 or arch in ("x86_64", "i686")):
            tags.append(f"{_LEGACY[m]}_{arch}")
    return tuple(tags)


def target_from_facts(facts: dict[str, Any]) -> RuntimeTarget:
    """The target of an interpreter described by `_PROBE`'s output."""
    if facts.get("implementation") != "cpython":
        raise BundleError(
            f"the sandbox's interpreter is {facts.get('implementation')!r}, not CPython",
            hint="set DONJON_SANDBOX_PYTHON to a CPython interpreter",
        )
    major, minor = int(facts["version"][0]), int(facts["version"][1])
    abi = f"cp{major}{minor}{facts.get('abiflags') or ''}"
    platforms = manylinux_platforms(str(facts.get("machine", "")), str(facts.get("libc", "")))
    return RuntimeTarget(f"{major}.{minor}", "cp", abi, platforms)


def probe_target(python: Path) -> RuntimeTarget:
    """The target of the interpreter at `python` (the sandbox's), asked from it directly."""
    try:
        out = run([python, "-I", "-S", "-c", _PROBE], timeout=30, hint="the sandbox interpreter")
        return target_from_facts(json.loads(out))
    except (CommandError, ValueError, KeyError, IndexError, TypeError) as e:
        raise BundleError(
            f"cannot tell which wheels the sandbox's interpreter takes: {e}",
            hint="check DONJON_SANDBOX_PYTHON",
        ) from e


def local_target() -> RuntimeTarget:
    """The target of the interpreter running this code."""
    return probe_target(Path(sys.executable))


def marker_mismatch(target: RuntimeTarget) -> str:
    """Why pip's environment markers may not hold for `target` (evaluated here), or ""."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if here != target.python_version or sys.platform != "linux":
        return (
            f"dependencies are vendored for the sandbox's Python {target.python_version}, "
            f"but pip evaluates requirement markers for this Python {here} on {sys.platform}; "
            "check that marker-conditional dependencies are right"
        )
    return ""
