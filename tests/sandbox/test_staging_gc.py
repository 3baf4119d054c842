"""The sandbox staging directory: a retired or removed version's staged bundle is removed."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from donjon.sandbox import (
    InstanceConfig,
    SandboxHost,
    SandboxPool,
    compile_filters,
    detect_resource_control,
)

HANDLER = "def handler(event, context):\n    return {'v': %d}\n"


def _bundle(root: Path, version: int) -> Path:
    d = root / f"digest{version:04d}"
    d.mkdir(mode=0o700)
    (d / "main.py").write_text(HANDLER % version)
    return d


def _config(bundle: Path, version: int) -> InstanceConfig:
    return InstanceConfig("staged", version, bundle, "main", "handler", False, 64, 8, 1)


async def _call(pool: SandboxPool, cfg: InstanceConfig) -> None:
    meta = {"request_id": "r", "function": "staged", "version": cfg.version}
    meta["deadline"] = time.time() + 10
    await pool.invoke(cfg, json.dumps(meta).encode(), b"{}", 10)


@pytest.fixture
def host(tmp_path: Path) -> SandboxHost:
    if os.geteuid() != 0:
        pytest.skip("bundles are staged for the sandbox user only when Donjon runs as root")
    os.chmod(tmp_path, 0o700)  # so bundles under it are not reachable as they are: staged
    return SandboxHost.detect(tmp_path / "data")


def test_a_replaced_versions_staged_bundle_goes_and_the_new_ones_stays(
    tmp_path: Path, host: SandboxHost
) -> None:
    """Retiring version 1 for version 2 removes 1's staged copy, keeps 2's; a removal
    (retire all) removes 2's."""
    assert host.staging is not None
    staged = host.staging / "bundles"
    one, two = _bundle(tmp_path, 1), _bundle(tmp_path, 2)

    async def go() -> list[list[str]]:
        pool = SandboxPool(detect_resource_control(), compile_filters(), host)
        seen = []
        try:
            await _call(pool, _config(one, 1))
            seen.append(sorted(os.listdir(staged)))
            await _call(pool, _config(two, 2))
            await pool.retire("staged", keep_version=2, drain=True)
            seen.append(sorted(os.listdir(staged)))
            await pool.retire("staged")
            seen.append(sorted(os.listdir(staged)))
        finally:
            await pool.close()
        return seen

    first, after_replace, after_remove = asyncio.run(go())
    assert first == [one.name]
    assert after_replace == [two.name]
    assert after_remove == []
    assert (one / "main.py").exists() and (two / "main.py").exists()  # the originals stay


def test_a_staged_bundle_left_by_an_earlier_run_is_collected(
    tmp_path: Path, host: SandboxHost
) -> None:
    """Copies nothing pins (a node that stopped, a half-made copy) go at the next collection."""
    assert host.staging is not None
    staged = host.staging / "bundles"
    staged.mkdir(parents=True, exist_ok=True)
    (staged / "olddigest" / "sub").mkdir(parents=True)
    (staged / "olddigest" / "sub" / "main.py").write_text("x")
    os.chmod(staged / "olddigest" / "sub", 0o555)  # noqa: S103 - read-only, as staged
    (staged / ".halfdigest-123").mkdir()
    pinned = _bundle(tmp_path, 3)
    host.pin(pinned, "test")
    host.bundle_path(pinned)
    assert sorted(host.collect_staging()) == [".halfdigest-123", "olddigest"]
    assert os.listdir(staged) == [pinned.name]
    host.unpin(pinned, "test")
    assert host.collect_staging() == [pinned.name]
