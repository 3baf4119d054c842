"""Invariant 3, across functions and versions: never does anything cross from one function
(or one version of it) to another, in any isolation mode."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness import FUNCTIONS, LiveNode
from sec_support import ATTACKERS, Ready, attack, bundle_dir

_TRACES = ["/tmp/sec-tenant", "/dev/shm/sec-tenant", "/sec-tenant", "/opt/sec-tenant"]


def _neighbour(node: LiveNode, paths: list[str]) -> dict[str, Any]:
    """What sec-neighbour, another tenant, finds of `paths`, /tmp, /fn and /proc."""
    r = node.invoke("sec-neighbour", {"paths": paths})
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


@ATTACKERS
def test_neighbour_cannot_see_another_functions_files(node: LiveNode, fn: str) -> None:
    """Files another function leaves in its /tmp (or anywhere else it could write) stay there."""
    marker = secrets.token_hex(8)
    attack(node, fn, "keep_state", marker=marker, paths=_TRACES)
    seen = _neighbour(node, _TRACES)
    assert seen["found"] == {}
    assert "sec-tenant" not in seen["tmp"]
    assert marker not in str(seen)


def test_neighbour_cannot_see_a_warm_functions_tmp(node: LiveNode, started: Ready) -> None:
    """probe-warm keeps /tmp across its own calls; another function never sees it."""
    started("probe-warm")
    r = node.invoke("probe-warm", {"op": "write_tmp", "name": "sec-warm-secret"})
    assert "sec-warm-secret" in r.json()["tmp"]
    assert "sec-warm-secret" not in _neighbour(node, [])["tmp"]


@ATTACKERS
def test_neighbour_cannot_see_another_functions_processes(node: LiveNode, fn: str) -> None:
    """A process another function keeps running does not show in the neighbour's /proc."""
    name = "sec" + secrets.token_hex(4)
    attack(node, fn, "spawn_orphan", name=name, sleep=20)
    seen = _neighbour(node, [])
    assert name not in seen["comms"].values()
    for cmdline in seen["cmdlines"].values():
        assert "sec-neighbour" in cmdline or "boot.py" in cmdline or cmdline == "?", cmdline


def test_neighbour_cannot_read_another_functionsbundle_dir(node: LiveNode, started: Ready) -> None:
    """Another function's bundle is not reachable by its host path or through /proc."""
    started("sec-neighbour")
    other = bundle_dir(node, "sec-attack")
    own = bundle_dir(node, "sec-neighbour")
    paths = [str(other), str(other / "main.py"), f"/proc/1/root{other}", str(other.parent)]
    seen = _neighbour(node, [*paths, "/fn/main.py"])
    assert set(seen["found"]) == {"/fn/main.py"}
    assert "second tenant" in seen["found"]["/fn/main.py"]
    assert seen["fn"] == sorted(p.name for p in own.iterdir())


@pytest.mark.parametrize("isolation", ["invocation", "warm"])
def test_new_version_does_not_see_old_versions_state(
    node: LiveNode, isolation: str, tmp_path: Path, started: Ready
) -> None:
    """After a redeploy, nothing the old version kept (globals, files, processes) is visible."""
    name = f"sec-versioned-{isolation}"
    src = tmp_path / name
    shutil.copytree(FUNCTIONS / "sec-attack", src)
    manifest = (src / "donjon.yaml").read_text().replace("name: sec-attack", f"name: {name}")
    (src / "donjon.yaml").write_text(manifest + f"isolation: {isolation}\n")
    v1 = node.deploy(src)["version"]
    started(name, just_deployed=True)
    marker = secrets.token_hex(8)
    orphan_name = "sec" + secrets.token_hex(4)
    attack(node, name, "keep_state", marker=marker, paths=_TRACES)
    attack(node, name, "spawn_orphan", name=orphan_name, sleep=20)
    # A changed bundle: the same one again is a no-op, not a new version (issue 11).
    (src / "release.txt").write_text("2\n")
    v2 = node.deploy(src)["version"]
    assert v2 > v1
    after = attack(node, name, "find_state", paths=_TRACES)
    assert after["global"] is None
    assert after["files"] == {}
    assert "/fn/main.py" not in after["fds"].values()
    assert orphan_name not in attack(node, name, "processes")["comms"].values()
