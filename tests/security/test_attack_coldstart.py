"""Attacks at a cold start: a handler's import, on its version's first sandbox, still runs
inside the sandbox's cgroups (issue 14 made that start fork-free on cgroup v1; see
sandbox/spawn.py and tests/sandbox/test_coldstart.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.bundle import build_bundle
from donjon.sandbox import detect_resource_control
from donjon.sandbox.limits import ResourceMode
from harness import LiveNode

#: 400 MiB of memfd pages at import: never mapped, so no RLIMIT_AS sees them; only the
#: cgroups can (the function has 64 MiB).
_HOG = (
    "import os\n"
    "_fd = os.memfd_create('at-import', 0)\n"
    "_chunk = b'x' * (1 << 20)\n"
    "for _ in range(400):\n"
    "    os.write(_fd, _chunk)\n"
    "def handler(event, context):\n"
    "    return {'survived': True}\n"
)


@pytest.mark.parametrize("isolation", ["warm", "invocation"])
def test_memory_filled_at_import_on_a_cold_start_is_stopped(
    node: LiveNode, tmp_path: Path, isolation: str
) -> None:
    """A handler filling 400 MiB of memfd pages at import on its first start is killed by
    its cgroups: the deploy is refused as an import failure, nothing is deployed, the
    node serves on."""
    if detect_resource_control().mode is ResourceMode.RLIMIT:
        pytest.skip("no writable cgroup hierarchy here: rlimits only")
    name = f"cold-hog-{isolation}"
    (tmp_path / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\nisolation: {isolation}\n"
    )
    (tmp_path / "main.py").write_text(_HOG)
    _, archive = build_bundle(tmp_path)
    with node.client() as c:
        r = c.post("/v1/functions", content=archive, params={"unsafe_skip_scan": "true"})
        assert r.status_code == 422, r.text
        assert "failed to import" in r.json()["detail"], r.text
        assert c.get(f"/v1/functions/{name}").status_code == 404
    assert node.invoke("probe", {"op": "exists", "path": "/fn"}).status_code == 200
