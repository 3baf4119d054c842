"""Fixtures for the attacks: the hostile functions, also deployed in warm mode."""

from __future__ import annotations

import shutil

import pytest

from harness import FUNCTIONS, LiveNode


def _deploy_warm_copy(node: LiveNode, name: str, tmp: pytest.TempPathFactory) -> None:
    copy = tmp.mktemp(f"{name}-warm")
    shutil.copytree(FUNCTIONS / name, copy, dirs_exist_ok=True)
    manifest = (copy / "donjon.yaml").read_text()
    (copy / "donjon.yaml").write_text(
        manifest.replace(f"name: {name}", f"name: {name}-warm") + "isolation: warm\n"
    )
    node.deploy(copy)


@pytest.fixture(scope="session", autouse=True)
def hostile_warm_copies(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Warm copies of the hostile functions, so each attack runs in both modes (invariant 4)."""
    for name in ("sec-attack", "sec-import"):
        _deploy_warm_copy(node, name, tmp_path_factory)
