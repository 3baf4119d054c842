"""Attacks that try to hide a vulnerable vendored distribution from the supply chain's
evidence on a real node: the deploy gate, the SBOM and the advisory watch read the same
distributions, however their metadata is laid out."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from advisory_support import osv, write_export
from harness import LiveNode, start_node

#: Packages no real advisory names: only this file's exports speak of them.
KNOWN = "donjon-hide-known"  # in the export from the start: the gate must refuse it


def _archive(name: str, files: dict[str, str]) -> bytes:
    """A bundle (tar.gz) of function `name` holding `files` beside its manifest."""
    members = {
        "donjon.yaml": f"name: {name}\nhandler: main.handler\n",
        "main.py": "def handler(event, context):\n    return 1\n",
        **files,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNode, Path]]:
    """A node whose advisory export names KNOWN from the start (its path, to change)."""
    tmp = tmp_path_factory.mktemp("supply-hiding")
    export = write_export(tmp / "osv", osv("GHSA-hide-known", KNOWN))
    data_dir = tmp / "data"
    data_dir.mkdir()
    node = start_node(data_dir, {"DONJON_ADVISORIES": str(export), "DONJON_ADVISORY_WATCH_S": "1"})
    try:
        yield node, export
    finally:
        node.stop()


def _deploy(node: LiveNode, name: str, files: dict[str, str]) -> Any:
    with node.client() as c:
        return c.post("/v1/functions", content=_archive(name, files))


@pytest.mark.parametrize(
    "metadata",
    [
        f"metadata-version: 2.1\nname: {KNOWN}\nversion: 1.0\n",
        f"METADATA-VERSION: 2.1\nNAME: {KNOWN}\nVERSION: 1.0\n",
    ],
    ids=["lower", "upper"],
)
def test_cannot_hide_a_known_vulnerable_distribution_by_the_case_of_its_fields(
    world: tuple[LiveNode, Path], metadata: str
) -> None:
    """Core metadata field names are case-insensitive (importlib.metadata reads them so):
    a METADATA spelling `name:`/`version:` in another case is still checked by the gate."""
    node, _ = world
    files = {
        f".deps/{KNOWN}-1.0.dist-info/METADATA": metadata,
        ".deps/donjon_hide_known/__init__.py": "",
    }
    r = _deploy(node, "hide-case", files)
    assert r.status_code == 422, r.text
    assert "GHSA-hide-known" in r.json()["report"]
