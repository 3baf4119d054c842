"""Which of the gateway's hot-path modules run compiled in this install (issue 14, `mypyc`).

The modules named in `COMPILED` are the warm call's per-request work: the key check,
policy, limits, schema, the call's meta, metrics and the monitor's detectors. Built with
`DONJON_MYPYC=1` on a machine with a C compiler, Python's headers and mypy, `setup.py`
compiles them with mypyc into C extensions (the same code, the same checks, in fewer
interpreter steps); by default they install as plain Python and behave the same.
`donjon doctor` says which is in force.

Found from the files installed, without importing the modules: an extension module
beside its source is what Python imports.
"""

from __future__ import annotations

import importlib.machinery
from pathlib import Path

__all__ = ["COMPILED", "compiled_modules", "describe_compiled"]

#: The modules setup.py hands to mypyc, in the order it reads them (setup.py parses this
#: tuple; it stays a literal). A module a test or a bench patches by name stays off it.
COMPILED: tuple[str, ...] = (
    "donjon.boundedjson",
    "donjon.gateway.access",
    "donjon.gateway.admission",
    "donjon.gateway.calllog",
    "donjon.gateway.events",
    "donjon.gateway.hot_route",
    "donjon.gateway.invoke",
    "donjon.gateway.rate_buckets",
    "donjon.gateway.response_policy",
    "donjon.gateway.slots",
    "donjon.identity.apikeys",
    "donjon.identity.policy",
    "donjon.identity.policy_eval",
    "donjon.manifest.schema_check",
    "donjon.monitor.baselines",
    "donjon.monitor.calls",
    "donjon.monitor.engine",
    "donjon.monitor.findings",
    "donjon.monitor.firstseen",
    "donjon.monitor.learned",
    "donjon.monitor.rates",
    "donjon.monitor.robust",
    "donjon.obs.metrics",
    "donjon.ratelimit.memory",
    "donjon.ratelimit.memory_slots",
    "donjon.ratelimit.rates",
)

_ROOT = Path(__file__).resolve().parent.parent


def compiled_modules(root: Path = _ROOT) -> tuple[list[str], list[str]]:
    """The modules of `COMPILED` that run compiled under `root` (the directory holding the
    `donjon` package: this install's by default), and those that run as Python."""
    compiled: list[str] = []
    interpreted: list[str] = []
    for name in COMPILED:
        base = root.joinpath(*name.split("."))
        found = any(
            base.with_name(base.name + suffix).is_file()
            for suffix in importlib.machinery.EXTENSION_SUFFIXES
        )
        (compiled if found else interpreted).append(name)
    return compiled, interpreted


def describe_compiled() -> str:
    """One line for `donjon doctor`: compiled, interpreted, or which are which."""
    compiled, interpreted = compiled_modules()
    if not interpreted:
        return f"compiled (mypyc): all {len(compiled)} hot-path modules"
    if not compiled:
        return (
            f"interpreted: the {len(interpreted)} hot-path modules run as Python "
            "(built without DONJON_MYPYC=1, a C compiler, Python's headers or mypy)"
        )
    return f"mixed: {len(compiled)} compiled, interpreted: {', '.join(interpreted)}"
