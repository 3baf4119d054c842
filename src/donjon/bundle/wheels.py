"""At deploy: every wheel vendored into a bundle must be one the sandbox can import.

`donjon deploy` vendors for the node's sandbox (target.py), but a bundle may be
built otherwise (an older CLI, the Python API without a target, by hand). Each
`.deps/*.dist-info/WHEEL` names the tags its wheel was built for; a wheel none of
whose tags the sandbox's interpreter and platform accept (a cp312 pydantic-core for
a 3.11 sandbox, a macOS build) would fail at its first import in every call, so the
deploy is refused, naming each such wheel.
"""

from __future__ import annotations

import math
from pathlib import Path

from packaging import tags

from donjon.bundle.archive import BundleError
from donjon.bundle.build import DEPS_DIR
from donjon.bundle.target import RuntimeTarget

__all__ = ["check_vendored", "supported_tags"]

#: Bounds on what is read: a bundle is already size-limited, these keep the check cheap.
_MAX_DISTRIBUTIONS = 2000
_MAX_WHEEL_FILE = 64 * 1024
#: Tags one WHEEL file may name, its compressed sets expanded (a real wheel names a few:
#: ``cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64`` is two). Counted before they
#: are built: ``a.b...-c.d...-e.f...`` names the product of its three lists, millions
#: from a kilobyte, and this runs in the node's process.
_MAX_TAGS = 1024


def supported_tags(target: RuntimeTarget) -> frozenset[str]:
    """Every wheel tag the target's interpreter accepts, as pip would rank them."""
    major, minor = (int(p) for p in target.python_version.split("."))
    version = (major, minor)
    platforms = list(target.platforms)
    found = [
        *tags.cpython_tags(version, [target.abi], platforms),
        *tags.compatible_tags(version, f"cp{major}{minor}", platforms),
    ]
    return frozenset(str(t) for t in found)


def _wheel_tags(wheel_file: Path) -> list[str]:
    if wheel_file.is_symlink() or wheel_file.stat().st_size > _MAX_WHEEL_FILE:
        raise BundleError(f"{wheel_file.parent.name}/WHEEL is not a wheel's metadata file")
    text = wheel_file.read_text(encoding="utf-8", errors="replace")
    out: list[str] = []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "tag":
            # A compressed tag set ("cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64").
            named = math.prod(len(part.split(".")) for part in value.strip().split("-"))
            if len(out) + named > _MAX_TAGS:
                raise BundleError(
                    f"{wheel_file.parent.name}/WHEEL names more than {_MAX_TAGS} wheel tags"
                )
            out += [str(t) for t in tags.parse_tag(value.strip())]
    return out


def check_vendored(tree: Path, target: RuntimeTarget) -> None:
    """`BundleError` naming every vendored wheel the sandbox (`target`) cannot import."""
    deps = tree / DEPS_DIR
    if not deps.is_dir():
        return
    accepted = supported_tags(target)
    wrong: list[str] = []
    for count, wheel_file in enumerate(sorted(deps.glob("*.dist-info/WHEEL")), start=1):
        if count > _MAX_DISTRIBUTIONS:
            raise BundleError(f"the bundle vendors more than {_MAX_DISTRIBUTIONS} distributions")
        try:
            built_for = _wheel_tags(wheel_file)
        except (OSError, ValueError) as e:
            raise BundleError(f"{wheel_file.parent.name}/WHEEL cannot be read: {e}") from e
        if built_for and not accepted.intersection(built_for):
            name = wheel_file.parent.name.removesuffix(".dist-info")
            wrong.append(f"{name} ({', '.join(sorted(built_for)[:3])})")
    if wrong:
        raise BundleError(
            f"vendored wheels the sandbox cannot import (it runs CPython "
            f"{target.python_version}, {target.abi}, {target.platforms[0]}): " + "; ".join(wrong),
            hint="deploy with `donjon deploy`, which vendors for the node's sandbox "
            "(GET /v1/runtime)",
        )
