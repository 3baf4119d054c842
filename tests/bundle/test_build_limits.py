"""Building a bundle from a project someone else wrote: nothing in it makes the CLI
copy or read more than any node would accept, and nothing in it hangs the build."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from donjon.bundle import BundleError, build_bundle
from donjon.bundle.unpack import MAX_MEMBERS, MAX_UNPACKED_BYTES


def _fn(root: Path) -> Path:
    root.mkdir()
    (root / "donjon.yaml").write_text("name: fn\nhandler: main.handler\n")
    (root / "main.py").write_text("def handler(e, c):\n    return 1\n")
    return root


def _build_dirs() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("donjon-build-")}


def test_a_tree_larger_than_a_node_takes_is_refused_before_it_is_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sparse file past the unpacked limit (costing no disk) is refused by its size at once,
    not copied out byte by byte and read into memory."""
    # A temporary directory of this test's own: other processes' builds (a test worker
    # beside this one) come and go in the shared one.
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    root = _fn(tmp_path / "fn")
    with (root / "huge.bin").open("wb") as f:
        f.truncate(64 * MAX_UNPACKED_BYTES)  # 16 GiB of holes
    before = _build_dirs()
    with pytest.raises(BundleError, match="larger than"):
        build_bundle(root)
    assert _build_dirs() == before  # refused before a copy was begun


def test_a_tree_of_more_files_than_a_node_takes_is_refused(tmp_path: Path) -> None:
    """More files than a node unpacks is refused before they are copied."""
    root = _fn(tmp_path / "fn")
    many = root / "many"
    many.mkdir()
    for i in range(MAX_MEMBERS + 1):
        (many / str(i)).touch()
    with pytest.raises(BundleError, match="files"):
        build_bundle(root)


def test_a_fifo_is_refused_by_name(tmp_path: Path) -> None:
    """A named pipe in the project is refused with its name, and never opened (no hang)."""
    root = _fn(tmp_path / "fn")
    os.mkfifo(root / "pipe")
    with pytest.raises(BundleError, match="pipe is not a regular file"):
        build_bundle(root)
